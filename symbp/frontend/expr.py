"""A safe parser for the small expression language of custom activations and losses.

The text is parsed with :func:`ast.parse` and the tree is walked by hand; nothing is ever
evaluated by Python, and no eval/exec/sympify/parse_expr sees the text. Allowed: numbers, the
given variables, the constants ``pi`` and ``e``, ``+ - * /``, ``**`` with a constant exponent,
unary ``+``/``-``, parentheses and the functions in :data:`ALLOWED_FUNCTIONS`.

Work happens in three stages, each bounded before the next starts:

1. text checks (length, NUL) and ``ast.parse``;
2. an iterative walk of the tree (depth, size, allowed constructs);
3. an analysis in plain Python (names, arities, exponents, and for every constant
   subexpression the size of its rationals, its magnitude and how deeply it nests functions),

so every refusal happens before SymPy builds anything. Only then is the SymPy expression built,
under a budget of Python function calls (counted by a profile hook, so the limit is the same on
every machine) because SymPy's automatic simplification can be slow on some valid expressions.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import math
import operator
import sys
import warnings
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, NamedTuple

import sympy

from symbp.errors import ExpressionError

MAX_LENGTH = 500  # characters of text
MAX_DEPTH = 50  # levels of the syntax tree
MAX_NODES = 300  # expression nodes of the syntax tree
MAX_LITERAL = 10**6  # absolute value of a number literal
MAX_INT_DIGITS = 7  # digits of an integer literal
MAX_EXPONENT = 16  # absolute value of a constant exponent
MAX_EXPONENT_DENOMINATOR = 100  # denominator of a fractional exponent (0.01 is allowed)
MAX_MINMAX_ARGS = 16  # arguments of all min/max calls together
MAX_CONSTANT_BITS = 1024  # bit size of the rationals SymPy may fold
MAX_ROOT_BITS = (64, 24, 128)  # rationals under a root: exponent q <= 16, q > 16, in total
MAX_MAGNITUDE = 1e100  # absolute value of any constant subexpression
MAX_CONSTANT_NESTING = 2  # functions/roots nested inside a constant subexpression
MAX_SYMPY_CALLS = 250_000  # Python calls SymPy may make to build one expression

CONSTANTS: dict[str, Any] = {"pi": sympy.pi, "e": sympy.E}
_CONSTANT_VALUES = {"pi": math.pi, "e": math.e}


def _sigmoid(t: Any) -> Any:
    """The logistic function written out, so derivatives stay in exp."""
    return 1 / (1 + sympy.exp(-t))


def _softplus(t: Any) -> Any:
    """log(1 + exp(t)) written out."""
    return sympy.log(1 + sympy.exp(t))


# fmt: off
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": sympy.Abs, "atan": sympy.atan, "cos": sympy.cos, "cosh": sympy.cosh,
    "erf": sympy.erf, "exp": sympy.exp, "log": sympy.log, "max": sympy.Max, "min": sympy.Min,
    "sigmoid": _sigmoid, "sin": sympy.sin, "sinh": sympy.sinh, "softplus": _softplus,
    "sqrt": sympy.sqrt, "tan": sympy.tan, "tanh": sympy.tanh,
}
# fmt: on
_VARIADIC = ("min", "max")
ALLOWED_FUNCTIONS: tuple[str, ...] = tuple(sorted(_FUNCTIONS))

# Float twins of the functions, to bound constant subexpressions before SymPy sees them;
# sigmoid and softplus contain exp, whose overflow must be noticed too.
# fmt: off
_FLOAT_FUNCTIONS: dict[str, Callable[..., float]] = {
    "abs": abs, "atan": math.atan, "cos": math.cos, "cosh": math.cosh, "erf": math.erf,
    "exp": math.exp, "log": math.log, "max": max, "min": min,
    "sigmoid": lambda t: 1 / (1 + math.exp(-t)), "sin": math.sin, "sinh": math.sinh,
    "softplus": lambda t: math.log1p(math.exp(t)), "sqrt": math.sqrt, "tan": math.tan,
    "tanh": math.tanh,
}
_OPERATORS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_REFUSED_OPERATORS: dict[type[ast.AST], str] = {
    ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.Not: "not", ast.Invert: "~",
}
_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripting", ast.Slice: "slicing",
    ast.Lambda: "a lambda", ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a generator expression",
    ast.Compare: "a comparison", ast.BoolOp: "'and'/'or'", ast.IfExp: "a conditional expression",
    ast.List: "a list", ast.Tuple: "a tuple", ast.Dict: "a dict", ast.Set: "a set",
    ast.Starred: "a star argument", ast.NamedExpr: "an assignment expression",
    ast.JoinedStr: "an f-string", ast.FormattedValue: "an f-string", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield",
}
# fmt: on
_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Call)
_NEUTRAL_NODES = (ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.UAdd, ast.USub)


def check_expression(text: str, variables: Mapping[str, Any]) -> ast.expr:
    """Every check that needs no SymPy (milliseconds); returns the validated syntax tree.

    Raises :class:`ExpressionError` for anything outside the language or its limits.
    """
    if not isinstance(text, str):
        raise _error(f"the expression must be a string, got {type(text).__name__}", variables)
    tree = _parse(text, variables)
    _check_tree(tree, text, variables)
    _Analyzer(text, variables).visit(tree.body)
    return tree.body


def parse_expression(
    text: str, variables: Mapping[str, Any], *, budget: int = MAX_SYMPY_CALLS
) -> Any:
    """Parse ``text`` into a SymPy expression whose free symbols are among ``variables``.

    Raises :class:`ExpressionError` for anything outside the language or its limits, for
    expressions that are undefined or not real (such as ``1/0`` or ``log(-1)``), and when
    SymPy needs more than ``budget`` Python calls to build it.
    """
    body = check_expression(text, variables)
    try:
        expr = _within_budget(lambda: _check_result(_build(body, variables), variables), budget)
    except ExpressionError:
        raise
    except _BudgetSpent:
        message = f"SymPy needs too much work to build the expression (over {budget:,} calls)"
        raise _error(message + "; simplify it", variables) from None
    except (ValueError, TypeError, ArithmeticError, RecursionError) as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        message = f"the expression is not a valid real expression ({reason})"
        raise _error(message, variables) from None
    # Outside the call budget (whose count would depend on what SymPy has cached), under a
    # time budget: a few evaluations.
    from symbp.budget import bounded

    if expr.free_symbols and not bounded(lambda: _real_somewhere(expr), True, 1.0):
        raise _error(
            "the expression is not a real number for any value tried (such as log of a "
            "negative number everywhere)",
            variables,
        )
    return expr


_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


class _BudgetSpent(BaseException):
    """Raised by the profile hook; a BaseException so that SymPy's handlers do not catch it."""


def _within_budget(call: Callable[[], Any], budget: int) -> Any:
    """call() allowed at most ``budget`` Python calls (unbounded if a profiler is running)."""
    if sys.getprofile() is not None:
        return call()
    calls = 0

    def hook(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1
            # Not in a generator's frame: a generator is also entered when it is closed as it
            # is freed, where Python reports the exception as "ignored" and carries on with
            # the hook removed (CPython removes a hook that raises), unbounded.
            if calls > budget and not frame.f_code.co_flags & _RESUMABLE:
                raise _BudgetSpent  # CPython also removes the hook when it raises

    sys.setprofile(hook)
    try:
        result = call()
    finally:
        sys.setprofile(None)
    if calls > budget:  # the exception was swallowed somewhere: the work is still too much
        raise _BudgetSpent
    return result


def _fix(variables: Mapping[str, Any]) -> str:
    """The one-line description of what an expression may contain."""
    names = ", ".join(sorted(variables)) or "(none)"
    return (
        f"write arithmetic using numbers, the variables {names}, the constants pi and e, "
        f"+ - * / and ** (constant exponent, |p| <= {MAX_EXPONENT}), unary -, parentheses "
        f"and the functions {', '.join(ALLOWED_FUNCTIONS)} (min and max take 2 or more "
        "arguments, the others exactly 1)"
    )


def _error(message: str, variables: Mapping[str, Any]) -> ExpressionError:
    """An ExpressionError with the standard fix."""
    return ExpressionError(message, fix=_fix(variables))


def _snippet(text: str, node: ast.AST) -> str:
    """The source text of a node, shortened for messages."""
    segment = ast.get_source_segment(text, node) or type(node).__name__
    return segment if len(segment) <= 40 else segment[:37] + "..."


def _did_you_mean(name: str, candidates: list[str]) -> str:
    """A ' (did you mean ...?)' hint, or an empty string."""
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _parse(text: str, variables: Mapping[str, Any]) -> ast.Expression:
    """ast.parse after the cheap text checks; every parser failure becomes an ExpressionError."""
    if len(text) > MAX_LENGTH:
        message = f"the expression is too long ({len(text)} characters, at most {MAX_LENGTH})"
        raise _error(message, variables)
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
    column = max(err.offset or 1, 1)
    excerpt = lines[lineno - 1][max(0, column - 16) : column + 15]
    where = f"line {lineno}, column {column}" if len(lines) > 1 else f"column {column}"
    return f"syntax error at {where}: {err.msg} (near {excerpt!r})"


def _check_tree(tree: ast.Expression, text: str, variables: Mapping[str, Any]) -> None:
    """Walk the tree without recursion, refusing forbidden constructs and oversized trees."""
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    count = minmax_args = 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            message = f"the expression is nested too deeply (more than {MAX_DEPTH} levels)"
            raise _error(message, variables)
        count += isinstance(node, ast.expr)
        if count > MAX_NODES:
            raise _error(f"the expression is too large (more than {MAX_NODES} parts)", variables)
        _check_node(node, text, variables)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            minmax_args += len(node.args) if node.func.id in _VARIADIC else 0
        children = list(ast.iter_child_nodes(node))
        stack.extend((child, depth + 1) for child in reversed(children))
    if minmax_args > MAX_MINMAX_ARGS:
        message = f"min and max take at most {MAX_MINMAX_ARGS} arguments in all (got {minmax_args})"
        raise _error(message, variables)


def _check_node(node: ast.AST, text: str, variables: Mapping[str, Any]) -> None:
    """Refuse one node if its kind or operator is not allowed."""
    if isinstance(node, _NEUTRAL_NODES):
        return
    if not isinstance(node, _ALLOWED_NODES):
        kind = _CONSTRUCTS.get(type(node), f"the construct {type(node).__name__}")
        raise _error(f"{kind} is not allowed: '{_snippet(text, node)}'", variables)
    op = getattr(node, "op", None)
    if op is not None and not isinstance(op, _NEUTRAL_NODES):
        symbol = _REFUSED_OPERATORS.get(type(op), type(op).__name__)
        raise _error(f"operator '{symbol}' is not allowed: '{_snippet(text, node)}'", variables)
    if isinstance(node, ast.Name) and node.id.startswith("__"):
        raise _error(f"names starting with '__' are not allowed: '{node.id}'", variables)
    if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
        message = f"only the allowed functions can be called: '{_snippet(text, node)}'"
        raise _error(message, variables)
    if isinstance(node, ast.Call) and node.keywords:
        raise _error(f"keyword arguments are not allowed: '{_snippet(text, node)}'", variables)


class _Bound(NamedTuple):
    """What the analysis knows about a subexpression."""

    bits: int  # bounds the bit size of any rational SymPy could fold out of it
    value: float | None  # a float approximation if it is constant, else None
    level: int  # for constants: how deeply functions and roots are nested


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


def _fraction(value: int | float) -> Fraction:
    """The exact value of a literal: ints as they are, floats from their shortest decimal text."""
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))


def _bits(number: Fraction) -> int:
    """The bit size of a rational (numerator plus denominator)."""
    return number.numerator.bit_length() + number.denominator.bit_length()


class _Analyzer:
    """Checks names, arities, exponents and the size of constants, without SymPy."""

    def __init__(self, text: str, variables: Mapping[str, Any]) -> None:
        self.text = text
        self.variables = variables
        self.root_bits = 0

    def fail(self, message: str) -> ExpressionError:
        """An ExpressionError with the standard fix."""
        return _error(message, self.variables)

    def visit(self, node: ast.expr) -> _Bound:
        """The bounds of a (whitelisted) node, refusing it if they are exceeded."""
        if isinstance(node, ast.Constant):
            return self._literal(node)
        if isinstance(node, ast.Name):
            return _Bound(0, self._name(node.id), 0)
        if isinstance(node, ast.UnaryOp):
            inner = self.visit(node.operand)
            value = _approx(operator.neg, inner.value)
            return inner._replace(value=value) if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return self._power(self.visit(node.left), self._exponent(node), node)
        if isinstance(node, ast.BinOp):
            return self._arithmetic(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise self.fail(f"'{_snippet(self.text, node)}' is not allowed")

    def _arithmetic(self, node: ast.BinOp) -> _Bound:
        """Bounds of + - * /; dividing by a constant zero is refused."""
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Div) and right.value == 0:
            raise self.fail(f"division by zero: '{_snippet(self.text, node)}'")
        value = _approx(_OPERATORS[type(node.op)], left.value, right.value)
        bits, level = left.bits + right.bits + 1, max(left.level, right.level)
        return self._finish(node, bits, value, level)

    def _finish(self, node: ast.AST, bits: int, value: float | None, level: int) -> _Bound:
        """Refuse a subexpression whose constants are too precise, large, undefined or nested."""
        where = _snippet(self.text, node)
        if bits > MAX_CONSTANT_BITS:
            raise self.fail(f"the numbers in '{where}' would become too large or too precise")
        if value is not None and math.isnan(value):
            raise self.fail(f"the constant '{where}' is undefined or not a real number")
        if value is not None and abs(value) > MAX_MAGNITUDE:
            message = (
                f"the constant '{where}' is too large or overflows (limit {MAX_MAGNITUDE:.0e})"
            )
            raise self.fail(message)
        if value is not None and level > MAX_CONSTANT_NESTING:
            raise self.fail(
                f"the constant '{where}' nests functions or roots more than "
                f"{MAX_CONSTANT_NESTING} deep; write its value as a number instead"
            )
        return _Bound(bits, value, level)

    def _literal(self, node: ast.Constant) -> _Bound:
        """Only int and float literals of bounded size."""
        value, where = node.value, _snippet(self.text, node)
        if isinstance(value, (str, bytes)):
            raise self.fail(f"strings are not allowed: {where}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"'{where}' is not allowed; only real numbers are")
        too_long = isinstance(value, int) and len(str(abs(value))) > MAX_INT_DIGITS
        if too_long or not abs(value) <= MAX_LITERAL:
            raise self.fail(f"the number '{where}' is too large (at most {MAX_LITERAL})")
        return _Bound(_bits(_fraction(value)), float(value), 0)

    def _name(self, name: str) -> float | None:
        """The float value of a constant, None for a variable; other names are refused."""
        if name in self.variables:
            return None
        if name in _CONSTANT_VALUES:
            return _CONSTANT_VALUES[name]
        if name in _FUNCTIONS:
            raise self.fail(f"'{name}' is a function; call it like {name}(...)")
        known = sorted([*self.variables, *CONSTANTS, *ALLOWED_FUNCTIONS])
        hint = _did_you_mean(name, known)
        raise self.fail(f"unknown name '{name}'{hint}; allowed names: {', '.join(known)}")

    def _exponent(self, node: ast.BinOp) -> Fraction:
        """The constant exponent of ``**``, refused unless small and simple."""
        value = _constant_exponent(node.right)
        where = _snippet(self.text, node)
        if value is None:
            is_e = isinstance(node.left, ast.Name) and node.left.id == "e"
            hint = " (write exp(t) for e**t)" if is_e else ""
            raise self.fail(f"the exponent of '**' must be a constant number: '{where}'{hint}")
        if abs(value) > MAX_EXPONENT:
            raise self.fail(
                f"the exponent {value} is too large (at most {MAX_EXPONENT}): '{where}'"
            )
        if value.denominator > MAX_EXPONENT_DENOMINATOR:
            raise self.fail(
                f"the exponent {value} is too fine-grained (denominator at most "
                f"{MAX_EXPONENT_DENOMINATOR}, e.g. 0.5, 0.01 or 1/3): '{where}'"
            )
        return value

    def _power(self, base: _Bound, exponent: Fraction, node: ast.AST) -> _Bound:
        """Bounds of base**exponent; roots only of small rationals (SymPy factors them)."""
        fractional = exponent.denominator != 1
        if fractional:
            self.root_bits += base.bits
            fine = exponent.denominator > 16
            if base.bits > MAX_ROOT_BITS[fine] or self.root_bits > MAX_ROOT_BITS[2]:
                where = _snippet(self.text, node)
                raise self.fail(f"the numbers under the root in '{where}' are too large or precise")
        bits = base.bits * max(abs(exponent.numerator), 1) + _bits(exponent)
        value = _approx(operator.pow, base.value, float(exponent))
        return self._finish(node, bits, value, base.level + fractional)

    def _call(self, node: ast.Call) -> _Bound:
        """An allowed function applied to the right number of arguments."""
        assert isinstance(node.func, ast.Name)
        name, count = node.func.id, len(node.args)
        if name not in _FUNCTIONS:
            raise self.fail(self._unknown_function(name))
        if name in _VARIADIC and count < 2:
            raise self.fail(f"{name}() takes at least 2 arguments (got {count})")
        if name not in _VARIADIC and count != 1:
            raise self.fail(f"{name}() takes exactly 1 argument (got {count})")
        args = [self.visit(arg) for arg in node.args]
        if name == "sqrt":
            return self._power(args[0], Fraction(1, 2), node)
        bits = sum(arg.bits for arg in args) + 2 * count
        value = _approx(_FLOAT_FUNCTIONS[name], *(arg.value for arg in args))
        return self._finish(node, bits, value, max(arg.level for arg in args) + 1)

    def _unknown_function(self, name: str) -> str:
        """The message for calling something that is not an allowed function."""
        if name in self.variables or name in CONSTANTS:
            return f"'{name}' is not a function"
        hint = _did_you_mean(name, list(ALLOWED_FUNCTIONS))
        return f"unknown function '{name}'{hint}; allowed: {', '.join(ALLOWED_FUNCTIONS)}"


def _signed_literal(node: ast.expr) -> Fraction | None:
    """The value of ``[+-]...number``, else None."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return None if isinstance(node.value, bool) else sign * _fraction(node.value)
    return None


def _constant_exponent(node: ast.expr) -> Fraction | None:
    """The value of a signed number or of a signed ratio of signed numbers, else None."""
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


def _rational(value: Fraction) -> Any:
    """A SymPy Integer or Rational."""
    return sympy.Rational(value.numerator, value.denominator)


def _build(node: ast.expr, variables: Mapping[str, Any]) -> Any:
    """The SymPy expression of an analysed tree (no checks left to do)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return _rational(_fraction(node.value))
    if isinstance(node, ast.Name):
        return variables[node.id] if node.id in variables else CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp):
        inner = _build(node.operand, variables)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        exponent = _constant_exponent(node.right)
        assert exponent is not None
        return _build(node.left, variables) ** _rational(exponent)
    if isinstance(node, ast.BinOp):
        left, right = _build(node.left, variables), _build(node.right, variables)
        return _OPERATORS[type(node.op)](left, right)
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return _FUNCTIONS[node.func.id](*(_build(arg, variables) for arg in node.args))


def _check_result(expr: Any, variables: Mapping[str, Any]) -> Any:
    """``expr``, unless it is undefined, not real, or mentions foreign symbols."""
    if not isinstance(expr, sympy.Expr):
        raise _error("the expression does not denote a number", variables)
    foreign = expr.free_symbols - set(variables.values())
    if foreign:
        raise _error(f"unexpected symbols {sorted(map(str, foreign))}", variables)
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I):
        raise _error(f"the expression is undefined or not real (it becomes {expr})", variables)
    for power in expr.atoms(sympy.Pow):
        if power.base.is_number and power.base.is_negative and not power.exp.is_integer:
            raise _error(f"the expression is not real: it contains {power}", variables)
    return expr


_TRIAL_POINTS = (-3.7, -1.3, -0.4, 0.3, 0.9, 2.1, 4.6)


def _real_somewhere(expr: Any) -> bool:
    """True when expr is a finite real number at one of a few points (every variable alike)."""
    for point in _TRIAL_POINTS:
        values = {s: sympy.Float(point) for s in expr.free_symbols}
        try:
            value = complex(expr.xreplace(values).evalf(15))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            continue
        if math.isfinite(value.real) and abs(value.imag) <= 1e-12 * (1 + abs(value.real)):
            return True
    return False
