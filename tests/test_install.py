"""A plain, non-editable install works from any folder (templates ship inside the wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

from tests.conftest import EXAMPLES, ROOT


def test_wheel_install_generates_outside_the_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("symbp-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--ignore-installed",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "arch.yaml").write_text((EXAMPLES / "seed.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [str(env_dir / "bin" / "symbp"), "generate", "arch.yaml", "-o", "out"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    where = subprocess.run(
        [str(python), "-c", "import symbp; print(symbp.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=60,
    )
    assert str(env_dir) in where.stdout, "the test must exercise the installed copy"
    assert (work / "out" / "seed_net.py").read_text().startswith('"""seed_net')


def test_every_subpackage_is_packaged() -> None:
    """A new folder of modules under symbp/ must be listed in pyproject's packages."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "symbp").rglob("__init__.py")
    }
    assert found <= listed, f"not packaged: {sorted(found - listed)}"
