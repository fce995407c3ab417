"""Documents a referee accepts (issue 21): nothing sticks out of the text.

pdflatex logs every line wider than its box as `Overfull \\hbox (X pt too wide)`; a formula that
runs into the margin (or, in a two-column paper, into the other column) is one. These tests
compile the documents and fail on any such box over TOLERANCE, naming the file, its lines and
what LaTeX shows of the box:

- three networks' bodies (--body --section-level subsection) \\input into a two-column 10pt
  article on letter paper (the class's own letterpaper layout, no geometry package: a
  column of about 230pt, 3.2in);
- the standalone document of every example;
- the standalone document of a network with a long custom activation, whose displays are
  broken into rows ("where u_1 = ..." definitions and the rows of a Piecewise too).

The documents are generated once per module, and compiled in parallel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT
from tests.test_document import compile_tex

TOLERANCE = 1.0  # pt: TeX's own \hfuzz is 0.1pt; a box over 1pt shows
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
PAPER_EXAMPLES = ("lenet.yaml", "resmlp.yaml", "lstm_seq.yaml")
# A custom activation whose first and second derivatives are long: sums of products of
# functions, a square root, constants (pi, e) and a clipped piece (min of max).
LONG_ACTIVATION = "atan(x) + sin(x)*erf(x) + sqrt(1 + x**2) - pi*cos(x)/e + min(max(x, -1), 1)"

needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="pdflatex missing: .ci/run installs it"
)

_OVERFULL = re.compile(r"Overfull \\hbox \((\d+(?:\.\d+)?)pt too wide\)")


def overfull_boxes(log_text: str) -> list[float]:
    """The widths (pt) by which each overfull \\hbox of a pdflatex log sticks out, in log
    order: `Overfull \\hbox (12.5pt too wide) in paragraph at lines 3--4` gives 12.5."""
    return [float(m.group(1)) for m in _OVERFULL.finditer(log_text)]


@dataclass(frozen=True)
class Box:
    """One overfull box of a log: how wide over, the source file being read and its lines
    (`in paragraph at lines 3--4`, `detected at line 7`, `in alignment at lines 9--12`), and
    the first line of LaTeX's rendering of the box's contents."""

    width: float
    file: str
    where: str
    shows: str

    def line_numbers(self) -> tuple[int, int]:
        numbers = [int(n) for n in re.findall(r"\d+", self.where)] or [0]
        return numbers[0], numbers[-1]

    def source(self, folder: Path) -> str:
        """The source lines the box comes from, for a report (cut to 300 characters each)."""
        path = folder / self.file
        if not path.is_file():
            return ""
        lines = path.read_text(errors="replace").splitlines()
        first, last = self.line_numbers()
        if self.where.startswith("detected"):  # a display: from its \begin{equation}
            while first > 1 and "\\begin{equation}" not in lines[first - 1]:
                first -= 1
        chosen = lines[max(first - 1, 0) : last]
        return " / ".join(ln.strip()[:300] for ln in chosen)


def overfull_details(log_text: str) -> list[Box]:
    """Each overfull \\hbox of a pdflatex log (as overfull_boxes), with where it comes from:
    the file is the last `(./name.tex` the log opened before the message (pdflatex writes one
    when it starts reading a file; the bodies are \\input one after the other)."""
    boxes = []
    opened = [(m.start(), m.group(1)) for m in re.finditer(r"\(\./([\w.-]+\.tex)", log_text)]
    for m in _OVERFULL.finditer(log_text):
        file = next((name for at, name in reversed(opened) if at < m.start()), "")
        rest = log_text[m.end() :].split("\n", 2)
        where = rest[0].strip()
        shows = rest[1].strip() if len(rest) > 1 else ""
        boxes.append(Box(float(m.group(1)), file, where, shows))
    return boxes


def report(log_text: str, folder: Path) -> list[str]:
    """One line per overfull box over TOLERANCE: width, file:lines, source, what LaTeX shows."""
    return [
        f"{b.width}pt in {b.file} {b.where}: {b.source(folder)[:400]!r} [{b.shows[:120]}]"
        for b in overfull_details(log_text)
        if b.width > TOLERANCE
    ]


def compile_twice(tex: Path) -> str:
    """pdflatex until the references settle (tests.test_document.compile_tex); the log."""
    return compile_tex(tex)


def symbp_generate(*args: str) -> None:
    """`python -m symbp generate ...` with this checkout's symbp (not an installed one)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "symbp", "generate", *args]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def packages(body: str) -> list[str]:
    """The preamble lines a body lists in its top comments (% \\usepackage{...})."""
    return [ln[2:] for ln in body.splitlines() if re.match(r"% \\use(package|tikzlibrary)\{", ln)]


def paper_tex(bodies: list[tuple[str, str]]) -> str:
    """A two-column 10pt article on letter paper (the class's own layout) that \\inputs the
    bodies (name, text) as appendix sections, with the packages they list."""
    preamble: dict[str, None] = {}
    sections = []
    for name, body in bodies:
        preamble.update(dict.fromkeys(packages(body)))
        sections.append(f"\\section{{Network {name.replace('_', '-')}}}\n\\input{{{name}_body}}")
    return (
        "\\documentclass[10pt,twocolumn,letterpaper]{article}\n"
        "\\usepackage[T1]{fontenc}\n\\usepackage{lmodern}\n" + "\n".join(preamble) + "\n"
        "\\begin{document}\n"
        "A paper with the networks' derivations in its appendix.\n"
        "\\appendix\n" + "\n".join(sections) + "\n\\end{document}\n"
    )


# --- the log parser, on its own ----------------------------------------------------------

LOG = r"""(./paper.tex (/usr/share/texlive/article.cls)
(./lenet_body.tex
Overfull \hbox (12.53488pt too wide) in paragraph at lines 3--4
[]\T1/lmr/m/n/10 a long line|
Overfull \hbox (0.5pt too wide) detected at line 9
[]
) (./resmlp_body.tex
Overfull \hbox (101pt too wide) detected at line 12
 $[]$
))
"""


def test_overfull_boxes_reads_every_width() -> None:
    assert overfull_boxes(LOG) == [12.53488, 0.5, 101.0]
    assert overfull_boxes("Underfull \\hbox (badness 10000) in paragraph at lines 1--2") == []
    assert overfull_boxes("Overfull \\vbox (3.0pt too high) has occurred") == []


def test_overfull_details_name_the_file_and_lines(tmp_path: Path) -> None:
    boxes = overfull_details(LOG)
    assert [(b.file, b.line_numbers()) for b in boxes] == [
        ("lenet_body.tex", (3, 4)),
        ("lenet_body.tex", (9, 9)),
        ("resmlp_body.tex", (12, 12)),
    ]
    (tmp_path / "lenet_body.tex").write_text("one\ntwo\nthree\nfour\n")
    assert boxes[0].source(tmp_path) == "three / four"
    assert boxes[0].shows.endswith("a long line|")
    assert len(report(LOG, tmp_path)) == 2  # 0.5pt is within the tolerance


@needs_pdflatex
def test_overfull_boxes_of_a_real_log(tmp_path: Path) -> None:
    """The parser reads what this pdflatex writes: a display 2in too wide is found, a fitting
    one is not."""
    tex = tmp_path / "probe.tex"
    tex.write_text(
        "\\documentclass{article}\n\\begin{document}\n"
        "\\[ \\hbox to \\dimexpr\\linewidth+2in\\relax{x\\hfil} \\]\n"
        "\\[ x = 1 \\]\n\\end{document}\n"
    )
    boxes = overfull_details(compile_twice(tex))
    assert len(boxes) == 1 and 140 < boxes[0].width < 150, boxes
    assert boxes[0].file == "probe.tex" and boxes[0].line_numbers()[0] == 3
    assert "\\dimexpr" in boxes[0].source(tmp_path)


# --- the documents -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every example's standalone document, the paper's bodies and the long activation's
    network, generated once for the module."""
    folder = tmp_path_factory.mktemp("layout")
    (folder / "paper").mkdir()
    (folder / "custom").mkdir()
    pair = [str(EXAMPLES / e) for e in PAPER_EXAMPLES]
    symbp_generate(*pair, "-o", str(folder / "paper"), "--body", "--section-level", "subsection")
    symbp_generate(*map(str, EXAMPLE_FILES), "-o", str(folder / "examples"))
    arch = folder / "custom" / "long_activation.yaml"
    arch.write_text(
        "name: long_activation\ninput: 3\n"
        "layers:\n  - {units: 4, activation: wavy}\n  - {units: 2, activation: sigmoid}\n"
        f'loss: mse\nactivations:\n  wavy: "{LONG_ACTIVATION}"\n'
    )
    symbp_generate(str(arch), "-o", str(folder / "custom"))
    (folder / "broken").mkdir()
    long = [str(arch), str(EXAMPLES / "smooth_mlp.yaml")]
    symbp_generate(*long, "-o", str(folder / "broken"), "--body", "--section-level", "subsection")
    yield folder


@pytest.fixture(scope="module")
def logs(made: Path) -> dict[str, tuple[Path, str]]:
    """name -> (its .tex, the log of compiling it twice), for the paper, every example's
    standalone document and the long activation's; compiled in parallel."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex missing: .ci/run installs it")
    paper = made / "paper"
    names = [p.name.removesuffix("_body.tex") for p in sorted(paper.glob("*_body.tex"))]
    assert len(names) == len(PAPER_EXAMPLES), names
    bodies = [(n, (paper / f"{n}_body.tex").read_text()) for n in names]
    (paper / "paper.tex").write_text(paper_tex(bodies))
    texs = {"paper": paper / "paper.tex"}
    for tex in sorted((made / "examples").glob("*.tex")):
        if not tex.name.endswith("_body.tex"):
            texs[tex.stem] = tex
    texs["long_activation"] = made / "custom" / "long_activation.tex"
    broken = made / "broken"
    names = [p.name.removesuffix("_body.tex") for p in sorted(broken.glob("*_body.tex"))]
    (broken / "paper.tex").write_text(
        paper_tex([(n, (broken / f"{n}_body.tex").read_text()) for n in names])
    )
    texs["broken_paper"] = broken / "paper.tex"
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        done = dict(zip(texs, pool.map(compile_twice, texs.values()), strict=True))
    return {name: (texs[name], done[name]) for name in texs}


STANDALONE = sorted(p.stem for p in EXAMPLE_FILES)


def _standalone_name(made: Path, stem: str) -> str:
    """The network name (and .tex stem) of an example file, read off its `name:` line."""
    text = (EXAMPLES / f"{stem}.yaml").read_text()
    m = re.search(r"^name:\s*(\S+)", text, re.M)
    return m.group(1) if m else stem


@needs_pdflatex
def test_two_column_paper_has_no_overfull_box(logs: dict[str, tuple[Path, str]]) -> None:
    tex, log = logs["paper"]
    assert "\\input{lenet_body}" in tex.read_text()
    wide = report(log, tex.parent)
    assert not wide, f"{len(wide)} overfull boxes:\n" + "\n".join(wide)


@needs_pdflatex
@pytest.mark.parametrize("stem", STANDALONE)
def test_standalone_document_has_no_overfull_box(
    stem: str, made: Path, logs: dict[str, tuple[Path, str]]
) -> None:
    tex, log = logs[_standalone_name(made, stem)]
    wide = report(log, tex.parent)
    assert not wide, f"{len(wide)} overfull boxes:\n" + "\n".join(wide)


@needs_pdflatex
def test_long_custom_activation_breaks_its_displays(logs: dict[str, tuple[Path, str]]) -> None:
    tex, log = logs["long_activation"]
    text = tex.read_text()
    # The derivative is long enough to be broken: rows of an aligned block, cases rows.
    assert "\\begin{aligned}" in text and "\\begin{cases}" in text
    wide = report(log, tex.parent)
    assert not wide, f"{len(wide)} overfull boxes:\n" + "\n".join(wide)


@needs_pdflatex
def test_displays_the_printer_breaks_fit_a_column(logs: dict[str, tuple[Path, str]]) -> None:
    """In the two-column paper, every display symbp.documents.latex broke into rows (an
    aligned block, rows of cases) fits its column: the long activation's and smooth_mlp's
    (GELU, mish) bodies. Displays the template writes whole are the template's to fit."""
    tex, log = logs["broken_paper"]
    boxes = [b for b in overfull_details(log) if b.width > TOLERANCE]
    broken = [b for b in boxes if "aligned}[t]" in b.source(tex.parent)]
    assert "aligned}[t]" in (tex.parent / "long_activation_body.tex").read_text()
    assert not broken, "\n".join(f"{b.width}pt {b.file} {b.where}" for b in broken)
