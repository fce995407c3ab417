"""The README's excerpts of generated files are quoted from the committed outputs."""

from __future__ import annotations

import re

import pytest

from tests.conftest import GENERATED, ROOT


def _block_after(text: str, marker: str, fence: str) -> list[str]:
    start = text.index(marker)
    body = text[text.index(f"```{fence}\n", start) + len(fence) + 4 :]
    return [ln for ln in body[: body.index("```")].splitlines() if ln.strip()]


def test_readme_excerpts_match_generated_files() -> None:
    readme = (ROOT / "README.md").read_text()
    code = (GENERATED / "seed_net.py").read_text()
    tex = (GENERATED / "seed_net.tex").read_text()
    for line in _block_after(readme, "An excerpt of `generated/seed_net.py`", "python"):
        assert line in code, line
    for line in _block_after(readme, "and of the derivation in", "latex"):
        assert line in tex, line


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install . && symbp generate examples/seed.yaml" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = re.search(r"^python3 -m pytest -q$", ci, re.M)
    assert test_command and "python3 -m pytest -q" in readme


def test_readme_lenet_example_trains_as_it_says() -> None:
    """The README's LeNet snippet, run against generated/lenet.py: the losses it prints
    are the ones its comment quotes (so the loss does go down as shown)."""
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    lines = _block_after(readme, "symbp gradcheck examples/lenet.yaml", "python")
    code = "\n".join(ln for ln in lines if not ln.startswith("#"))
    quoted = re.findall(r"epoch (\d+): (?:loss )?([0-9.]+)", "\n".join(lines))
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=GENERATED, capture_output=True, text=True, check=True
    )
    printed = dict(re.findall(r"epoch (\d+): loss ([0-9.]+)", run.stdout))
    assert len(quoted) == 5 and printed
    for epoch, value in quoted:  # to 1e-4: another BLAS may sum in another order
        assert abs(float(printed[epoch]) - float(value)) <= 1e-4 * float(value), (epoch, value)
    losses = [float(v) for v in printed.values()]
    assert losses == sorted(losses, reverse=True)


def test_readme_training_example_trains_as_it_says() -> None:
    """The README's digits snippet, run against generated/digits.py: minibatches, Adam and
    batch norm's running statistics; the losses and the test accuracy it prints are the
    ones its comments quote."""
    import subprocess
    import sys

    pytest.importorskip("sklearn")
    readme = (ROOT / "README.md").read_text()
    lines = _block_after(readme, "On the handwritten digits scikit-learn ships", "python")
    code = "\n".join(ln for ln in lines if not ln.startswith("#"))
    comments = "\n".join(ln for ln in lines if ln.startswith("#"))
    quoted = re.findall(r"epoch (\d+): (?:loss )?([0-9.]+)", comments)
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=GENERATED, capture_output=True, text=True, check=True
    )
    printed = dict(re.findall(r"epoch (\d+): loss ([0-9.]+)", run.stdout))
    assert len(quoted) == 4 and printed
    for epoch, value in quoted:  # to 1e-4: another BLAS may sum in another order
        assert abs(float(printed[epoch]) - float(value)) <= 1e-4 * float(value), (epoch, value)
    accuracy = re.search(r"test accuracy ([0-9.]+)", run.stdout)
    want = re.search(r"test accuracy ([0-9.]+)", comments)
    assert accuracy and want and abs(float(accuracy.group(1)) - float(want.group(1))) <= 0.005


def test_readme_array_api_examples_run_as_they_say() -> None:
    """The README's PyTorch snippet runs on generated/digits_xp.py; its JAX data-parallel
    block, on 4 simulated CPU devices, prints decreasing losses (the ones it quotes) and a
    4-device gradient equal to one device's to 1e-12 of the largest entry."""
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    torch_block = _block_after(readme, "## PyTorch, JAX and CuPy arrays", "python")
    subprocess.run(
        [sys.executable, "-c", "\n".join(torch_block)], cwd=GENERATED, check=True, timeout=300
    )
    lines = _block_after(readme, "### Data parallel on JAX", "python")
    run = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)],
        cwd=GENERATED,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    losses = [float(v) for v in re.findall(r"epoch \d+: loss ([0-9.]+)", run.stdout)]
    assert len(losses) == 5 and losses == sorted(losses, reverse=True), run.stdout
    quoted = re.findall(r"epoch (\d+): loss ([0-9.]+)", lines[-1])
    for epoch, value in quoted:
        assert abs(losses[int(epoch)] - float(value)) <= 1e-5 * float(value), (epoch, value)
    worst = float(re.search(r"largest difference: (\S+) of", run.stdout).group(1))
    assert worst <= 1e-12


def _trains_as_it_says(marker: str, epochs: int, ratio: float) -> None:
    """The README's snippet after `marker`, run against the committed module in generated/:
    the losses it prints are the ones its comment quotes (`epochs` of them, to 1e-4: another
    BLAS may sum in another order), falling, the last below `ratio` times the first."""
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    lines = _block_after(readme, marker, "python")
    code = "\n".join(ln for ln in lines if not ln.startswith("#"))
    quoted = re.findall(r"epoch (\d+): (?:loss )?([0-9.]+)", "\n".join(lines))
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=GENERATED, capture_output=True, text=True, check=True
    )
    printed = dict(re.findall(r"epoch (\d+): loss ([0-9.]+)", run.stdout))
    assert len(quoted) == epochs and printed
    for epoch, value in quoted:
        assert abs(float(printed[epoch]) - float(value)) <= 1e-4 * float(value), (epoch, value)
    losses = [float(v) for v in printed.values()]
    assert losses == sorted(losses, reverse=True) and losses[-1] < ratio * losses[0]


def test_readme_tiny_gpt_trains_as_it_says() -> None:
    """The README's tiny GPT snippet, run against generated/tiny_gpt.py on the text the
    repository ships: the losses it prints are the ones its comment quotes, falling."""
    _trains_as_it_says("it learns to continue it:", 4, 0.15)


def test_readme_lstm_example_trains_as_it_says() -> None:
    """The README's adding-problem snippet, run against generated/lstm_seq.py: the losses it
    prints are the ones its comment quotes, falling well below predicting the mean."""
    _trains_as_it_says("Trained with the generated `train` (minibatches, Adam, gradient", 4, 0.1)
