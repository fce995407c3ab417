"""A safe parser for the small expression language of custom activations and losses.

The text is parsed with :func:`ast.parse` and the tree is walked by hand; nothing is ever
evaluated by Python.  Only arithmetic (``+ - * / **``), unary ``+``/``-``, numbers, the given
variables, the constants ``pi`` and ``e`` and the functions in :data:`ALLOWED_FUNCTIONS` are
accepted.  Limits on length, depth, size and the size of the numbers are checked before SymPy
builds anything costly, so that hostile text is refused in milliseconds.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
import warnings
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, NamedTuple

import sympy

from symbp.errors import ExpressionError

MAX_LENGTH = 500
MAX_DEPTH = 50
MAX_NODES = 300
MAX_LITERAL = 10**6
MAX_INT_DIGITS = 7
MAX_EXPONENT = 16
MAX_EXPONENT_DENOMINATOR = 100
MAX_ROOT_BASE_BITS_FINE = 24
MAX_MINMAX_ARGS = 16
MAX_CONSTANT_BITS = 1024
MAX_MAGNITUDE = 1e100
MAX_CONSTANT_NESTING = 2
MAX_ROOT_BASE_BITS = 64
MAX_ROOT_TOTAL_BITS = 128

CONSTANTS: dict[str, Any] = {"pi": sympy.pi, "e": sympy.E}


def _sigmoid(t: Any) -> Any:
    """The logistic function written out, so derivatives stay in exp."""
    return 1 / (1 + sympy.exp(-t))


def _softplus(t: Any) -> Any:
    """log(1 + exp(t)) written out."""
    return sympy.log(1 + sympy.exp(t))


_UNARY: dict[str, Callable[[Any], Any]] = {
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
    "abs": sympy.Abs,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
    "atan": sympy.atan,
    "erf": sympy.erf,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
}
_VARIADIC: dict[str, Callable[..., Any]] = {"min": sympy.Min, "max": sympy.Max}

ALLOWED_FUNCTIONS: tuple[str, ...] = tuple(sorted([*_UNARY, *_VARIADIC]))

_BINARY_OPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
}
_OP_SYMBOLS: dict[type[ast.AST], str] = {
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.Not: "not",
    ast.Invert: "~",
}
_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripting",
    ast.Slice: "slicing",
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.Compare: "a comparison",
    ast.BoolOp: "'and'/'or'",
    ast.IfExp: "a conditional expression",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.Starred: "a star argument",
    ast.NamedExpr: "an assignment expression",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}
_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Call)
_NEUTRAL_NODES = (ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.UAdd, ast.USub)


def _fix(variables: Mapping[str, Any]) -> str:
    """The one-line description of what an expression may contain."""
    names = ", ".join(sorted(variables)) or "(none)"
    return (
        f"write arithmetic using numbers, the variables {names}, the constants pi and e, "
        f"+ - * / and ** (constant exponent, |p| <= {MAX_EXPONENT}), unary -, parentheses "
        f"and the functions {', '.join(ALLOWED_FUNCTIONS)} (min and max take 2 or more "
        "arguments, the others exactly 1)"
    )


def _snippet(text: str, node: ast.AST) -> str:
    """The source text of a node, shortened for messages."""
    segment = ast.get_source_segment(text, node) or type(node).__name__
    return segment if len(segment) <= 40 else segment[:37] + "..."


def _error(message: str, variables: Mapping[str, Any]) -> ExpressionError:
    """An ExpressionError with the standard fix."""
    return ExpressionError(message, fix=_fix(variables))


def _did_you_mean(name: str, candidates: list[str]) -> str:
    """A ' (did you mean ...?)' hint, or an empty string."""
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _parse(text: str, variables: Mapping[str, Any]) -> ast.Expression:
    """Parse with the cheap checks first; every parser failure becomes an ExpressionError."""
    if len(text) > MAX_LENGTH:
        raise _error(
            f"the expression is too long ({len(text)} characters, at most {MAX_LENGTH})", variables
        )
    if "\x00" in text:
        raise _error("the expression contains a NUL character", variables)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise _error(_syntax_message(text, err), variables) from None
    except (RecursionError, MemoryError, ValueError) as err:
        raise _error(f"the expression cannot be parsed ({type(err).__name__})", variables) from None


def _syntax_message(text: str, err: SyntaxError) -> str:
    """'syntax error at column N: reason (near ...)' from a SyntaxError."""
    lines = text.splitlines() or [""]
    lineno = min(max(err.lineno or 1, 1), len(lines))
    line = lines[lineno - 1]
    column = max(err.offset or 1, 1)
    excerpt = line[max(0, column - 16) : column + 15]
    where = f"line {lineno}, column {column}" if len(lines) > 1 else f"column {column}"
    return f"syntax error at {where}: {err.msg} (near {excerpt!r})"


def _check_tree(tree: ast.Expression, text: str, variables: Mapping[str, Any]) -> None:
    """Walk the tree without recursion, refusing forbidden constructs and oversized trees."""
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    count = minmax_args = 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _error(
                f"the expression is nested too deeply (more than {MAX_DEPTH} levels)", variables
            )
        if isinstance(node, ast.expr):
            count += 1
            if count > MAX_NODES:
                raise _error(
                    f"the expression is too large (more than {MAX_NODES} parts)", variables
                )
        _check_node(node, text, variables)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in _VARIADIC:
                minmax_args += len(node.args)
        children = list(ast.iter_child_nodes(node))
        stack.extend((child, depth + 1) for child in reversed(children))
    if minmax_args > MAX_MINMAX_ARGS:
        raise _error(
            f"min and max take at most {MAX_MINMAX_ARGS} arguments in total (got {minmax_args})",
            variables,
        )


def _check_node(node: ast.AST, text: str, variables: Mapping[str, Any]) -> None:
    """Refuse one node if its kind, operator or literal is not allowed."""
    if isinstance(node, _NEUTRAL_NODES):
        return
    if not isinstance(node, _ALLOWED_NODES):
        raise _error(_refusal(node, text), variables)
    if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY_OPS:
        raise _error(_refusal(node.op, text, node), variables)
    if isinstance(node, ast.UnaryOp) and not isinstance(node.op, (ast.UAdd, ast.USub)):
        raise _error(_refusal(node.op, text, node), variables)
    if isinstance(node, ast.Constant):
        _check_literal(node, text, variables)
    if isinstance(node, ast.Name) and node.id.startswith("__"):
        raise _error(f"names starting with '__' are not allowed: '{node.id}'", variables)
    if isinstance(node, ast.Call):
        _check_call_shape(node, text, variables)


def _refusal(node: ast.AST, text: str, parent: ast.AST | None = None) -> str:
    """A message naming the refused construct or operator."""
    if type(node) in _OP_SYMBOLS:
        where = f": '{_snippet(text, parent)}'" if parent is not None else ""
        return f"operator '{_OP_SYMBOLS[type(node)]}' is not allowed{where}"
    kind = _CONSTRUCTS.get(type(node), f"the construct {type(node).__name__}")
    return f"{kind} is not allowed: '{_snippet(text, node)}'"


def _check_literal(node: ast.Constant, text: str, variables: Mapping[str, Any]) -> None:
    """Accept only int and float literals of bounded size."""
    value = node.value
    if isinstance(value, bool) or value is None or value is Ellipsis:
        raise _error(f"'{_snippet(text, node)}' is not allowed; only numbers are", variables)
    if isinstance(value, (str, bytes)):
        raise _error(f"string literals are not allowed: {_snippet(text, node)}", variables)
    if isinstance(value, complex):
        raise _error(f"complex numbers are not allowed: '{_snippet(text, node)}'", variables)
    if not isinstance(value, (int, float)):
        raise _error(f"'{_snippet(text, node)}' is not allowed", variables)
    too_many_digits = isinstance(value, int) and len(str(abs(value))) > MAX_INT_DIGITS
    if too_many_digits or not abs(value) <= MAX_LITERAL:
        raise _error(
            f"the number '{_snippet(text, node)}' is too large (|value| <= {MAX_LITERAL})",
            variables,
        )


def _check_call_shape(node: ast.Call, text: str, variables: Mapping[str, Any]) -> None:
    """Calls must name a function directly and pass positional arguments only."""
    if not isinstance(node.func, ast.Name):
        raise _error(
            f"only the allowed functions can be called: '{_snippet(text, node)}'", variables
        )
    if node.keywords:
        raise _error(f"keyword arguments are not allowed: '{_snippet(text, node)}'", variables)


def parse_expression(text: str, variables: Mapping[str, Any]) -> Any:
    """Parse ``text`` into a SymPy expression in the given variable symbols.

    Raises :class:`ExpressionError` for anything outside the expression language or its limits.
    """
    if not isinstance(text, str):
        raise _error(f"the expression must be a string, got {type(text).__name__}", variables)
    tree = _parse(text, variables)
    _check_tree(tree, text, variables)
    try:
        expr = _Builder(text, variables).build(tree.body).expr
        _check_result(expr, variables)
    except ExpressionError:
        raise
    except (ValueError, TypeError, ArithmeticError, RecursionError) as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise _error(
            f"the expression is not a valid real expression ({reason})", variables
        ) from None
    return expr


def _check_result(expr: Any, variables: Mapping[str, Any]) -> None:
    """Refuse results that are undefined, not real, or mention foreign symbols."""
    if not isinstance(expr, sympy.Expr):
        raise _error("the expression does not denote a number", variables)
    foreign = expr.free_symbols - set(variables.values())
    if foreign:
        raise _error(f"unexpected symbols {sorted(map(str, foreign))}", variables)
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, sympy.I) or expr.has(-sympy.oo):
        raise _error(
            f"the expression is undefined or not real (it simplifies to {expr})", variables
        )
    for power in expr.atoms(sympy.Pow):
        if power.base.is_number and power.base.is_negative and not power.exp.is_integer:
            raise _error(f"the expression is not real: {power}", variables)


def _bits(number: Any) -> int:
    """The bit size of a SymPy rational (numerator plus denominator)."""
    return int(number.p).bit_length() + int(number.q).bit_length()


def _approx(function: Callable[..., Any], *args: float | None) -> float | None:
    """A float approximation of a constant (None if it depends on a variable, nan if undefined)."""
    if any(arg is None for arg in args):
        return None
    try:
        result = function(*args)
    except OverflowError:
        return math.inf
    except (ValueError, ZeroDivisionError):
        return math.nan
    return math.nan if isinstance(result, complex) else float(result)


_FLOAT_FUNCTIONS: dict[str, Callable[..., float]] = {
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "abs": abs,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "atan": math.atan,
    "erf": math.erf,
    "sigmoid": lambda t: 1 / (1 + math.exp(-t)),
    "softplus": lambda t: math.log1p(math.exp(t)),
    "min": min,
    "max": max,
}
_FLOAT_OPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_SYMPY_OPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class _Part(NamedTuple):
    """A built subexpression and the bounds that keep SymPy's work on it cheap."""

    expr: Any  # the SymPy expression
    bits: int  # bounds the bit size of any rational SymPy could fold out of it
    value: float | None  # a float approximation if it is constant, else None
    level: int = 0  # for constants: how deeply functions and roots are nested


class _Builder:
    """Turns a checked tree into SymPy, refusing numbers that would grow too large.

    Before SymPy combines anything, the bit size of the rationals it could produce and the
    magnitude of every constant subexpression (evaluated in floats) are checked, so SymPy never
    folds huge integers nor evaluates towers like exp(exp(...)) numerically.
    """

    def __init__(self, text: str, variables: Mapping[str, Any]) -> None:
        self.text = text
        self.variables = variables
        self.root_bits = 0

    def fail(self, message: str) -> ExpressionError:
        """An ExpressionError with the standard fix."""
        return _error(message, self.variables)

    def build(self, node: ast.expr) -> _Part:
        """Dispatch on the (already whitelisted) node type."""
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            number = _rational(node.value)
            return _Part(number, _bits(number), float(node.value))
        if isinstance(node, ast.Name):
            symbol = self._name(node)
            return _Part(symbol, 0, float(symbol) if symbol.is_number else None)
        if isinstance(node, ast.UnaryOp):
            part = self.build(node.operand)
            if isinstance(node.op, ast.USub):
                value = _approx(operator.neg, part.value)
                return _Part(-part.expr, part.bits, value, part.level)
            return part
        if isinstance(node, ast.BinOp):
            return self._binary(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise self.fail(f"'{_snippet(self.text, node)}' is not allowed")

    def _check(self, bits: int, value: float | None, node: ast.AST, level: int = 0) -> None:
        """Refuse a subtree whose numbers would be too large, too precise or too intricate."""
        if bits > MAX_CONSTANT_BITS:
            raise self.fail(
                f"the numbers in '{_snippet(self.text, node)}' would become too "
                f"large or too precise (more than {MAX_CONSTANT_BITS} bits)"
            )
        if value is not None and abs(value) > MAX_MAGNITUDE:
            raise self.fail(
                f"the constant '{_snippet(self.text, node)}' is too large "
                f"(about {value:.3g}, at most {MAX_MAGNITUDE:.0e} in absolute value)"
            )
        if value is not None and level > MAX_CONSTANT_NESTING:
            raise self.fail(
                f"the constant '{_snippet(self.text, node)}' nests functions or roots more than "
                f"{MAX_CONSTANT_NESTING} deep; write its value as a number instead"
            )

    def _name(self, node: ast.Name) -> Any:
        """A variable or a constant; functions and unknown names are refused."""
        name = node.id
        if name in self.variables:
            return self.variables[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in ALLOWED_FUNCTIONS:
            raise self.fail(f"'{name}' is a function; call it like {name}(...)")
        known = [*self.variables, *CONSTANTS, *ALLOWED_FUNCTIONS]
        raise self.fail(
            f"unknown name '{name}'{_did_you_mean(name, known)}; "
            f"allowed names: {', '.join(sorted(known))}"
        )

    def _binary(self, node: ast.BinOp) -> _Part:
        """+ - * / with bounds checked first; ** goes to _power."""
        if isinstance(node.op, ast.Pow):
            exponent = self._exponent(node)
            return self._power(self.build(node.left), exponent, node)
        left, right = self.build(node.left), self.build(node.right)
        op = type(node.op)
        bits = left.bits + right.bits + 1
        value = _approx(_FLOAT_OPS[op], left.value, right.value)
        level = max(left.level, right.level)
        self._check(bits, value, node, level)
        return _Part(_SYMPY_OPS[op](left.expr, right.expr), bits, value, level)

    def _exponent(self, node: ast.BinOp) -> Any:
        """The constant exponent of ``**``, refused unless small and simple."""
        value = _constant_value(node.right)
        where = _snippet(self.text, node)
        if value is None:
            is_e = isinstance(node.left, ast.Name) and node.left.id == "e"
            hint = " (write exp(t) for e**t)" if is_e else ""
            raise self.fail(f"the exponent of '**' must be a constant number: '{where}'{hint}")
        if abs(value) > MAX_EXPONENT:
            raise self.fail(
                f"the exponent {value} is too large (|exponent| <= {MAX_EXPONENT}): '{where}'"
            )
        if value.q > MAX_EXPONENT_DENOMINATOR:
            raise self.fail(
                f"the exponent {value} is too fine-grained (denominator at most "
                f"{MAX_EXPONENT_DENOMINATOR}, e.g. 0.5, 0.01 or 1/3): '{where}'"
            )
        return value

    def _power(self, base: _Part, exponent: Any, node: ast.AST) -> _Part:
        """base**exponent once the numbers it could produce are known to stay small."""
        if exponent.q != 1:
            self.root_bits += base.bits
            limit = MAX_ROOT_BASE_BITS_FINE if exponent.q > 16 else MAX_ROOT_BASE_BITS
            if base.bits > limit or self.root_bits > MAX_ROOT_TOTAL_BITS:
                raise self.fail(
                    f"the numbers under the root in '{_snippet(self.text, node)}' "
                    "are too large or too precise; simplify the constants"
                )
        bits = base.bits * max(abs(int(exponent.p)), 1) + _bits(exponent)
        value = _approx(operator.pow, base.value, float(exponent))
        level = base.level + (exponent.q != 1)
        self._check(bits, value, node, level)
        return _Part(base.expr**exponent, bits, value, level)

    def _call(self, node: ast.Call) -> _Part:
        """An allowed function applied to the right number of arguments."""
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        if name not in ALLOWED_FUNCTIONS:
            raise self.fail(self._unknown_function(name))
        count = len(node.args)
        if name in _VARIADIC and count < 2:
            raise self.fail(f"{name}() takes at least 2 arguments (got {count})")
        if name in _UNARY and count != 1:
            raise self.fail(f"{name}() takes exactly 1 argument (got {count})")
        parts = [self.build(arg) for arg in node.args]
        if name == "sqrt":
            return self._power(parts[0], sympy.Rational(1, 2), node)
        bits = sum(part.bits for part in parts) + 2 * count
        value = _approx(_FLOAT_FUNCTIONS[name], *(part.value for part in parts))
        level = max(part.level for part in parts) + 1
        self._check(bits, value, node, level)
        exprs = [part.expr for part in parts]
        function = _VARIADIC[name] if name in _VARIADIC else _UNARY[name]
        return _Part(function(*exprs), bits, value, level)

    def _unknown_function(self, name: str) -> str:
        """The message for calling something that is not an allowed function."""
        if name in self.variables or name in CONSTANTS:
            return f"'{name}' is not a function"
        hint = _did_you_mean(name, list(ALLOWED_FUNCTIONS))
        return f"unknown function '{name}'{hint}; allowed: {', '.join(ALLOWED_FUNCTIONS)}"


def _rational(value: int | float) -> Any:
    """An exact SymPy number: ints as Integer, floats from their shortest decimal text."""
    if isinstance(value, int):
        return sympy.Integer(value)
    fraction = Fraction(repr(value))
    return sympy.Rational(fraction.numerator, fraction.denominator)


def _signed_literal(node: ast.expr) -> Any:
    """The value of ``[+-]...number``, else None."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return sign * _rational(node.value)
    return None


def _constant_value(node: ast.expr) -> Any:
    """The value of a signed number or a signed ratio of signed numbers, else None."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)):
        value = _signed_literal(node)
        return None if value is None else sign * value
    top, bottom = _signed_literal(node.left), _signed_literal(node.right)
    if top is None or bottom is None or bottom == 0:
        return None
    return sign * top / bottom
