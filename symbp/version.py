"""symbp's version (a leaf module: the package, the CLI and file headers read it)."""

__version__ = "0.1.0"
