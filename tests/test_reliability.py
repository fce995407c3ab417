"""Hostile input, atomic writes, determinism and the JSON Schema."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from symbp import pipeline
from symbp.errors import OutputError
from symbp.frontend.schema import arch_schema, schema_json
from symbp.pipeline import generate, write_files
from tests.conftest import EXAMPLES, GENERATED, ROOT, hang_guard

CANARY = "symbp_canary_file"


def run_cli(
    *args: str, cwd: Path, env: dict | None = None, umask: int = -1
) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "symbp", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full,
        timeout=60,
        umask=umask,
    )


HOSTILE = {
    "python_tag": f'!!python/object/apply:os.system ["touch {CANARY}"]\n',
    "python_tag_in_value": f'input: !!python/object/apply:os.system ["touch {CANARY}"]\n'
    "layers: [{units: 1, activation: sigmoid}]\nloss: mse\n",
    "name_injection": f"name: \"x; import os; os.system('touch {CANARY}')\"\n"
    "input: 2\nlayers: [{units: 1, activation: sigmoid}]\nloss: mse\n",
    "name_path": "name: ../../evil\ninput: 2\nlayers: [{units: 1, activation: sigmoid}]\nloss: mse\n",
    "activation_injection": f"input: 2\nlayers: [{{units: 1, activation: \"__import__('os').system('touch {CANARY}')\"}}]\nloss: mse\n",
    "custom_activation_import": f"input: 2\nactivations: {{evil: \"__import__('os').system('touch {CANARY}')\"}}\n"
    "layers: [{units: 1, activation: evil}]\nloss: mse\n",
    "custom_activation_attr": 'input: 2\nactivations: {evil: "x.__class__"}\n'
    "layers: [{units: 1, activation: evil}]\nloss: mse\n",
    "loss_lambda": f"input: 2\nlayers: [{{units: 1, activation: sigmoid}}]\nloss: {{expr: \"(lambda: __import__('os').system('touch {CANARY}'))()\"}}\n",
    "loss_power_bomb": 'input: 2\nlayers: [{units: 1, activation: sigmoid}]\nloss: {expr: "9**9**9**9"}\n',
    "loss_comprehension": 'input: 2\nlayers: [{units: 1, activation: sigmoid}]\nloss: {expr: "[y for y in (1,)]"}\n',
    "loss_subscript": 'input: 2\nlayers: [{units: 1, activation: sigmoid}]\nloss: {expr: "y[0]"}\n',
    "latex_injection": "name: evil\ninput: 2\nlayers: [{units: 1, activation: sigmoid}]\n"
    'loss: {expr: "yhat\\\\input{/etc/passwd}"}\n',
    "alias_bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    + "input: 2\nlayers: [{units: 1, activation: sigmoid}]\nloss: mse\n",
    "nul_byte": "input: 2\x00\nlayers: [{units: 1, activation: sigmoid}]\nloss: mse\n",
    "absurd_size": "input: 1000000\nlayers: [{units: 1000000, activation: sigmoid}, {units: 1000000, activation: sigmoid}]\nloss: mse\n",
    "deep_nesting": "input: " + "[" * 5000 + "]" * 5000 + "\nlayers: []\nloss: mse\n",
    "huge_int": "input: " + "9" * 5000 + "\nlayers: [{units: 1, activation: sigmoid}]\nloss: mse\n",
    "not_utf8": None,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_refused_without_running_anything(tmp_path: Path, case: str) -> None:
    path = tmp_path / "arch.yaml"
    text = HOSTILE[case]
    if text is None:
        path.write_bytes(b"input: 2\nname: \xff\xfe\nlayers: []\nloss: mse\n")
    else:
        path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    r = hang_guard(lambda: run_cli("generate", str(path), "-o", str(out), cwd=tmp_path))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert "arch.yaml" in r.stderr
    assert len(r.stderr.splitlines()) <= 12
    assert not (tmp_path / CANARY).exists()
    assert not out.exists(), "nothing may be written for a refused file"


@pytest.mark.parametrize("case", sorted(k for k, v in HOSTILE.items() if v is not None))
def test_refusal_is_fast_in_process(case: str) -> None:
    from symbp.errors import SpecError

    def refuse() -> None:
        with pytest.raises(SpecError):
            generate_from_text(HOSTILE[case])

    hang_guard(refuse)


def generate_from_text(text: str) -> None:
    from symbp.frontend.spec import parse_arch

    generate(parse_arch(text.encode("utf-8"), "arch.yaml"))


def test_failure_mid_write_keeps_previous_outputs(tmp_path: Path, monkeypatch) -> None:
    first = generate(EXAMPLES / "seed.yaml").files
    write_files(first, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    changed = {name: text + "# changed\n" for name, text in first.items()}
    calls = {"n": 0}
    real_stage = pipeline._stage

    def failing_stage(target: Path, text: str) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_stage(target, text)

    monkeypatch.setattr(pipeline, "_stage", failing_stage)
    with pytest.raises(OutputError):
        write_files(changed, tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before, "old outputs intact and no temporary files left"


def modes(folder: Path) -> dict[str, int]:
    """Permission bits of every file in folder, by name."""
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


@pytest.mark.parametrize(
    ("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"]
)
def test_new_files_get_the_mode_the_umask_gives(tmp_path: Path, umask: int, mode: int) -> None:
    (tmp_path / "seed.yaml").write_bytes((EXAMPLES / "seed.yaml").read_bytes())
    r = run_cli("generate", "seed.yaml", "-o", "out", cwd=tmp_path, umask=umask)
    assert r.returncode == 0, r.stderr
    found = modes(tmp_path / "out")
    assert found and set(found.values()) == {mode}, {k: oct(v) for k, v in found.items()}


def test_overwriting_keeps_an_existing_files_mode(tmp_path: Path) -> None:
    files = generate(EXAMPLES / "seed.yaml").files
    write_files(files, tmp_path)
    code = tmp_path / "seed_net.py"
    code.chmod(0o640)
    write_files({name: text + "# changed\n" for name, text in files.items()}, tmp_path)
    assert stat.S_IMODE(code.stat().st_mode) == 0o640
    assert code.read_text().endswith("# changed\n")


def test_a_symlinked_output_is_written_through_to_its_target(tmp_path: Path) -> None:
    files = generate(EXAMPLES / "seed.yaml").files
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "out"
    elsewhere.mkdir()
    out.mkdir()
    real = elsewhere / "kept.py"
    real.write_text(files["seed_net.py"])
    real.chmod(0o640)
    link = out / "seed_net.py"
    link.symlink_to(real)
    write_files({name: text + "# changed\n" for name, text in files.items()}, out)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert real.read_text() == files["seed_net.py"] + "# changed\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert [p.name for p in elsewhere.iterdir()] == ["kept.py"], "no temporary file left"
    assert sorted(p.name for p in out.iterdir()) == sorted(files)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex missing")
def test_the_pdf_is_replaced_like_the_other_outputs(tmp_path: Path) -> None:
    from symbp.pdf import compile_pdf

    write_files(generate(EXAMPLES / "seed.yaml").files, tmp_path)
    pdf = tmp_path / "seed_net.pdf"
    pdf.write_bytes(b"old")
    pdf.chmod(0o640)
    assert compile_pdf(tmp_path / "seed_net.tex") == pdf
    assert pdf.read_bytes().startswith(b"%PDF") and stat.S_IMODE(pdf.stat().st_mode) == 0o640
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_output_identical_across_hash_seeds_and_folders(tmp_path: Path) -> None:
    outputs = []
    for seed, folder in (("0", tmp_path / "a"), ("12345", tmp_path / "b" / "deeper")):
        folder.mkdir(parents=True)
        src = folder / "seed.yaml"
        src.write_bytes((EXAMPLES / "seed.yaml").read_bytes())
        r = run_cli("generate", "seed.yaml", "-o", "out", cwd=folder, env={"PYTHONHASHSEED": seed})
        assert r.returncode == 0, r.stderr
        outputs.append({p.name: p.read_bytes() for p in (folder / "out").iterdir()})
    assert outputs[0] == outputs[1]


def test_schema_is_committed_and_current() -> None:
    assert (GENERATED / "arch.schema.json").read_text() == schema_json()
    r = run_cli("schema", cwd=ROOT)
    assert r.returncode == 0 and json.loads(r.stdout) == arch_schema()


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_validate_against_schema(example: Path) -> None:
    jsonschema.validate(yaml.safe_load(example.read_text()), arch_schema())


def test_schema_rejects_what_symbp_rejects() -> None:
    bad = {"input": 2, "layers": [{"units": 0, "activation": "sigmoid"}], "loss": "mse", "extra": 1}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, arch_schema())
