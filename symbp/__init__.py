"""symbp: SymPy derives backpropagation for a graph of layers; Jinja renders NumPy and LaTeX.

>>> import symbp
>>> d = symbp.derive("examples/seed.yaml")      # the SymPy derivation (inspectable)
>>> result = symbp.generate("examples/seed.yaml")  # derivation + rendered files
"""

from __future__ import annotations

from symbp.derivation.derive import Derivation, derive  # noqa: E402
from symbp.derivation.network import Network, derive_network  # noqa: E402
from symbp.errors import (  # noqa: E402
    DerivationError,
    ExpressionError,
    OutputError,
    SpecError,
    SymbpError,
)
from symbp.frontend.spec import Arch, load_arch  # noqa: E402
from symbp.pipeline import Generated, generate, write_files  # noqa: E402
from symbp.version import __version__ as __version__  # noqa: E402

__all__ = [
    "Arch",
    "Derivation",
    "DerivationError",
    "ExpressionError",
    "Generated",
    "Network",
    "OutputError",
    "SpecError",
    "SymbpError",
    "derive",
    "derive_network",
    "generate",
    "load_arch",
    "write_files",
]
