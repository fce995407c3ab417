"""The document options the command line offers, without importing SymPy (the CLI lists
them in --help and argparse checks them before any work)."""

from __future__ import annotations

# --style: the whole document (full), or the mathematics alone (paper): no narration about
# SymPy, storage or overflow, and no cost section.
STYLES = ("full", "paper")

# --transpose: the symbol's name -> the TeX of the transpose's superscript.
TRANSPOSES = {"T": r"\mathsf{T}", "top": r"\top", "intercal": r"\intercal"}

# --target: the module's array library. numpy: <name>.py, NumPy alone, with workspaces;
# array-api: <name>_xp.py, the same functions for any array API library (PyTorch, JAX, CuPy).
TARGETS = ("numpy", "array-api")
# the module file each target writes, after the network's name
MODULE_SUFFIX = {"numpy": "", "array-api": "_xp"}
