"""A safe parser for the expressions of arch.yaml (custom activations and losses).

The text is parsed by Python's `ast` into a tree that is only read, never run:
a whitelist of node types, names and functions is turned into SymPy objects by
hand. No eval, exec, sympify or parse_expr ever sees the user's text. Size,
depth, literal and exponent limits are checked before anything costly is built.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Mapping
from fractions import Fraction

import sympy as sp

from symbp.errors import ExpressionError

MAX_LENGTH = 500
MAX_NODES = 300
MAX_DEPTH = 50
MAX_LITERAL = 10**6
MAX_EXPONENT = 16


def _sigmoid(t: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-t))


def _softplus(t: sp.Expr) -> sp.Expr:
    return sp.log(1 + sp.exp(t))


UNARY: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "abs": sp.Abs,
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "tanh": sp.tanh,
    "atan": sp.atan,
    "erf": sp.erf,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
}
VARIADIC = {"min": sp.Min, "max": sp.Max}
CONSTANTS = {"pi": sp.pi, "e": sp.E}
ALLOWED_FUNCTIONS: tuple[str, ...] = tuple(sorted([*UNARY, *VARIADIC]))

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Call, ast.Load,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.UAdd, ast.USub,
)
_FIX = (
    "use numbers, + - * / ** (constant exponents), parentheses, "
    f"the functions {', '.join(ALLOWED_FUNCTIONS)}, and pi, e"
)


def _refuse(message: str, fix: str = _FIX) -> ExpressionError:
    return ExpressionError(message, fix=fix)


def _syntax_tree(text: str) -> ast.Expression:
    """ast.parse with every failure turned into an ExpressionError."""
    if not isinstance(text, str):
        raise _refuse(f"expected an expression string, got {type(text).__name__}")
    if "\x00" in text:
        raise _refuse("the expression contains a NUL byte")
    if len(text) > MAX_LENGTH:
        raise _refuse(f"the expression is {len(text)} characters long (limit {MAX_LENGTH})")
    if not text.strip():
        raise _refuse("the expression is empty")
    try:
        return ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        raise _refuse(f"syntax error{col}: {exc.msg} in {text.strip()!r}") from None
    except (RecursionError, MemoryError, ValueError):
        raise _refuse("the expression is nested too deeply") from None


def _check_shape(tree: ast.Expression) -> None:
    """Node whitelist, node count and depth, before any SymPy object exists."""
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise _refuse(f"the expression has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise _refuse(f"the expression is nested more than {MAX_DEPTH} levels deep")
        if not isinstance(node, _ALLOWED_NODES):
            raise _refuse(f"{_describe(node)} is not allowed in an expression")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access (a.b)",
        ast.Subscript: "indexing (a[b])",
        ast.Lambda: "lambda",
        ast.ListComp: "a comprehension",
        ast.GeneratorExp: "a comprehension",
        ast.Compare: "a comparison",
        ast.BoolOp: "and/or",
        ast.IfExp: "if/else",
        ast.keyword: "a keyword argument",
        ast.Starred: "*args",
    }
    return names.get(type(node), f"'{type(node).__name__}'")


class _Builder:
    """Turns a checked tree into SymPy, one node type per method."""

    def __init__(self, variables: Mapping[str, sp.Symbol]) -> None:
        self.variables = dict(variables)

    def build(self, node: ast.AST) -> sp.Expr:
        if isinstance(node, ast.Expression):
            return self.build(node.body)
        if isinstance(node, ast.Constant):
            return _number(node.value)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.UnaryOp):
            inner = self.build(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise _refuse(f"{_describe(node)} is not allowed in an expression")

    def name(self, name: str) -> sp.Expr:
        if name in self.variables:
            return self.variables[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in UNARY or name in VARIADIC:
            raise _refuse(f"function '{name}' used without arguments", fix=f"write {name}(...)")
        known = sorted([*self.variables, *CONSTANTS, *ALLOWED_FUNCTIONS])
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        variables = ", ".join(sorted(self.variables))
        return _raise(f"unknown name '{name}'", f"{hint}the variables here are {variables}; {_FIX}")

    def binary(self, node: ast.BinOp) -> sp.Expr:
        op = _BINARY[type(node.op)]
        if op == "**":
            return self.build(node.left) ** _exponent(node.right)
        left, right = self.build(node.left), self.build(node.right)
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if right == 0:
            raise _refuse("division by zero")
        return left / right

    def call(self, node: ast.Call) -> sp.Expr:
        if not isinstance(node.func, ast.Name):
            raise _refuse("only plain function names can be called")
        name = node.func.id
        if node.keywords:
            raise _refuse(f"{name}() takes no keyword arguments")
        args = [self.build(a) for a in node.args]
        if name in UNARY:
            if len(args) != 1:
                raise _refuse(f"{name}() takes exactly 1 argument ({len(args)} given)")
            return UNARY[name](args[0])
        if name in VARIADIC:
            if len(args) < 2:
                raise _refuse(f"{name}() takes at least 2 arguments ({len(args)} given)")
            return VARIADIC[name](*args)
        close = difflib.get_close_matches(name, ALLOWED_FUNCTIONS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return _raise(f"unknown function '{name}'", hint + _FIX)


def _raise(message: str, fix: str) -> sp.Expr:
    raise ExpressionError(message, fix=fix)


def _number(value: object) -> sp.Expr:
    """An exact SymPy number from a literal, within the size limits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(f"the literal {value!r} is not a number")
    if isinstance(value, int):
        if abs(value) > MAX_LITERAL:
            raise _refuse(f"the number {value} is too large (limit {MAX_LITERAL:g})")
        return sp.Integer(value)
    if not abs(value) <= MAX_LITERAL:
        raise _refuse(f"the number {value!r} is too large or not finite (limit {MAX_LITERAL:g})")
    frac = Fraction(repr(value))  # the decimal the user wrote: 0.01 -> 1/100
    return sp.Rational(frac.numerator, frac.denominator)


def _exponent(node: ast.AST) -> sp.Expr:
    """A constant exponent: a number, possibly signed, with |value| <= MAX_EXPONENT."""
    sign = 1
    while isinstance(node, ast.UnaryOp):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if not isinstance(node, ast.Constant) or isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
        raise _refuse(
            "exponents must be constant numbers",
            fix="write x**2 or x**0.5; for a variable power use exp(y*log(x))",
        )
    if abs(node.value) > MAX_EXPONENT:
        raise _refuse(f"the exponent {node.value!r} is too large (limit {MAX_EXPONENT})")
    return sign * _number(node.value)


def parse_expression(text: str, variables: Mapping[str, sp.Symbol]) -> sp.Expr:
    """The SymPy expression of `text`, over the given variables only."""
    tree = _syntax_tree(text)
    _check_shape(tree)
    expr = _Builder(variables).build(tree)
    if expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
        raise _refuse(f"the expression {text.strip()!r} is infinite or undefined")
    return expr
