"""symbp.frontend.expr: the safe expression parser (constructs, refusals, limits, speed)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symbp.frontend.expr as expr_module
from symbp.errors import ExpressionError, SpecError
from symbp.frontend.expr import ALLOWED_FUNCTIONS, check_expression, parse_expression
from tests.conftest import hang_guard

X = sympy.Symbol("x", real=True)
YHAT = sympy.Symbol("yhat", real=True)
Y = sympy.Symbol("y", real=True)
XV = {"x": X}
LOSS_VARS = {"yhat": YHAT, "y": Y}


def parse(text: str) -> Any:
    """Parse an expression in x."""
    return parse_expression(text, XV)


def refused(text: str, variables: dict[str, Any] | None = None) -> ExpressionError:
    """The ExpressionError raised for text (the test fails if none is raised)."""
    with pytest.raises(ExpressionError) as info:
        parse_expression(text, XV if variables is None else variables)
    return info.value


# --- accepted constructs ------------------------------------------------------------------

E_X = sympy.exp(X)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x + 2", X + 2),
        ("x - 2", X - 2),
        ("3*x", 3 * X),
        ("x/4", X / 4),
        ("x**2", X**2),
        ("x**-1", 1 / X),
        ("x**(-2)", X**-2),
        ("x**+3", X**3),
        ("x**0.5", sympy.sqrt(X)),
        ("x**(1/3)", X ** sympy.Rational(1, 3)),
        ("x**(-15/16)", X ** sympy.Rational(-15, 16)),
        ("x**-(3/2)", X ** sympy.Rational(-3, 2)),
        ("-x", -X),
        ("+x", X),
        ("--x", X),
        ("0.01*x", sympy.Rational(1, 100) * X),
        ("1e-3*x", sympy.Rational(1, 1000) * X),
        ("2.5e2", sympy.Integer(250)),
        ("1_000*x", 1000 * X),
        ("0x10", sympy.Integer(16)),
        ("pi*x", sympy.pi * X),
        ("e*x", sympy.E * X),
        ("e**2", sympy.E**2),
        ("exp(x)", sympy.exp(X)),
        ("log(x)", sympy.log(X)),
        ("sqrt(x)", sympy.sqrt(X)),
        ("abs(x)", sympy.Abs(X)),
        ("sin(x)", sympy.sin(X)),
        ("cos(x)", sympy.cos(X)),
        ("tan(x)", sympy.tan(X)),
        ("sinh(x)", sympy.sinh(X)),
        ("cosh(x)", sympy.cosh(X)),
        ("tanh(x)", sympy.tanh(X)),
        ("atan(x)", sympy.atan(X)),
        ("erf(x)", sympy.erf(X)),
        ("sigmoid(x)", 1 / (1 + sympy.exp(-X))),
        ("softplus(x)", sympy.log(1 + E_X)),
        ("min(x, 0)", sympy.Min(X, 0)),
        ("max(x, 0.01*x)", sympy.Max(X, X / 100)),
        ("max(x, 1, 2*x)", sympy.Max(X, 1, 2 * X)),
        ("x*tanh(log(1 + exp(x)))", X * sympy.tanh(sympy.log(1 + E_X))),
        ("x*sigmoid(1.702*x)", X / (1 + sympy.exp(-sympy.Rational(1702, 1000) * X))),
        ("0.5*x*(1 + erf(x/sqrt(2)))", X * (1 + sympy.erf(X / sympy.sqrt(2))) / 2),
        ("sqrt(2/pi)*x", sympy.sqrt(2) / sympy.sqrt(sympy.pi) * X),
        ("(x +\n 1)", X + 1),
    ],
)
def test_allowed_constructs_map_to_sympy(text: str, expected: Any) -> None:
    result = parse(text)
    assert result == expected or sympy.simplify(result - expected) == 0


def test_sigmoid_and_softplus_are_written_out_not_functions() -> None:
    sig = parse("sigmoid(x)")
    assert sig == 1 / (1 + sympy.exp(-X))
    assert sig.atoms(sympy.Function) == {sympy.exp(-X)}
    assert parse("softplus(x)") == sympy.log(1 + sympy.exp(X))


def test_float_literals_become_exact_rationals() -> None:
    result = parse("0.01*x + 0.1")
    assert not result.has(sympy.Float)
    assert result == X / 100 + sympy.Rational(1, 10)
    assert parse("2.0") == sympy.Integer(2) and isinstance(parse("3"), sympy.Integer)


def test_output_is_deterministic() -> None:
    text = "x*tanh(softplus(x)) + 0.044715*x**3 - max(x, 0.2*x)"
    assert sympy.srepr(parse(text)) == sympy.srepr(parse(text))


def test_loss_variables() -> None:
    result = parse_expression("(yhat - y)**2/2 + 0.1*abs(yhat)", LOSS_VARS)
    assert result.free_symbols == {YHAT, Y}
    assert sympy.simplify(result - ((YHAT - Y) ** 2 / 2 + sympy.Abs(YHAT) / 10)) == 0


def test_only_given_symbols_are_free() -> None:
    assert parse("x*exp(pi) + e").free_symbols == {X}
    assert parse("2*pi").free_symbols == set()


def test_allowed_functions_constant() -> None:
    assert list(ALLOWED_FUNCTIONS) == sorted(ALLOWED_FUNCTIONS)
    assert set(ALLOWED_FUNCTIONS) == {
        "exp", "log", "sqrt", "abs", "sin", "cos", "tan", "sinh", "cosh", "tanh", "atan",
        "erf", "sigmoid", "softplus", "min", "max",
    }  # fmt: skip


def test_check_expression_needs_no_sympy_and_refuses_alike() -> None:
    check_expression("x*tanh(softplus(x))", XV)
    with pytest.raises(ExpressionError, match="unknown function 'foo'"):
        check_expression("foo(x)", XV)


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x.real", "attribute access is not allowed: 'x.real'"),
        ("().__class__", "attribute access"),
        ("x[0]", "subscripting is not allowed"),
        ("lambda: 1", "a lambda is not allowed"),
        ("[x for x in y]", "a comprehension is not allowed"),
        ("{x for x in y}", "a comprehension is not allowed"),
        ("(x for x in y)", "a generator expression is not allowed"),
        ("x < 1", "a comparison is not allowed"),
        ("x and 1", "'and'/'or' is not allowed"),
        ("x if x else 1", "a conditional expression is not allowed"),
        ("[x, 1]", "a list is not allowed"),
        ("(x, 1)", "a tuple is not allowed"),
        ("{1: x}", "a dict is not allowed"),
        ("{x}", "a set is not allowed"),
        ("(y := 1)", "an assignment expression is not allowed"),
        ("f'{x}'", "an f-string is not allowed"),
        ("'x'", "strings are not allowed"),
        ("b'x'", "strings are not allowed"),
        ("True", "'True' is not allowed"),
        ("None", "'None' is not allowed"),
        ("1j", "'1j' is not allowed"),
        ("...", "'...' is not allowed"),
        ("x // 2", "operator '//' is not allowed"),
        ("x % 2", "operator '%' is not allowed"),
        ("x @ x", "operator '@' is not allowed"),
        ("x ^ 2", "operator '^' is not allowed"),
        ("x | 2", "operator '|' is not allowed"),
        ("x << 2", "operator '<<' is not allowed"),
        ("~x", "operator '~' is not allowed"),
        ("not x", "operator 'not' is not allowed"),
        ("__import__('os')", "names starting with '__' are not allowed"),
        ("open('f')", "unknown function 'open'"),
        ("'a' + x", "strings are not allowed"),
        ("tanhh(x)", "did you mean 'tanh'"),
        ("sigmod(x)", "did you mean 'sigmoid'"),
        ("xx + 1", "unknown name 'xx' (did you mean 'x'?)"),
        ("y + 1", "unknown name 'y'"),
        ("exp", "'exp' is a function; call it like exp(...)"),
        ("x(2)", "'x' is not a function"),
        ("pi(2)", "'pi' is not a function"),
        ("exp()", "exp() takes exactly 1 argument (got 0)"),
        ("exp(x, x)", "exp() takes exactly 1 argument (got 2)"),
        ("min(x)", "min() takes at least 2 arguments (got 1)"),
        ("exp(x=1)", "keyword arguments are not allowed"),
        ("exp(**x)", "keyword arguments are not allowed"),
        ("exp(*x)", "a star argument is not allowed"),
        ("math.exp(x)", "only the allowed functions can be called"),
        ("x**x", "the exponent of '**' must be a constant number: 'x**x'"),
        ("e**x", "write exp(t) for e**t"),
        ("2**100", "the exponent 100 is too large"),
        ("x**-17", "the exponent -17 is too large"),
        ("9**9**9**9", "must be a constant number"),
        ("x**0.001", "too fine-grained"),
        ("10000000*x", "the number '10000000' is too large"),
        ("1e7*x", "the number '1e7' is too large"),
        ("1e999", "too large"),
        ("1/0", "division by zero"),
        ("x/0", "division by zero"),
        ("log(-1)", "undefined or not a real number"),
        ("sqrt(-2)*x", "undefined or not a real number"),
        ("(-8)**(1/3)", "undefined or not a real number"),
        ("0**-1", "undefined or not a real number"),
        ("tan(pi/2)*x", "undefined or not real"),
        ("exp(exp(10))", "too large"),
        ("sigmoid(-1000)", "overflows"),
        ("x + atan(log(sqrt(2)))", "nests functions or roots more than 2 deep"),
        ("max(" + ", ".join(["x"] * 17) + ")", "min and max take at most 16 arguments"),
        ("x +* 2", "syntax error at column 4"),
        ("", "syntax error"),
        ("x\x00", "NUL"),
    ],
)
def test_refusals_name_the_construct(text: str, fragment: str) -> None:
    error = refused(text)
    assert fragment in error.message
    assert error.fix is not None and "sigmoid" in error.fix and "the variables x" in error.fix


def test_error_is_a_spec_error_and_value_error() -> None:
    error = refused("x.real")
    assert isinstance(error, SpecError) and isinstance(error, ValueError)


def test_syntax_error_reports_column_and_excerpt() -> None:
    error = refused("sin(x) + (x * * 2)")
    assert "column 15" in error.message and "(x * * 2)" in error.message


def test_unknown_name_lists_allowed_names() -> None:
    error = refused("foo + 1", LOSS_VARS)
    assert "allowed names:" in error.message and "yhat" in error.message


def test_limits() -> None:
    assert "too long" in refused("x+" * 300 + "x").message
    assert "nested too deeply" in refused("-" * 60 + "x").message
    assert "nested too deeply" in refused("+".join(["x"] * 60)).message  # a left-deep chain
    assert "too large (more than 300 parts)" in refused("+".join(["(x+x+x+x)"] * 40)).message
    assert "too large or precise" in refused("(1.2345678901234567e-20)**0.5").message
    assert "too large or too precise" in refused("*".join(["0.123456789012345"] * 20)).message
    assert parse("+".join(["(x+x+x+x)"] * 36)) == 144 * X  # 287 parts: allowed


def test_refuses_non_strings() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        parse_expression(3, XV)  # type: ignore[arg-type]


HOSTILE = [
    "9**9**9**9",
    "(" * 1000 + "x" + ")" * 1000,
    "x" * 10_000,
    "x+" * 5_000 + "x",
    "__import__('os')",
    "__import__('os').system('echo hacked')",
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "x.real",
    "lambda: 1",
    "[x for x in y]",
    "open('f')",
    "-" * 499 + "x",
    "sigmoid(" * 60 + "x" + ")" * 60,
    "(((((((x**16)**16)**16)**16)**16)**16)**16)",
    "((999999*999999*999999*999999*999999)**16)**16",
    "exp(exp(exp(exp(999999))))",
    "999999**(999999/1000000)",
    "999999**(999/1000)",
    "max(" + ", ".join(f"sin({i}*x)" for i in range(1, 60)) + ")",
    "abs(" + "+".join(f"sin({i})" for i in range(1, 60)) + ")",
    "atan(log(((2*erf(e)))**(1/97)-(((7*1.5)*pi))**(1/97)))",
    "sigmoid(e - sinh(999999**2))",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_is_refused_hang_guard(text: str) -> None:
    sympy.core.cache.clear_cache()
    with pytest.raises(ExpressionError):
        hang_guard(lambda: parse(text))


def test_deeply_nested_but_short_expression_is_fast() -> None:
    sympy.core.cache.clear_cache()
    text = "sigmoid(" * 20 + "x" + ")" * 20
    assert hang_guard(lambda: parse(text)).free_symbols == {X}


HEAVY = "cos(tanh(tan(3/(12.5 - 2*x + x**(-15/16)))))"


def test_sympy_work_is_bounded_deterministically() -> None:
    sympy.core.cache.clear_cache()
    error = hang_guard(lambda: refused_with_budget(HEAVY, 20_000))
    assert "SymPy needs too much work" in error.message and "20,000" in error.message
    assert sys.getprofile() is None
    assert parse_expression("x*tanh(softplus(x))", XV, budget=20_000).free_symbols == {X}


def test_budget_spent_while_a_generator_is_freed_still_stops_the_work() -> None:
    # A generator left half-consumed is closed when it is freed, and Python reports an exception
    # raised there as "ignored" and goes on: the budget must still hold, at whichever call it
    # runs out (SymPy's any(... for ...) did this, so that a budget of 20,000 was not kept).
    def first(values: list[int]) -> int:
        return next(v for v in values if v > 0)

    def work() -> int:
        return sum(first([0, i, 1]) for i in range(20))

    total = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal total
        total += event == "call"

    sys.setprofile(count)
    try:
        expected = work()
    finally:
        sys.setprofile(None)
    assert total > 40
    for budget in range(1, total - 1):
        with pytest.raises(expr_module._BudgetSpent):
            expr_module._within_budget(work, budget)
        assert sys.getprofile() is None
    assert expr_module._within_budget(work, total + 5) == expected


def refused_with_budget(text: str, budget: int) -> ExpressionError:
    """The ExpressionError for text under a small SymPy budget."""
    with pytest.raises(ExpressionError) as info:
        parse_expression(text, XV, budget=budget)
    return info.value


def test_budget_leaves_an_active_profiler_alone() -> None:
    def profiler(frame: Any, event: str, arg: Any) -> None:
        return None

    sys.setprofile(profiler)
    try:
        assert parse_expression("x*sigmoid(x)", XV, budget=10).free_symbols == {X}
        assert sys.getprofile() is profiler
    finally:
        sys.setprofile(None)


# --- properties ---------------------------------------------------------------------------

TOKENS = [
    "x", "y", "pi", "e", "1", "0", "2.5", "1e-3", "999999", "16", "(", ")", "+", "-", "*",
    "/", "**", ",", " ", ".", "[", "]", "'", "lambda", ":", "__class__", "exp", "log", "sqrt",
    "abs", "sin", "tan", "tanh", "sigmoid", "softplus", "min", "max", "erf", "atan", "=",
    "if", "else", "<", "not", "@", "%", "//", "~", "j", "\\", "\n", "#",
]  # fmt: skip


def _only_expression_errors(text: str) -> None:
    """Parsing either succeeds with free symbols in x or raises ExpressionError, quickly."""

    def read() -> None:
        try:
            result = parse_expression(text, XV)
        except ExpressionError:
            pass
        else:
            assert result.free_symbols <= {X}

    hang_guard(read)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_random_text_raises_only_expression_error(text: str) -> None:
    _only_expression_errors(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_random_token_strings_raise_only_expression_error(text: str) -> None:
    _only_expression_errors(text)
