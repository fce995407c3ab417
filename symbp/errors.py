"""Typed errors: one root, one subclass per pipeline stage.

The library raises these; only the CLI formats them and chooses the exit status.
Each stage error also inherits a builtin so callers can catch it generically.
"""

from __future__ import annotations


class SymbpError(Exception):
    """Root of every error symbp raises on purpose (bad input, refused write, ...)."""

    exit_status = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        path: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.fix = fix

    def located(self, file: str | None = None) -> SymbpError:
        """Fill in the file name if the raiser did not know it."""
        if self.file is None:
            self.file = file
        return self

    def format(self) -> str:
        """One short message: 'file:line:col: path: what is wrong' then the fix."""
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        head = f"{where}: "
        if self.path:
            head += f"{self.path}: "
        text = f"error: {head}{self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text

    def __str__(self) -> str:
        return self.format()


class SpecError(SymbpError, ValueError):
    """The architecture file is invalid (syntax, schema, values)."""


class ExpressionError(SpecError):
    """An expression string (custom activation or loss) is invalid or refused."""


class DerivationError(SymbpError, ArithmeticError):
    """SymPy could not derive what the architecture needs."""


class OutputError(SymbpError, OSError):
    """Writing the outputs was refused or failed (nothing was changed)."""
