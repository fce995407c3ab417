"""Compile a generated .tex into a PDF with pdflatex, in a scratch folder."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from symbp.errors import OutputError
from symbp.pipeline import replace_file

INSTALL_HINT = (
    "install pdflatex, e.g. apt-get install texlive-latex-base texlive-latex-recommended lmodern"
)


def pdflatex_available() -> bool:
    return shutil.which("pdflatex") is not None


def compile_pdf(tex: Path) -> Path:
    """Run pdflatex twice (for references) and put <name>.pdf next to the .tex, atomically."""
    if not pdflatex_available():
        raise OutputError(
            "pdflatex was not found, so no PDF was made", file=str(tex), fix=INSTALL_HINT
        )
    with tempfile.TemporaryDirectory(prefix="symbp-pdf-") as scratch:
        work = Path(scratch) / tex.name
        shutil.copy(tex, work)
        for _ in range(2):
            run = subprocess.run(
                ["pdflatex", "-halt-on-error", "-interaction=nonstopmode", work.name],
                cwd=scratch,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if run.returncode != 0:
                last = [ln for ln in run.stdout.splitlines() if ln.startswith("!")][:3]
                raise OutputError(
                    "pdflatex failed: " + ("; ".join(last) or "see its log"),
                    file=str(tex),
                    fix="please report this: generated documents should always compile",
                )
        target = tex.with_suffix(".pdf")
        try:
            replace_file(target, work.with_suffix(".pdf").read_bytes())
        except OSError as exc:
            raise OutputError(
                f"cannot write {target}: {exc.strerror or exc}", file=str(target)
            ) from exc
    return target
