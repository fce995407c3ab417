"""SymPy -> LaTeX in the seed's notation: a^{(l)}, W^{(l)}, \\delta^{(l)}, and \\odot.

Products of vectors are elementwise and printed with \\odot; scalars (numbers, c)
multiply by juxtaposition. Matrix products come from MatMul nodes.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE, precedence_traditional

from symbp.errors import OutputError
from symbp.ir.naming import ArrayMatrix, ArraySymbol, Layer, Role
from symbp.ir.reductions import (
    ExclusiveSoftmaxMean,
    ExclusiveSoftmaxSum,
    ExclusiveSoftmaxSumTangent,
    LogOneMinusSoftmax,
    LogSumExp,
    UnitSum,
)
from symbp.ir.tensor_ops import AxisSum, Embed, Permute, Reshape, Slice
from symbp.options import TRANSPOSES
from symbp.symbolic.conditions import condition_shown
from symbp.symbolic.numbers import decimal_text
from symbp.symbolic.output import SCALE


def _exclusion(expr: sp.Sum) -> tuple[sp.Expr, sp.Expr] | None:
    """(j, h) when expr is a sum over one index k of (1 - [j = k]) h: the sum over k != j."""
    if len(expr.limits) != 1:
        return None
    k = expr.limits[0][0]
    for factor in sp.Mul.make_args(expr.function):
        terms = sp.Add.make_args(factor)
        if len(terms) != 2 or sp.S.One not in terms:
            continue
        kd = -(terms[0] if terms[1] == sp.S.One else terms[1])
        if isinstance(kd, sp.KroneckerDelta) and k in kd.args:
            j = kd.args[0] if kd.args[1] == k else kd.args[1]
            return j, expr.function / factor
    return None


@dataclass(frozen=True)
class Notation:
    """How the document writes vectors and matrices (`bold`: \\mathbf{a}, \\boldsymbol{\\delta})
    and the transpose (a key of TRANSPOSES). The default is the seed's notation."""

    bold: bool = False
    transpose: str = "T"

    def __post_init__(self) -> None:
        if self.transpose not in TRANSPOSES:
            raise OutputError(
                f"unknown transpose symbol {self.transpose!r}",
                fix=f"choose one of {', '.join(TRANSPOSES)}",
            )

    def v(self, letter: str) -> str:
        """A vector's or matrix's letter (W, \\delta) in this notation; braced when bold, so
        that an accent (\\dot) or a superscript applies to the whole letter."""
        if not self.bold:
            return letter
        # A Latin letter in \mathbf; a Greek one (a command, \delta) in \boldsymbol.
        latin = letter.isascii() and letter.isalpha()
        return rf"{{\mathbf{{{letter}}}}}" if latin else rf"{{\boldsymbol{{{letter}}}}}"

    @property
    def t(self) -> str:
        """The transpose as a superscript: ^{\\mathsf{T}}."""
        return f"^{{{TRANSPOSES[self.transpose]}}}"

    def letters(self) -> dict[str, str]:
        """The letters the templates write around the printed formulas (sym.W, sym.T, ...)."""
        names = ("a", "z", "W", "b", "x", "y", "g", "A", "Z", "G", "X", "Y")
        out = {name: self.v(name) for name in names}
        out.update(delta=self.v(DELTA), Delta=self.v(CAPITAL_DELTA), T=self.t)
        out.update(gamma=self.v(r"\gamma"), beta=self.v(r"\beta"))
        return out


PLAIN = Notation()
DELTA, CAPITAL_DELTA = r"\delta", r"\Delta"


# The letters of each role (vector form, batch form) and how the role decorates them.
_LETTERS: dict[Role, tuple[str, str]] = {
    Role.ACTIVATION: ("a", "A"),
    Role.PRE_ACTIVATION: ("z", "Z"),
    Role.ERROR: (DELTA, CAPITAL_DELTA),
    Role.ERROR_IN: ("g", "G"),
    Role.TANGENT_A: ("a", "a"),
    Role.TANGENT_Z: ("z", "z"),
    Role.R_ERROR: (DELTA, DELTA),
    Role.WEIGHT: ("W", "W"),
    Role.BIAS: ("b", "b"),
    Role.WEIGHT_DIRECTION: ("W", "W"),
    Role.BIAS_DIRECTION: ("b", "b"),
    Role.EMBEDDING: ("E", "E"),
    Role.POSITION: ("P", "P"),
    Role.EMBEDDING_DIRECTION: ("E", "E"),
    Role.POSITION_DIRECTION: ("P", "P"),
    Role.TARGET: ("y", "Y"),
}
_DOTTED = (
    Role.TANGENT_A,
    Role.TANGENT_Z,
    Role.WEIGHT_DIRECTION,
    Role.BIAS_DIRECTION,
    Role.EMBEDDING_DIRECTION,
    Role.POSITION_DIRECTION,
)
# Arrays whose product with another prints with the elementwise product.
_VECTOR_ROLES = frozenset(
    {
        Role.ACTIVATION,
        Role.PRE_ACTIVATION,
        Role.ERROR_IN,
        Role.TANGENT_A,
        Role.TANGENT_Z,
        Role.R_ERROR_IN,
        Role.R_ERROR,
        Role.TARGET,
    }
)
_LAYER_TEX = {Layer.GENERAL: r"\ell", Layer.PREVIOUS: r"\ell-1", Layer.NEXT: r"\ell+1"}


def _layer_tex(layer: int | Layer) -> str:
    return str(layer) if isinstance(layer, int) else _LAYER_TEX[layer]


def _after(layer: int | Layer) -> str:
    """The layer after `layer`: l + 1."""
    return str(layer + 1) if isinstance(layer, int) else r"\ell+1"


def array_tex(symbol: ArraySymbol | ArrayMatrix, batch: bool, n: Notation = PLAIN) -> str | None:
    """Seed notation for an array of the code, from its role and layer (A2 -> a^{(2)}, or
    A^{(2)} in batch form); None for a role with no letter here."""
    role, layer = symbol.role, symbol.layer
    if role == Role.ERROR_IN and not batch and layer is not None:
        # g^(l) in vector form reads as what the next layer sends back, (W^(l+1))^T delta^(l+1)
        nxt = _after(layer)
        return rf"\left(\left({n.v('W')}^{{({nxt})}}\right){n.t} {n.v(DELTA)}^{{({nxt})}}\right)"
    if role == Role.R_ERROR_IN and layer is not None:
        nxt = _after(layer)
        return (
            rf"\mathcal{{R}}\left\lbrace \left({n.v('W')}^{{({nxt})}}\right){n.t}"
            rf" {n.v(DELTA)}^{{({nxt})}}\right\rbrace"
        )
    if role not in _LETTERS:
        return None
    letter = n.v(_LETTERS[role][1 if batch else 0])
    if layer is None:
        return letter
    text = f"{letter}^{{({_layer_tex(layer)})}}"
    if role in _DOTTED:
        return rf"\dot {text}"
    if role == Role.R_ERROR:
        return rf"\mathcal{{R}}\lbrace {text} \rbrace"
    return text


# Scalars and sizes of the general formulas, by their symbols' names.
_SCALARS = {
    "yhat": r"\hat{y}",
    "n_in": r"n_{\ell-1}",
    "n_out": r"n_{\ell}",
    "K": r"n_{L}",
    # a normalisation's standard deviation: rho, as sigma is the logistic function
    "sigma": r"\rho",
}


_INDEXED_NAMES = {
    "ad": r"\dot{a}",
    "xd": r"\dot{x}",
    "xhat": r"\hat{x}",
    "Wd": r"\dot{W}",
    "bd": r"\dot{b}",
    "Rdelta": r"\mathcal{R}\delta",
}


SMALL_DECIMAL = sp.Rational(1, 10**4)  # below it, a decimal is written m \cdot 10^{-k}


def _decimal_tex(r: sp.Rational) -> str | None:
    r"""decimal_text, with a small number in scientific form (5 \cdot 10^{-11}, not
    0.00000000005), which a reader cannot miscount."""
    text = decimal_text(r)
    if text is None or r == 0 or abs(r) >= SMALL_DECIMAL:
        return text
    sign, digits, exponent = Decimal(text).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    power = exponent + len(digits) - 1
    return f"{'-' if sign else ''}{mantissa} \\cdot 10^{{{power}}}"


class SeedLatexPrinter(LatexPrinter):
    """LaTeX for symbp's derived expressions; `batch` selects matrix (A) or vector (a) names.

    The TeX holds no backslash before ASCII punctuation (\\{, \\\\, \\:, ...): Markdown
    (GitHub's) takes those as escapes inside $...$, so braces are \\lbrace/\\rbrace, rows end
    with \\cr and spaces are written out."""

    printmethod = "_symbp_latex"
    # notation: bold vectors and matrices, the transpose's symbol (symbp.documents.latex.Notation)
    _default_settings = {**LatexPrinter._default_settings, "notation": PLAIN}

    def _print_DiracDelta(self, expr: sp.DiracDelta, exp: Any = None) -> str:
        """Dirac's delta as delta_D, so that it is not read as an error term delta^(l)."""
        text = rf"\delta_{{\mathrm{{D}}}}\left({self._print(expr.args[0])}\right)"
        return f"{text}^{{{exp}}}" if exp is not None else text

    def _print_NumberSymbol(self, expr: sp.NumberSymbol) -> str:
        """pi, E, EulerGamma, ... as SymPy writes them (\\pi): the printmethod above hides
        their own _latex from SymPy's lookup."""
        return str(expr._latex(self))

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        """Cases as SymPy writes them, with rows ended by \\cr and "for " spaced in the text
        (SymPy's \\\\ and \\: are Markdown escapes); each condition in its tightest checked
        form (symbp.symbolic.conditions.condition_shown), and a row whose value is wider than the
        printer's cases_limit broken into rows of its own (ended by \\cr as well)."""
        rows = []
        for value, cond in expr.args:
            cond = condition_shown(cond)
            where = (
                r"\text{otherwise}"
                if cond == sp.true
                else rf"\text{{for }} {self._condition(cond)}"
            )
            limit = self.cases_limit
            if limit is not None and cond != sp.true:  # the condition shares the line
                line = limit / CASES_SHARE
                limit = max(min(limit, line - width(cond) - 4), line / 3)
            if limit is not None and width(value) > limit:  # a wide row, broken
                lines = _lines(self, value, limit)
                shown = (
                    r"\begin{aligned}[t] &" + r" \cr &\quad ".join(lines) + r"\end{aligned}"
                    if len(lines) > 1
                    else lines[0]
                )
            else:
                shown = self._print(value)
            rows.append(f"{shown} & {where}")
        return r"\begin{cases} " + r" \cr ".join(rows) + r" \end{cases}"

    def _condition(self, cond: sp.Basic) -> str:
        """A condition; two bounds on one variable chained: -1 < x < 1 (not x > -1 and x < 1)."""
        if isinstance(cond, sp.And) and len(cond.args) == 2:
            lower = [r for r in cond.args if isinstance(r, (sp.Gt, sp.Ge)) and r.rhs.is_number]
            upper = [r for r in cond.args if isinstance(r, (sp.Lt, sp.Le)) and r.rhs.is_number]
            if len(lower) == len(upper) == 1 and lower[0].lhs == upper[0].lhs:
                lo, hi = lower[0], upper[0]
                left = "<" if isinstance(lo, sp.Gt) else r"\leq"
                right = "<" if isinstance(hi, sp.Lt) else r"\leq"
                x = self._print(lo.lhs)
                return f"{self._print(lo.rhs)} {left} {x} {right} {self._print(hi.rhs)}"
        return self._print(cond)

    def _print_Sum(self, expr: sp.Sum) -> str:
        """One \\sum per index (SymPy stacks several limits with \\\\), in the order of the
        limits when their bounds are independent, else the outermost (the last limit) first."""
        excluded = _exclusion(expr)
        if excluded is not None:  # sum over k of (1 - [j = k]) h_k: the sum over k != j
            (k, _, _), (j, rest) = expr.limits[0], excluded
            return rf"\sum_{{{self._print(k)} \neq {self._print(j)}}} " + self._print(rest)
        indices = {limit[0] for limit in expr.limits}
        nested = any((lo.free_symbols | hi.free_symbols) & indices for _, lo, hi in expr.limits)
        sums = "".join(
            rf"\sum_{{{self._print(i)}={self._print(lo)}}}^{{{self._print(hi)}}} "
            for i, lo, hi in (reversed(expr.limits) if nested else expr.limits)
        )
        body = self._print(expr.function)
        return sums + (rf"\left({body}\right)" if isinstance(expr.function, sp.Add) else body)

    def _print_Rational(self, expr: sp.Rational) -> str:
        """A decimal rational as the user wrote it: 10^{-k} (eps: 1e-5), or its digits
        (0.044715, not 8943/200000); others as SymPy prints them."""
        digits = len(str(expr.q)) - 1
        if digits > 0 and 10**digits == expr.q and abs(expr.p) == 1:
            return f"{'-' if expr.p < 0 else ''}10^{{-{digits}}}"
        text = _decimal_tex(expr)
        return text if text is not None else str(super()._print_Rational(expr))

    def __init__(
        self,
        batch: bool = False,
        names: dict[str, str] | None = None,
        arrays: frozenset[str] = frozenset(),
        **settings: Any,
    ) -> None:
        super().__init__({"mat_symbol_style": "plain", **settings})
        self.batch = batch
        self.names = names or {}  # symbol name -> LaTeX, from the network's bindings
        self.arrays = arrays  # names of per-sample arrays (products of two print with odot)
        # break the rows of cases wider than this (tex_lines sets it from its own limit)
        self.cases_limit: float | None = CASES_SHARE * (line_width() - 10)
        self.notation: Notation = self._settings["notation"]

    def is_array(self, expr: sp.Expr) -> bool:
        """Whether expr is an array (a product with another prints with \\odot): it reads a
        whole-array symbol or one of the per-sample arrays."""
        return _is_vector(expr) or any(
            getattr(sym, "name", None) in self.arrays for sym in expr.free_symbols
        )

    @property
    def transpose(self) -> str:
        """The transpose superscript of the notation, for nodes that print their own TeX."""
        return self.notation.t

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        n = self.notation
        role = getattr(expr, "role", None)
        if n.bold and role == Role.ERROR_IN and expr.name in self.names:
            # g^(l) = dL/da^(l), a vector: the bindings name it in plain letters
            return f"{n.v('G' if self.batch else 'g')}^{{({_layer_tex(expr.layer)})}}"
        if expr.name in self.names:
            return self.names[expr.name]
        if isinstance(expr, ArraySymbol):
            return array_tex(expr, self.batch, n) or super()._print_Symbol(expr)
        if expr == SCALE:  # the batch scale, kappa (c is a channel)
            return r"\kappa"
        return _SCALARS.get(expr.name) or super()._print_Symbol(expr)

    def _print_BatchSum(self, expr: Any) -> str:
        return rf"\sum_{{s}} \left[{self._print(expr.args[0])}\right]_{{s}}"

    def _print_MatrixSymbol(self, expr: sp.MatrixSymbol) -> str:
        if isinstance(expr, ArrayMatrix):
            return array_tex(expr, True, self.notation) or super()._print_MatrixSymbol(expr)
        return super()._print_MatrixSymbol(expr)

    def _print_OneMatrix(self, expr: sp.OneMatrix) -> str:
        """A column of ones, 1; a row of ones (b 1^T in the column layout) is its transpose."""
        if expr.shape[0] == 1 and expr.shape[1] != 1:
            return r"\mathbf{1}" + self.transpose
        return r"\mathbf{1}"

    def _print_Transpose(self, expr: sp.Transpose) -> str:
        inner = self._print(expr.arg)
        if not isinstance(expr.arg, sp.MatrixSymbol):
            inner = rf"\left({inner}\right)"
        elif "^" in inner:
            inner = rf"\left({inner}\right)"
        return inner + self.transpose

    def _print_Heaviside(self, expr: sp.Heaviside, exp: Any = None) -> str:
        """step(u), the unit step: theta is the parameters in the documents."""
        text = rf"\operatorname{{step}}\left({self._print(expr.args[0])}\right)"
        return rf"{text}^{{{exp}}}" if exp else text

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta, exp: Any = None) -> str:
        """Iverson bracket [i = q]: the letter delta is reserved for the error terms."""
        i, j = (self._print(a) for a in expr.args)
        return f"[{i} = {j}]"

    def _print_UnitSum(self, expr: UnitSum) -> str:
        return rf"\sum_{{k}} \left[{self._print(expr.args[0])}\right]_{{k}}"

    def _print_LogSumExp(self, expr: LogSumExp) -> str:
        return r"\log \sum_{k} e^{z_k}"

    def _print_AxisSum(self, expr: AxisSum) -> str:
        axes = ",".join(str(a + 1) for a in expr.axes)
        return rf"\operatorname{{sum}}_{{{axes}}}\left({self._print(expr.array)}\right)"

    def _print_Reshape(self, expr: Reshape) -> str:
        return self._print(expr.array)

    def _print_Permute(self, expr: Permute) -> str:
        order = ",".join(str(a + 1) for a in expr.order)
        return rf"\operatorname{{permute}}_{{{order}}}\left({self._print(expr.array)}\right)"

    def _print_Slice(self, expr: Slice) -> str:
        axis, start, stop = expr.bounds
        return rf"\left[{self._print(expr.array)}\right]_{{{axis + 1}: {start + 1}..{stop}}}"

    def _print_Embed(self, expr: Embed) -> str:
        axis, start, stop = expr.bounds
        inner = self._print(expr.array)
        return rf"\operatorname{{embed}}_{{{axis + 1}: {start + 1}..{stop}}}\left({inner}\right)"

    def _softmax_of(self, z: sp.Expr) -> str:
        return rf"\operatorname{{softmax}}\left({self._print(z)}\right)"

    def _print_LogOneMinusSoftmax(self, expr: LogOneMinusSoftmax) -> str:
        return rf"\log\left(1 - {self._softmax_of(expr.args[0])}\right)"

    def _print_exp(self, expr: sp.exp, exp: Any = None) -> str:
        """e^(log(1 - a)) is 1 - a (the code takes it from the logits)."""
        if isinstance(expr.args[0], LogOneMinusSoftmax) and exp is None:
            return rf"\left(1 - {self._softmax_of(expr.args[0].args[0])}\right)"
        return str(self._print_ExpBase(expr, exp))

    def _print_ExclusiveSoftmaxSum(self, expr: ExclusiveSoftmaxSum) -> str:
        """sum over the units k other than the row's unit j, with q_jk = a_j / (1 - a_k)."""
        return rf"\sum_{{k \neq j}} \left[{self._print(expr.args[0])}\right]_{{k}} q_{{jk}}"

    def _print_ExclusiveSoftmaxMean(self, expr: ExclusiveSoftmaxMean) -> str:
        """At the row's unit j: the mean of v under the softmax of the units other than j."""
        return rf"\sum_{{i \neq j}} \left[{self._print(expr.args[0])}\right]_{{i}} q_{{ij}}"

    def _print_ExclusiveSoftmaxSumTangent(self, expr: ExclusiveSoftmaxSumTangent) -> str:
        g, v = (self._print(a) for a in expr.args[:2])
        return (
            rf"\sum_{{k \neq j}} \left[{g}\right]_{{k}} q_{{jk}} \left(\left[{v}\right]_{{j}}"
            rf" - \sum_{{i \neq k}} \left[{v}\right]_{{i}} q_{{ik}}\right)"
        )

    def _print_Add(self, expr: sp.Add, order: Any = None) -> str:
        """Terms with a plus sign first, as a person writes them: u - S_h i, not -S_h i + u
        (SymPy's order otherwise)."""
        terms = list(expr.as_ordered_terms())
        negative = [t.could_extract_minus_sign() for t in terms]
        if not negative[0] or all(negative):
            return super()._print_Add(expr, order)
        ordered = [t for t, neg in zip(terms, negative, strict=True) if not neg]
        ordered += [t for t, neg in zip(terms, negative, strict=True) if neg]
        text = ""
        for k, term in enumerate(ordered):
            if k and term.could_extract_minus_sign():
                text += " - "
                term = -term
            elif k:
                text += " + "
            part = self._print(term)
            if self._needs_add_brackets(term):
                part = rf"\left({part}\right)"
            text += part
        return text

    def _print_Mul(self, expr: sp.Mul) -> str:
        """Elementwise products of vectors with \\odot; scalar factors in front; a decimal
        coefficient as the user wrote it (0.044715 x, not 8943 x / 200000)."""
        coeff, rest = expr.as_coeff_Mul()
        if isinstance(coeff, sp.Rational) and rest != 1 and decimal_text(abs(coeff)):
            sign = "- " if coeff < 0 else ""
            return f"{sign}{_decimal_tex(abs(coeff))} {self.parenthesize(rest, 50)}"
        numer, denom = sp.fraction(expr, exact=True)
        if denom != 1:
            return rf"\frac{{{self._print(numer)}}}{{{self._print(denom)}}}"
        scalars: list[sp.Expr] = []
        vectors: list[sp.Expr] = []
        for factor in expr.as_ordered_factors():
            (vectors if self.is_array(factor) else scalars).append(factor)
        if not vectors or not scalars and len(vectors) < 2:
            return super()._print_Mul(expr)
        # The incoming gradient G first, as in the seed's recursion.
        vectors.sort(key=lambda v: getattr(v, "role", None) != Role.ERROR_IN)
        parts = [self.parenthesize(v, 50) for v in vectors]
        text = r" \odot ".join(parts)
        coeff = sp.Mul(*scalars)
        sign = ""
        if coeff.could_extract_minus_sign():  # - 2 c a, not (-2 c) a or \left(-2\right) a
            sign, coeff = "- ", -coeff
            # c a ⊙ (1 - a) rather than - c a ⊙ (a - 1): the sign goes into a difference
            for k, v in enumerate(vectors):
                if negatable(v) and not self._as_ordered_terms(-v)[0].could_extract_minus_sign():
                    parts[k] = rf"\left({self._print(-v)}\right)"  # reads 1 - a, not -a + y
                    text, sign = r" \odot ".join(parts), ""
                    break
        if coeff != 1:
            text = f"{self.parenthesize(coeff, 50, strict=True)} {text}"
        return sign + text

    def _print_MatMul(self, expr: sp.MatMul) -> str:
        """As SymPy prints it, but the sign is read off the leading number: SymPy's general
        sign analysis took most of the time of documenting a deep network."""
        args = list(expr.args)
        negative = bool(args[0].is_Number and args[0].is_negative)
        level = precedence_traditional(expr) if negative else _MATMUL_PRECEDENCE

        def parens(x: sp.Basic) -> str:
            if isinstance(x, sp.Mul) and not isinstance(x, sp.MatMul):
                return self._print(x)
            return self.parenthesize(x, level, False)

        if negative:
            args = args[1:] if args[0] == -1 else [-args[0], *args[1:]]
            return "- " + " ".join(map(parens, args))
        return " ".join(map(parens, args))

    def _print_IndexedBase(self, expr: sp.IndexedBase) -> str:
        """Index-notation names: tangents dotted, R{delta} with a script R."""
        name = str(expr)
        return self.names.get(name) or _INDEXED_NAMES.get(name, super()._print_IndexedBase(expr))


_MATMUL_PRECEDENCE = precedence_traditional(
    sp.MatMul(sp.MatrixSymbol("P", 2, 2), sp.MatrixSymbol("Q", 2, 2))
)


def negatable(expr: sp.Expr) -> bool:
    """A difference of two terms, one of them negative (a - 1): negated, it reads 1 - a."""
    terms = sp.Add.make_args(expr)
    return len(terms) == 2 and sum(t.could_extract_minus_sign() for t in terms) == 1


def _is_vector(expr: sp.Expr) -> bool:
    """True when expr depends on a whole-array symbol (a, z, G, y); index notation is scalar."""
    if expr.has(sp.Indexed):
        return False
    return any(getattr(s, "role", None) in _VECTOR_ROLES for s in expr.free_symbols)


def tex(
    expr: sp.Basic,
    batch: bool = False,
    names: dict[str, str] | None = None,
    arrays: frozenset[str] = frozenset(),
    notation: Notation = PLAIN,
) -> str:
    """expr in the seed's notation (`names`: LaTeX of symbols the network's kinds name)."""
    return SeedLatexPrinter(batch, names, arrays, notation=notation).doprint(expr)


# --- long formulas, broken into lines ---------------------------------------------------
#
# A display line holds about LINE_WIDTH glyphs (a 10pt article's text width, and a column of
# a two-column paper at about half of it). A formula estimated wider is broken at the terms of
# its sums: a sum's terms are packed greedily onto lines, and a product holding a long sum
# opens its parenthesis on one line (\left( ... \right.) and closes it on a later one. The
# estimate is read off the expression tree, not off the printed text; calibrated on the
# examples (an estimate of 236 printed 1090pt wide: about 4.6pt a glyph, 75 glyphs to the
# 345pt of a 10pt article's text).

COLUMN_WIDTH = 40  # glyphs in a column of a two-column 10pt paper (a body)
PAGE_WIDTH = 70  # glyphs on a line of the standalone one-column document
LINE_WIDTH = COLUMN_WIDTH  # the narrower, where no width is set
CASES_SHARE = 0.6  # of a line, for the value of a row of cases
_WIDTH: contextvars.ContextVar[float] = contextvars.ContextVar("line_width", default=LINE_WIDTH)


def line_width() -> float:
    """The glyphs of a display line in the document being printed (`measure` sets it)."""
    return _WIDTH.get()


@contextlib.contextmanager
def measure(glyphs: float) -> Iterator[None]:
    """Print the displays inside the block for lines of `glyphs` glyphs: PAGE_WIDTH for the
    standalone document, COLUMN_WIDTH for a body that may go into a two-column paper."""
    token = _WIDTH.set(glyphs)
    try:
        yield
    finally:
        _WIDTH.reset(token)


# The glyphs of a function's printed name (sin, \\operatorname{atan}), 3 for the others.
_NAME_GLYPHS: dict[Any, float] = {
    sp.sin: 3, sp.cos: 3, sp.tan: 3, sp.log: 3, sp.erf: 3, sp.Abs: 0, sp.sign: 3,
    sp.sinh: 4, sp.cosh: 4, sp.tanh: 4, sp.sech: 4, sp.atan: 4, sp.Heaviside: 4,
    sp.Max: 3, sp.Min: 3, sp.DiracDelta: 2,
}  # fmt: skip


def width(expr: sp.Basic) -> float:
    """Estimated printed width of expr, in glyphs."""
    if isinstance(expr, sp.Symbol):
        return 3.5  # a^{(2)}
    if isinstance(expr, sp.Number):
        return 0.5 + len(str(abs(expr))) if not isinstance(expr, sp.Rational) or expr.q == 1 else 2
    if isinstance(expr, sp.NumberSymbol):
        return 1
    if isinstance(expr, sp.Add):
        return sum(width(t) for t in expr.args) + 2.5 * (len(expr.args) - 1)
    if isinstance(expr, sp.Mul):
        numer, denom = sp.fraction(expr, exact=True)
        if denom != 1:
            return max(width(numer), width(denom)) + 1
        return sum(width(f) + (2 if isinstance(f, sp.Add) else 0) for f in expr.args) + 2 * (
            len(expr.args) - 1
        )
    if isinstance(expr, sp.Pow):
        if expr.exp.is_negative:
            return width(1 / expr) + 1
        # (a + b)^2 and (z^{(1)})^2 are bracketed; tanh^2(u) puts the power on the name
        brackets = 2 if isinstance(expr.base, (sp.Add, sp.Symbol)) else 0
        return width(expr.base) + 0.6 * width(expr.exp) + brackets
    if isinstance(expr, sp.exp):
        return 1 + 0.6 * width(expr.args[0])  # e^{u}
    if isinstance(expr, sp.Piecewise):  # its widest row: value, "for" and condition
        return 2 + max(width(v) + (8 if c == sp.true else width(c) + 4) for v, c in expr.args)
    if isinstance(expr, sp.Rel):
        return width(expr.lhs) + width(expr.rhs) + 2
    if isinstance(expr, (sp.And, sp.Or)):
        return sum(width(a) for a in expr.args) + 2 * (len(expr.args) - 1)
    if isinstance(expr, sp.Function):  # name(u, v): the name, brackets, commas
        # a function that prints itself is one letter (sigma, Phi, varphi)
        name = 1 if hasattr(expr, "_symbp_latex") else _NAME_GLYPHS.get(expr.func, 3)
        return 0.9 * name + 2.5 + sum(width(a) + 1 for a in expr.args) - 1
    if expr.args:
        return 3 + sum(width(a) for a in expr.args if isinstance(a, sp.Basic))
    return 2


def tex_lines(
    expr: sp.Expr,
    batch: bool = False,
    names: dict[str, str] | None = None,
    arrays: frozenset[str] = frozenset(),
    limit: float | None = None,
    notation: Notation = PLAIN,
) -> list[str]:
    """expr printed on one line, or on several of at most about `limit` glyphs each (by
    default, the line of the document being printed)."""
    limit = line_width() if limit is None else limit
    printer = SeedLatexPrinter(batch, names, arrays, notation=notation)
    printer.cases_limit = CASES_SHARE * limit  # the rest of the row is its condition
    return _lines(printer, expr, limit)


def _lines(printer: SeedLatexPrinter, expr: sp.Expr, limit: float) -> list[str]:
    if width(expr) <= limit:
        return [printer.doprint(expr)]
    if isinstance(expr, sp.Add):
        return _sum_lines(printer, expr, limit)
    if isinstance(expr, sp.Mul) and not isinstance(expr, sp.MatrixExpr):
        coeff, factors = expr.as_coeff_mul()
        sums = [f for f in factors if isinstance(f, sp.Add)]
        numer, denom = sp.fraction(expr, exact=True)
        if sums and denom == 1:
            # c (a + b + ...): the widest sum's parenthesis opens on the first line, after
            # the other factors, and closes on the last
            inner = max(sums, key=width)
            short = width(inner) <= limit / 2 or len(inner.args) < 3 and width(inner) <= limit
            if short:  # no sum worth breaking: the line breaks between factors
                return _factor_lines(printer, expr, limit)
            others = list(factors)
            others.remove(inner)
            sign = "- " if coeff < 0 else ""
            rest = sp.Mul(abs(coeff), *others)
            times = r" \odot " if printer.is_array(expr) else " "
            level = PRECEDENCE["Mul"]
            prefix = "" if rest == 1 else printer.parenthesize(rest, level, strict=True) + times
            body = _lines(printer, inner, max(limit - width(rest), limit / 2))
            if len(body) == 1:  # the sum fits a line: the product stays whole
                return [printer.doprint(expr)]
            body[0] = rf"{sign}{prefix}\left({body[0]}\right."
            body[-1] = rf"\left.{body[-1]}\right)"
            return body
        if denom == 1:
            return _factor_lines(printer, expr, limit)
    return [printer.doprint(expr)]


def _factor_lines(printer: SeedLatexPrinter, expr: sp.Mul, limit: float) -> list[str]:
    """A product broken between its factors, packed greedily onto lines: the scalars first,
    juxtaposed, then the arrays joined by \\odot; a line after the first starts with the
    product's sign there (\\odot between arrays, \\cdot before a scalar)."""
    coeff, factors = expr.as_coeff_mul()
    factors = (
        *(f for f in factors if not printer.is_array(f)),
        *(f for f in factors if printer.is_array(f)),
    )
    lines: list[str] = []
    current = "- " if coeff < 0 else ""
    used = 0.0
    if abs(coeff) != 1:
        current += printer.doprint(abs(coeff))
        used = width(abs(coeff))
    before_array = False
    for factor in factors:
        array = printer.is_array(factor)
        times = r"\odot " if array and before_array else ""
        text = printer.parenthesize(factor, PRECEDENCE["Mul"], strict=True)
        size = width(factor) + (2 if isinstance(factor, sp.Add) else 0) + 2
        if used and used + size > limit:
            lines.append(current)
            current, used = (times or r"\cdot ") + text, size
        else:
            current = f"{current} {times}{text}" if used else current + text
            used += size
        before_array = array
    lines.append(current)
    return lines


def _sum_lines(printer: SeedLatexPrinter, expr: sp.Add, limit: float) -> list[str]:
    """The terms of a sum, in the printer's order, packed greedily onto lines."""
    lines: list[str] = []
    current, used = "", 0.0
    for k, term in enumerate(printer._as_ordered_terms(expr)):
        negative = term.could_extract_minus_sign()
        shown = -term if negative and k > 0 else term
        sign = ("- " if negative else "+ ") if k > 0 else ""
        cost = width(shown) + 2
        if current and used + cost > limit:
            lines.append(current)
            current, used = "", 0.0
        pieces = _lines(printer, shown, limit) if cost > limit else [printer.doprint(shown)]
        if len(pieces) > 1:  # a term of several lines starts a line of its own
            if current:
                lines.append(current)
            lines += [sign + pieces[0], *pieces[1:-1]]
            current, used = pieces[-1], limit / 2
            continue
        piece = sign + printer.parenthesize(shown, 40) if k > 0 else pieces[0]
        current = f"{current} {piece}" if current else piece
        used += cost
    if current:
        lines.append(current)
    return lines


@dataclass(frozen=True)
class Display:
    """A display formula `head` + its right-hand side in lines; printed as one line, or as an
    aligned block whose continuation lines are indented, followed by a row "where u_1 = ..."
    when it names repeated subexpressions. end(mark) puts punctuation after the last row
    rather than after the block."""

    head: str
    lines: tuple[str, ...]
    where: tuple[str, ...] = ()  # rows of "u_{1} = ..., u_{2} = ...", in order

    def end(self, mark: str) -> str:
        if len(self.lines) > 1 and self.lines[0] == "":  # the head on a row of its own
            return rf"{self.head} \\ " + r" \\ ".join(self.lines[1:]) + mark
        if len(self.lines) == 1 and not self.where:
            return f"{self.head}{self.lines[0]}{mark}"
        rows = list(self.lines)
        if self.where:  # rows of definitions, each row already packed
            rows[-1] += ","
            rows += [(r"\text{where } " if k == 0 else "") + w for k, w in enumerate(self.where)]
        body = r" \\ &\quad ".join(rows)
        return rf"{self.head}\begin{{aligned}}[t] &{body}{mark} \end{{aligned}}"

    def __str__(self) -> str:
        return self.end("")


WHERE_PREFIX = 6  # the glyphs of "where " before a row of definitions


def definition_lines(
    name: str,
    expr: sp.Expr,
    batch: bool = False,
    names: dict[str, str] | None = None,
    arrays: frozenset[str] = frozenset(),
    limit: float | None = None,
    notation: Notation = PLAIN,
) -> list[str]:
    """The rows of a definition `name = expr` after "where " in a display (u_{1} = ...): one
    row, or rows of at most about `limit` glyphs as a display's right-hand side is broken.
    For document.py's _packed, which prints each definition on one row."""
    limit = line_width() - 10 if limit is None else limit
    printer = SeedLatexPrinter(batch, names, arrays, notation=notation)
    printer.cases_limit = CASES_SHARE * limit
    lines = _lines(printer, expr, limit - WHERE_PREFIX - 3)
    return [f"{name} = {lines[0]}", *lines[1:]]


def ends(line: Any, mark: str) -> str:
    """Jinja filter: a display line followed by punctuation (inside a broken display)."""
    return line.end(mark) if isinstance(line, Display) else f"{line}{mark}"
