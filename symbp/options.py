"""The document options the command line offers, without importing SymPy (the CLI lists
them in --help and argparse checks them before any work)."""

from __future__ import annotations

# --style: the whole document (full), or the mathematics alone (paper): no narration about
# SymPy, storage or overflow, and no cost section.
STYLES = ("full", "paper")

# --transpose: the symbol's name -> the TeX of the transpose's superscript.
TRANSPOSES = {"T": r"\mathsf{T}", "top": r"\top", "intercal": r"\intercal"}
