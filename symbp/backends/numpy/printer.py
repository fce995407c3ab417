"""SymPy -> NumPy source text, strictly: an unsupported node is an error, not wrong code.

Plain function names live in a table; each special node has a small _print_ method.
The printer records the helpers it used, so the module defines only those.
"""

from __future__ import annotations

import math
from typing import Any

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from symbp.errors import DerivationError
from symbp.ir.attention_ops import HeadOuter
from symbp.ir.image_ops import ImageOp
from symbp.ir.reductions import (
    BatchSum,
    ExclusiveSoftmaxMean,
    ExclusiveSoftmaxSum,
    ExclusiveSoftmaxSumTangent,
    LogOneMinusSoftmax,
    LogSumExp,
    UnitSum,
)
from symbp.ir.tensor_ops import (
    TENSOR_OPS,
    AxisSum,
    Embed,
    Permute,
    Reshape,
    Slice,
    Step,
    TensorOp,
)
from symbp.symbolic import equal
from symbp.symbolic.numbers import decimal_text

# Functions the array library has (under the printer's namespace), and those the runtime
# provides (copied into the module when used).
FUNCTIONS = {
    sp.log: "log",
    sp.sin: "sin",
    sp.cos: "cos",
    sp.tan: "tan",
    sp.sinh: "sinh",
    sp.cosh: "cosh",
    sp.tanh: "tanh",
    sp.atan: "arctan",
    sp.Abs: "abs",
    sp.sign: "sign",
}
RUNTIME_FUNCTIONS = {
    sp.exp: "_exp",  # clipped to the range where the result is a normal, finite number
    sp.erf: "_erf",
}


REDUCTIONS = (
    UnitSum,
    BatchSum,
    LogSumExp,
    LogOneMinusSoftmax,
    ExclusiveSoftmaxSum,
    ExclusiveSoftmaxMean,
    ExclusiveSoftmaxSumTangent,
)
ALLOWED = (
    sp.Symbol,
    sp.Integer,
    sp.Rational,
    sp.Float,
    sp.Add,
    sp.Mul,
    sp.Pow,
    sp.Piecewise,
    sp.Max,
    sp.Min,
    sp.Heaviside,
    sp.DiracDelta,
    sp.MatrixSymbol,
    sp.MatMul,
    sp.MatAdd,
    sp.Transpose,
    sp.OneMatrix,
    UnitSum,
    BatchSum,
    LogSumExp,
    LogOneMinusSoftmax,
    ExclusiveSoftmaxSum,
    ExclusiveSoftmaxMean,
    ExclusiveSoftmaxSumTangent,
    ImageOp,
    *TENSOR_OPS,
    sp.Tuple,
    sp.core.relational.Relational,
    sp.And,
    sp.Or,
    sp.Not,
    sp.logic.boolalg.BooleanTrue,
    sp.core.numbers.NumberSymbol,
    sp.core.numbers.NegativeOne,
    sp.core.numbers.Half,
    sp.core.numbers.One,
    sp.core.numbers.Zero,
    *FUNCTIONS,
    *RUNTIME_FUNCTIONS,
)


def _is_sigmoid(expr: sp.Pow) -> sp.Expr | None:
    """u when expr is (1 + exp(-u))**(-k), a power of sigmoid(u), else None."""
    if not (expr.exp.is_Integer and expr.exp < 0) or not isinstance(expr.base, sp.Add):
        return None
    terms = sp.Add.make_args(expr.base)
    if len(terms) != 2 or sp.S.One not in terms:
        return None
    other = terms[0] if terms[1] == sp.S.One else terms[1]
    return -other.args[0] if isinstance(other, sp.exp) else None


def _rectified(expr: sp.Piecewise) -> sp.Expr | None:
    """u when expr is Piecewise((u, u > 0), (0, True)), i.e. max(u, 0)."""
    if len(expr.args) != 2 or expr.args[1].expr != 0 or expr.args[1].cond != sp.true:
        return None
    value, cond = expr.args[0]
    if (
        isinstance(cond, (sp.StrictGreaterThan, sp.GreaterThan))
        and cond.lhs == value
        and cond.rhs == 0
    ):
        return value
    return None


def branch_free(expr: sp.Piecewise) -> sp.Expr | None:
    """Piecewise((g(u), u > 0), (h(u), True)), u an array symbol, whose pieces meet at 0
    (leaky ReLU, ELU, ELU's derivative 1 + min(a, 0)), as g(max(u, 0)) + h(min(u, 0)) - g(0):
    each piece sees only its own side, so it stays finite, and np.where's selection, which
    costs about 1 ms per 256x1024 array on a random sign (0.3 ms for the min/max form), is
    gone. Used only when it equals the Piecewise at sample points (symbp.symbolic.equal)."""
    if len(expr.args) != 2 or expr.args[1].cond != sp.true:
        return None
    (g, cond), (h, _) = expr.args
    if not (isinstance(cond, sp.StrictGreaterThan) and cond.rhs == 0):
        return None
    u = cond.lhs
    if not isinstance(u, sp.Symbol) or {u} < (g.free_symbols | h.free_symbols):
        return None
    at_zero = g.subs(u, 0)
    if not (at_zero.is_number and at_zero.is_finite) or sp.simplify(at_zero - h.subs(u, 0)) != 0:
        return None
    after = g.subs(u, sp.Max(u, 0)) + h.subs(u, sp.Min(u, 0)) - at_zero
    return after if equal.agree(expr, after) else None


def _two_numbers(expr: sp.Piecewise) -> tuple[sp.Basic, sp.Expr, sp.Expr] | None:
    """(u > 0, h, g - h) for Piecewise((g, u > 0), (h, True)) with g, h real numbers other
    than the 0/1 mask a ReLU's derivative is (printed as the bare condition)."""
    if len(expr.args) != 2 or expr.args[1].cond != sp.true or _indicator(expr) is not None:
        return None
    (g, cond), (h, _) = expr.args
    numbers = g.is_number and h.is_number and g.is_real and h.is_real
    if not (numbers and isinstance(cond, sp.StrictGreaterThan) and cond.rhs == 0):
        return None
    return cond, h, g - h


def _indicator(expr: sp.Basic) -> sp.Basic | None:
    """The condition c when expr is Piecewise((1, c), (0, True)), a 0/1 mask."""
    if not isinstance(expr, sp.Piecewise) or len(expr.args) != 2:
        return None
    (one, cond), (zero, default) = expr.args
    return cond if one == 1 and zero == 0 and default == sp.true else None


def _softplus_arg(expr: sp.log) -> sp.Expr | None:
    """u when expr is log(1 + exp(u)), else None."""
    terms = sp.Add.make_args(expr.args[0])
    if len(terms) != 2 or sp.S.One not in terms:
        return None
    other = terms[0] if terms[1] == sp.S.One else terms[1]
    return other.args[0] if isinstance(other, sp.exp) else None


def log_softplus_arg(expr: sp.log) -> sp.Expr | None:
    """u when expr is log(log(1 + exp(u))), the log of a softplus, else None."""
    inner = expr.args[0]
    return _softplus_arg(inner) if isinstance(inner, sp.log) else None


# Functions that raise (invalid, divide by zero, overflow) on part of the real line.
_PARTIAL = (sp.log, sp.sinh, sp.cosh)


def _has_partial(expr: sp.Basic) -> bool:
    """True when expr has a log, sinh/cosh, root or division of something not constant."""
    for node in sp.preorder_traversal(expr):
        if isinstance(node, _PARTIAL) and node.args[0].free_symbols:
            stable = isinstance(node, sp.log) and (
                _softplus_arg(node) is not None or log_softplus_arg(node) is not None
            )
            if not stable:
                return True
        if isinstance(node, sp.Pow) and node.base.free_symbols and _is_sigmoid(node) is None:
            if node.exp.is_negative or not node.exp.is_Integer:
                return True
    return False


SMALL_POWERS = (3, 4)  # integer powers of an array printed as repeated products


def cell_step_name(cell: str, step: str) -> str:
    """The module's function of one step of a recurrent cell: _lstm_forward, ..."""
    return f"_{cell}_{step}"


class NumPyPrinter(StrPrinter):
    """Prints symbp's derived expressions as NumPy code for the chosen layout."""

    printmethod = "_symbp_numpy"
    NS = "np"  # the array library's name in the generated module

    def fn(self, name: str) -> str:
        """A function of the array library, by its NumPy name (a backend maps its own)."""
        return f"{self.NS}.{name}"

    def call(self, helper: str, *args: str) -> str:
        """A call of a runtime helper, recorded so the module defines it (a backend whose
        helpers take the array namespace passes it first)."""
        self.used.add(helper)
        return f"{helper}({', '.join(args)})"

    def __init__(self, row_layout: bool, names: dict[str, str] | None = None) -> None:
        super().__init__({"order": "none"})
        self.row_layout = row_layout
        self.names = names or {}
        self.used: set[str] = set()
        # the recurrent cells' step functions the printed code passes to the runtime's
        # loops: (cell, step), printed once at the end (symbp.backends.numpy.cells)
        self.cells: set[tuple[str, str]] = set()
        # Conditions (printed) under which the Piecewise branch being printed is taken.
        self._masks: list[str] = []

    def _guarded(self, arg: sp.Expr) -> str:
        """The argument of a partial operation (log, root, division) inside a Piecewise
        branch: replaced by 1 where the branch is not taken, since np.where evaluates every
        branch everywhere and log(-1) there would raise under np.errstate."""
        text = self._print(arg)
        if not self._masks or not arg.free_symbols:
            return text
        return f"{self.fn('where')}({' & '.join(self._masks)}, {text}, 1)"

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if (
            isinstance(expr, sp.Expr)
            and expr.is_number
            and not expr.is_Rational
            and not expr.has(*REDUCTIONS)
        ):
            return self._constant(expr)
        if isinstance(expr, sp.Basic) and not isinstance(expr, ALLOWED):
            raise DerivationError(
                f"symbp cannot print {type(expr).__name__} ({expr}) as NumPy code",
                fix="use the functions listed in the README's expression reference",
            )
        return super()._print(expr, **kwargs)

    def _constant(self, expr: sp.Expr) -> str:
        """Constant subexpressions (sqrt(2), pi) become Python floats: NumPy treats those as
        weakly typed, so float32 arrays are not promoted to float64. A constant that is not
        a finite real number (log(-1) = i pi or log(0) in a branch of min/max) is NaN, as
        NumPy's own log(-1) and fractional powers of negative numbers are."""
        value = complex(expr.evalf(20)) if not expr.has(sp.zoo, sp.nan) else complex("nan")
        if value.imag != 0 or not math.isfinite(value.real):
            return self.constant_name("nan")
        return repr(value.real) if value.real >= 0 else f"({value.real!r})"

    def constant_name(self, name: str) -> str:
        """nan, e, pi: the array library's constants."""
        return self.fn(name)

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        """Array names: the derivation's symbols may be renamed for the code."""
        return self.names.get(expr.name, expr.name)

    _print_MatrixSymbol = _print_Symbol

    def _print_Exp1(self, expr: Any) -> str:
        return self.constant_name("e")

    def _print_Pi(self, expr: Any) -> str:
        return self.constant_name("pi")

    def _print_Rational(self, expr: sp.Rational) -> str:
        """Exact rationals as a Python division of integers (folded at import time); a
        decimal one (0.044715 as the user wrote it, eps: 1e-5) as its decimal literal, which
        Python rounds to the same double as p/q (both are correctly rounded)."""
        if decimal_text(expr) is not None:
            return repr(float(expr))  # the shortest literal of that double: 1e-05, 0.044715
        return f"({expr.p}/{expr.q})"

    def _print_Float(self, expr: sp.Float) -> str:
        return repr(float(expr))

    def _print_Function(self, expr: sp.Function) -> str:
        if isinstance(expr, ImageOp):  # SymPy's dispatch skips a Function's base classes
            return self._print_ImageOp(expr)
        if type(expr) in RUNTIME_FUNCTIONS:
            return self.call(RUNTIME_FUNCTIONS[type(expr)], self._print(expr.args[0]))
        name = self.fn(FUNCTIONS[type(expr)]) if type(expr) in FUNCTIONS else None
        if name is None:
            raise DerivationError(f"no NumPy form for function {type(expr).__name__}")
        if isinstance(expr, _PARTIAL):
            return f"{name}({self._guarded(expr.args[0])})"
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    def _print_log(self, expr: sp.log) -> str:
        """log(1 + exp(u)) is softplus, printed through a helper that cannot overflow;
        log(sigmoid(u)**k) = -k softplus(-u) and log(1 - sigmoid(u)) = -softplus(u), which
        stay finite where the sigmoid rounds to 0 or 1."""
        u = _softplus_arg(expr)
        if u is not None:
            return self.call("_softplus", self._print(u))
        u = log_softplus_arg(expr)
        if u is not None:
            return self.call("_log_softplus", self._print(u))
        arg = expr.args[0]
        v = _is_sigmoid(arg) if isinstance(arg, sp.Pow) else None
        if v is not None:
            return self._print(arg.exp * sp.log(1 + sp.exp(-v), evaluate=False))
        terms = sp.Add.make_args(arg)
        if len(terms) == 2 and sp.S.One in terms:
            other = -(terms[0] if terms[1] == sp.S.One else terms[1])
            v = _is_sigmoid(other) if isinstance(other, sp.Pow) and other.exp == -1 else None
            if v is not None:
                return self._print(-sp.log(1 + sp.exp(v), evaluate=False))
        return self._print_Function(expr)

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        """Numerically stable sigmoid for 1/(1 + exp(-u)); sqrt through np.sqrt."""
        u = _is_sigmoid(expr)
        if u is not None:
            power = "" if expr.exp == -1 else f"**{-expr.exp}"
            return f"{self.call('_sigmoid', self._print(u))}{power}"
        partial = self._masks and (expr.exp.is_negative or not expr.exp.is_Integer)
        if partial and expr.base.free_symbols:
            # Inside a Piecewise branch: a root or division only where the branch is taken.
            base = sp.Symbol(self._guarded(expr.base))
            masks, self._masks = self._masks, []
            try:
                return self._print_Pow(sp.Pow(base, expr.exp, evaluate=False))
            finally:
                self._masks = masks
        if expr.exp.is_Rational and expr.exp.q == 2:
            # Half-integer powers through np.sqrt: u**(3/2) = sqrt(u)**3.
            root, k = f"{self.fn('sqrt')}({self._print(expr.base)})", abs(expr.exp.p)
            power = root if k == 1 else f"{root}**{k}"
            return power if expr.exp.p > 0 else f"1 / {power}"
        if not expr.exp.is_Integer:
            # Any other real power, elementwise (NaN where SymPy's root would be complex).
            base = self.parenthesize(expr.base, PRECEDENCE["Pow"])
            exponent = self._print(expr.exp)
            # A fraction prints in parentheses already, (1/3); anything else gets them.
            fraction = isinstance(expr.exp, sp.Rational) and decimal_text(expr.exp) is None
            return f"{base}**{exponent if fraction else f'({exponent})'}"
        if expr.exp.is_negative:
            return f"1 / {self.parenthesize(sp.Pow(expr.base, -expr.exp), PRECEDENCE['Mul'])}"
        base = self.parenthesize(expr.base, PRECEDENCE["Pow"])
        if expr.exp in SMALL_POWERS and expr.base.is_Symbol:
            # x*x*x: NumPy computes x**3 by pow() entry by entry (measured 75x slower than
            # the products on float32), while x**2 is its own fast square
            return "(" + "*".join([base] * int(expr.exp)) + ")"
        return f"{base}**{expr.exp}"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        """Nested np.where, the last branch being the default; max(u, 0) for a ReLU, and a
        two-piece function of u split at u = 0 without a branch (see `branch_free`)."""
        rectified = _rectified(expr)
        if rectified is not None:
            return f"{self.fn('maximum')}({self._print(rectified)}, 0)"
        steps = _two_numbers(expr)
        if steps is not None:  # h + (g - h) [u > 0]: a 0/1 mask, no selection
            return self._steps(*steps)
        free = branch_free(expr)
        if free is not None:  # parenthesised: it stands where a Piecewise (an atom) stood
            return f"({self._print(free)})"
        *branches, (last, cond) = expr.args
        if cond != sp.true:
            raise DerivationError(f"Piecewise without a default branch: {expr}")
        conditions = [c for _, c in branches]
        # A branch's guard is exactly where np.where takes it: the negations are kept as
        # negations (SymPy would turn ~(u < 0) into u >= 0, which differs where u is NaN).
        nots = [sp.Not(c, evaluate=False) for c in conditions]
        taken = sp.And(*nots, evaluate=False) if nots else sp.true
        text = self._default(last, taken, conditions[0] if conditions else sp.true)
        for k in reversed(range(len(branches))):
            value, condition = branches[k]
            taken = sp.And(condition, *nots[:k], evaluate=False) if k else condition
            chosen = self._branch(value, taken)
            text = f"{self.fn('where')}({self._print(condition)}, {chosen}, {text})"
        return text

    def _steps(self, cond: sp.Basic, low: sp.Expr, jump: sp.Expr) -> str:
        """low + jump [cond], the condition multiplying as a boolean array."""
        return f"({self._print(cond)}*{self._typed(jump)} + {self._typed(low)})"

    def _default(self, value: sp.Expr, taken: sp.Basic, condition: sp.Basic) -> str:
        """The last branch of the nested np.where (`condition`: the first branch's)."""
        return self._branch(value, taken)

    def _branch(self, value: sp.Expr, taken: sp.Basic) -> str:
        """One branch's value; its partial operations are guarded by `taken` if it has any."""
        if not _has_partial(value):
            return self._typed(value)
        self._masks.append(self._print(taken))
        try:
            return self._typed(value)
        finally:
            self._masks.pop()

    def _print_Not(self, expr: sp.Not) -> str:
        return f"~{self._print(expr.args[0])}"

    def _typed(self, value: sp.Expr) -> str:
        """A constant branch of np.where as DTYPE, so float32 code stays float32."""
        return f"DTYPE({self._print(value)})" if value.is_Number else self._print(value)

    def _print_Add(self, expr: sp.Add, order: Any = None) -> str:
        """exp(u) - 1 as expm1(u) (and 1 - exp(u) as -expm1(u)): the difference keeps its
        digits where exp(u) is close to 1, as for the softplus derivative 1 - e^(-a)."""
        terms = list(expr.args)
        for k, term in enumerate(terms):
            sign = -1 if term.could_extract_minus_sign() else 1
            if not isinstance(sign * term, sp.exp):
                continue
            one = next((i for i, t in enumerate(terms) if t == -sign), None)
            if one is None:
                continue
            u = (sign * term).args[0]
            rest = [t for i, t in enumerate(terms) if i not in (k, one)]
            core = self.call("_expm1", self._print(u))
            core = core if sign == 1 else f"(-{core})"
            if not rest:
                return core
            return f"{self._print(sp.Add(*rest))} + {core}"
        return super()._print_Add(expr, order=order)

    def _print_Mul(self, expr: sp.Mul) -> str:
        """Numeric factors folded into one float (sqrt(2) z / (2 sqrt(pi)) as one product,
        not three passes over an array); a 0/1 mask factor multiplies as a boolean array:
        one comparison, no np.where."""
        numbers = [f for f in expr.args if f.is_number]
        others = [f for f in expr.args if not f.is_number]
        if numbers and len(others) == 1 and isinstance(others[0], HeadOuter):
            # scores scaled by 1/sqrt(d_h): in place in the product's array, not a second one
            scale = float(sp.Mul(*numbers).evalf(20))
            return self.image_call(others[0], None, f"scale={scale!r}")
        fraction = len(numbers) == 1 and numbers[0].is_Rational and not numbers[0].is_Integer
        if others and (len(numbers) > 1 or fraction) and sp.Mul(*numbers).is_real:
            value = float(sp.Mul(*numbers).evalf(20))
            rest = self.parenthesize(sp.Mul(*others), PRECEDENCE["Mul"])
            return f"{value!r}*{rest}"
        masks = [f for f in expr.args if _indicator(f) is not None]
        if not masks:
            return super()._print_Mul(expr)
        rest = sp.Mul(*[f for f in expr.args if f not in masks])
        conds = " * ".join(self._print(_indicator(m)) for m in masks)
        return f"{self.parenthesize(rest, PRECEDENCE['Mul'])} * {conds}"

    def _print_Relational(self, expr: Any) -> str:
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"

    def _print_And(self, expr: sp.And) -> str:
        return "(" + " & ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr: sp.Or) -> str:
        return "(" + " | ".join(self._print(a) for a in expr.args) + ")"

    def _print_Heaviside(self, expr: sp.Heaviside) -> str:
        """Step function; its value at 0 is SymPy's second argument (0 when absent)."""
        at_zero = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        return f"{self.fn('heaviside')}({self._print(expr.args[0])}, {self._print(at_zero)})"

    def _print_DiracDelta(self, expr: sp.DiracDelta) -> str:
        """Zero: the derivative of a step (as in the Hessian of |u|), zero wherever it is
        defined, i.e. everywhere except on the kink itself."""
        return f"{self.fn('zeros_like')}({self._print(expr.args[0])})"

    def _print_Max(self, expr: sp.Max) -> str:
        return self._pairwise(self.fn("maximum"), expr.args)

    def _print_Min(self, expr: sp.Min) -> str:
        return self._pairwise(self.fn("minimum"), expr.args)

    def _pairwise(self, name: str, args: tuple) -> str:
        text = self._print(args[0])
        for arg in args[1:]:
            text = f"{name}({text}, {self._print(arg)})"
        return text

    def _print_UnitSum(self, expr: UnitSum) -> str:
        """Sum over the units of each sample: axis 0 in column layout, 1 in row layout."""
        axis = 1 if self.row_layout else 0
        if not expr.args[0].free_symbols:
            raise DerivationError(
                f"a sum over the output units of a constant: {expr}",
                fix="make the loss depend on yhat",
            )
        return f"{self.fn('sum')}({self._print(expr.args[0])}, axis={axis}, keepdims=True)"

    def _print_BatchSum(self, expr: BatchSum) -> str:
        """Sum over the samples, one value per unit, shaped like a bias: (units,) in row
        layout, (units, 1) in column layout."""
        if self.row_layout:
            return f"{self.fn('sum')}({self._print(expr.args[0])}, axis=0)"
        return f"{self.fn('sum')}({self._print(expr.args[0])}, axis=1, keepdims=True)"

    def _print_ImageOp(self, expr: ImageOp) -> str:
        return self.image_call(expr, None)

    def image_call(self, expr: ImageOp, out: str | None, *extra: str) -> str:
        """A convolution, pooling or their derivatives: the module's helper of that name,
        given the arrays, the geometry as a tuple of integers, the buffer `out` and any
        `extra` keyword arguments."""
        arrays = ["None" if a == 0 else self._print(a) for a in expr.arrays]
        steps = getattr(expr, "steps", ())
        if steps:  # a recurrent layer's loop: the module's functions of the cell's steps
            self.cells.update((expr.cell, step) for step in steps)
            arrays = [cell_step_name(expr.cell, step) for step in steps] + arrays
        into = [f"out={out}"] if out is not None else []
        geometry = str(tuple(int(v) for v in expr.args[-1]))
        return self.call(self.image_helper(expr), *arrays, geometry, *into, *extra)

    def image_helper(self, expr: ImageOp) -> str:
        """The runtime helper an image operation is printed as."""
        return expr.helper

    def _print_LogSumExp(self, expr: LogSumExp) -> str:
        """log sum_k exp(z_k) per sample, shifted by the max so it cannot overflow."""
        return self.call("_logsumexp", self._print(expr.args[0]))

    def _tensor_call(self, helper: str, expr: TensorOp, extra: tuple[int, ...] = ()) -> str:
        """A tensor operation as a call of its runtime helper: the array, the per-sample
        shape, then the operation's integer arguments."""
        ints = [str(tuple(int(v) for v in a)) if isinstance(a, sp.Tuple) else str(a)
                for a in expr.args[2:]]  # fmt: skip
        return self.call(helper, self._print(expr.array), str(expr.shape), *ints)

    def _print_AxisSum(self, expr: AxisSum) -> str:
        """Sum over per-sample axes, broadcast back (keepdims)."""
        return self._tensor_call("_axis_sum", expr)

    def _print_Reshape(self, expr: Reshape) -> str:
        """A reshape moves nothing in the per-sample storage (C order)."""
        return self._print(expr.array)

    def _print_Permute(self, expr: Permute) -> str:
        return self._tensor_call("_permute", expr)

    def _print_Slice(self, expr: Slice) -> str:
        return self._tensor_call("_slice", expr)

    def _print_Embed(self, expr: Embed) -> str:
        return self._tensor_call("_embed", expr)

    def _print_Step(self, expr: Step) -> str:
        """One step along an axis: the index may be a loop's symbol."""
        index = self._print(expr.index)
        return self.call("_step", self._print(expr.array), str(expr.shape), str(expr.axis), index)

    def _print_LogOneMinusSoftmax(self, expr: LogOneMinusSoftmax) -> str:
        """log(1 - softmax(z)_k) from the logits: finite where 1 - a rounds to 0."""
        return self.call("_log1m_softmax", self._print(expr.args[0]))

    def _print_ExclusiveSoftmaxSum(self, expr: ExclusiveSoftmaxSum) -> str:
        """sum_(k != j) g_k a_j / (1 - a_k) from the logits: each term at most |g_k|."""
        g, z = (self._print(a) for a in expr.args)
        return self.call("_exclusive_softmax", g, z, "over=True")

    def _print_ExclusiveSoftmaxSumTangent(self, expr: ExclusiveSoftmaxSumTangent) -> str:
        """The tangent of sum_(k != j) g_k a_j / (1 - a_k) along z' = v, without the
        cancellation a difference v_j - u_k has at the dominant unit."""
        g, v, z = (self._print(a) for a in expr.args)
        return self.call("_exclusive_softmax_tangent", g, v, z)

    def _print_ExclusiveSoftmaxMean(self, expr: ExclusiveSoftmaxMean) -> str:
        """sum_(i != k) v_i a_i / (1 - a_k) from the logits (the tangent of log(1 - a_k))."""
        v, z = (self._print(a) for a in expr.args)
        return self.call("_exclusive_softmax", v, z, "over=False")

    def attr(self, expr: sp.Basic) -> str:
        """expr ready for attribute access (.T, .sum): parenthesised unless a name."""
        text = self._print(expr)
        return text if isinstance(expr, (sp.Symbol, sp.MatrixSymbol)) else f"({text})"

    def _print_Transpose(self, expr: sp.Transpose) -> str:
        return f"{self.attr(expr.arg)}.T"

    def _print_MatAdd(self, expr: sp.MatAdd) -> str:
        return " + ".join(self._print(a) for a in expr.args)

    def _print_MatMul(self, expr: sp.MatMul) -> str:
        """Matrix products; products with a ones-vector are sums or broadcasts."""
        scalars = [a for a in expr.args if not isinstance(a, sp.MatrixExpr)]
        mats = [a for a in expr.args if isinstance(a, sp.MatrixExpr)]
        text = self._print_matrices(mats)
        if scalars:
            text = f"{self.parenthesize(sp.Mul(*scalars), PRECEDENCE['Mul'])} * {text}"
        return text

    def _print_matrices(self, mats: list) -> str:
        if len(mats) == 2 and isinstance(mats[1], sp.OneMatrix) and mats[1].shape[1] == 1:
            return self._sum_over_samples(mats[0])
        if any(isinstance(a, sp.OneMatrix) for a in mats):
            # b 1^T (column) or 1 b^T (row): NumPy broadcasting adds b to every sample.
            rest = [a for a in mats if not isinstance(a, sp.OneMatrix)]
            if len(rest) != 1 or len(mats) != 2:
                raise DerivationError(f"unsupported product with a ones-vector: {mats}")
            return self._print(rest[0].arg if isinstance(rest[0], sp.Transpose) else rest[0])
        return " @ ".join(self.parenthesize(m, PRECEDENCE["Mul"] + 1) for m in mats)

    def _sum_over_samples(self, mat: sp.MatrixExpr) -> str:
        if isinstance(mat, sp.Transpose):
            return f"{self.attr(mat.arg)}.sum(axis=0)"
        return f"{self.attr(mat)}.sum(axis=1, keepdims=True)"


def print_numpy(expr: sp.Basic, row_layout: bool, names: dict[str, str] | None = None) -> str:
    """One expression as NumPy source."""
    return NumPyPrinter(row_layout, names).doprint(expr)


__all__ = ["NumPyPrinter", "print_numpy"]
