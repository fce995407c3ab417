"""The network's equations -> statements -> buffers -> NumPy lines, for every function of the
generated module.

Statements are (target, expression, operation) built from the per-node equations of
symbp.derivation.network; which array a symbol stands for comes from the bindings, never from its
name. A liveness pass over the backward statements places the error terms in workspace buffers (an
array's buffer is free again after its last read), and only then is anything printed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from symbp.backends.numpy.cells import cells_source
from symbp.backends.numpy.inplace import chain_lines
from symbp.backends.numpy.printer import NumPyPrinter, _indicator, _rectified
from symbp.codegen.program import (
    Loop,
    Program,
    Stmt,
    cache_names,
    dying,
    loads,
    loss_expr,
    loss_reuse,
    reads_batch_size,
    sequence_io,
    sym,
)
from symbp.derivation.kinds import kind_module
from symbp.derivation.nodes import NodeDerivation
from symbp.errors import DerivationError
from symbp.ir.bindings import Expr, Family, Kind
from symbp.ir.graph import Tensor
from symbp.ir.image_ops import ImageOp
from symbp.ir.naming import Role, array, gradient_name
from symbp.ir.naming import name as array_name
from symbp.ir.reductions import BatchSum
from symbp.symbolic.output import SCALE
from symbp.symbolic.probe import sigmoid_arg
from symbp.symbolic.stable import through_sigmoid

HE_INIT = ("relu", "leaky_relu", "elu")


class Workspace:
    """The arrays make_workspace(batch) preallocates: key -> shape (code text), in use order.
    An array of several rows a sample (a sequence's positions) has `rows` = batch*T rows."""

    def __init__(self, row: bool) -> None:
        self.row = row
        self.shapes: dict[str, str] = {}

    def per_sample(self, key: str, units: int, rows: int = 1) -> str:
        count = "rows" if rows > 1 else "batch"
        return self._add(key, f"({count}, {units})" if self.row else f"({units}, {count})")

    def shaped(self, key: str, shape: tuple[int, ...]) -> str:
        return self._add(key, repr(tuple(shape)))

    def per_unit(self, key: str, units: int) -> str:
        return self._add(key, f"({units},)" if self.row else f"({units}, 1)")

    def _add(self, key: str, shape: str) -> str:
        if self.shapes.setdefault(key, shape) != shape:
            raise DerivationError(
                f"workspace buffer {key} wanted as {self.shapes[key]} and {shape}"
            )
        return f'ws.get("{key}")'


@dataclass
class Emitter:
    """Prints the statements of one program (symbp.codegen.program) as NumPy lines."""

    p: Program
    printer: NumPyPrinter = field(init=False)
    ws: Workspace = field(init=False)
    activations: dict[int, tuple[str, bool, str]] = field(init=False, default_factory=dict)
    printed: dict[Any, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        row = self.p.d.arch.layout == "row"
        names = {"c": "scale", "Y": "Y", "lambda": repr(float(self.p.d.arch.l2))}
        names.update(
            {
                array_name(Role.PRE_ACTIVATION, nd.node.index): "Z"
                for nd in self.p.net.nodes
                if self._z_reused(nd)
            }
        )
        self.printer = NumPyPrinter(row, names)
        self.ws = Workspace(row)

    def _z_reused(self, nd: NodeDerivation) -> bool:
        """z lives in the one reused name Z when nothing after its layer reads it."""
        single = kind_module(nd.node.kind).Z_IN_ONE_PRODUCT
        return nd.node.index not in self.p.keep_z and single

    def info(self, symbol: Any):
        return self.p.arrays.info(symbol)

    def per_sample(self, expr: Expr) -> bool:
        return self.p.arrays.per_sample(expr)

    def constant(self, expr: Expr) -> bool:
        return self.p.arrays.constant(expr)

    def fresh(self, expr: Expr) -> bool:
        return self.p.arrays.fresh(expr)

    def code(self, expr: Expr) -> str:
        """expr as NumPy code, printed once per expression: the forward pass is printed three
        times (forward, loss, loss_and_grads), each from the same statements."""
        text = self.printed.get(expr)
        if text is None:
            text = self.printed[expr] = self.printer.doprint(expr)
        return text

    def array_code(self, expr: Expr, like: str) -> str:
        """expr as code, shaped like the array `like` when it is a constant."""
        text = self.code(expr)
        return self.full_like(like, text) if self.constant(expr) else text

    # --- what a backend prints its own way -------------------------------------------

    def full_like(self, like: str, text: str) -> str:
        """An array shaped like `like`, every entry the value `text`."""
        return f"np.full_like({like}, {text})"

    def reshaped(self, text: str, shape: tuple[int, ...]) -> str:
        """An array as the given shape."""
        return f"np.reshape({text}, {shape})"

    def shaped(self, text: str, param: Tensor) -> str:
        """A gradient as the caller's parameter is shaped (one stored flat is reshaped back)."""
        return self.reshaped(text, param.shape) if param.stored_flat else text

    def flat(self, text: str) -> str:
        """An array as one vector (a parameter stored flat)."""
        return f"{text}.reshape(-1)"

    def update(self, target: str, op: str, text: str) -> str:
        """target op= value (op: "+=" or "*="), in place."""
        return f"{target} {op} {text}"

    def put_step(self, target: str, shape: str, axis: str, index: str, value: str) -> str:
        """Write one step of a per-sample tensor along an axis, in place."""
        return self.printer.call("_put_step", target, shape, axis, index, value)

    # --- in-place printing (one new array, then updates) ------------------------------

    def assign(self, target: str, expr: Expr, out: str | None = None) -> list[str]:
        """Lines computing target = expr with one new array, then in-place updates."""
        if isinstance(expr, sp.MatAdd):
            matmuls = [a for a in expr.args if isinstance(a, sp.MatMul) and not _broadcast(a)]
            matmuls.sort(key=lambda a: any(not isinstance(f, sp.MatrixExpr) for f in a.args))
            if matmuls:
                first = matmuls[0]
                rest = [a for a in expr.args if a is not first]
                return [f"{target} = {self._product(first, out)}"] + [
                    self.update(target, "+=", self.code(a)) for a in rest
                ]
        if isinstance(expr, sp.MatMul):
            return [f"{target} = {self._product(expr, out)}"]
        if isinstance(expr, BatchSum) and out is not None:
            return [f"{target} = {self._batch_sum(expr, out)}"]
        if isinstance(expr, ImageOp) and expr.fills and out is not None:
            return [f"{target} = {self.printer.image_call(expr, out)}"]
        ops = [a for a in sp.Add.make_args(expr) if isinstance(a, ImageOp) and a.fills]
        if isinstance(expr, sp.Add) and ops and out is not None:
            rest = [a for a in expr.args if a is not ops[0]]
            return [f"{target} = {self.printer.image_call(ops[0], out)}"] + [
                self.update(target, "+=", self.code(a)) for a in rest
            ]
        if isinstance(expr, sp.Symbol) and self.per_sample(expr):
            self.printer.used.add("_copy")
            return [f"{target} = _copy({self.code(expr)}, {out or 'None'})"]
        if isinstance(expr, sp.Mul):
            first = next((f for f in expr.args if self.fresh(f)), None)
            if first is not None:
                lines = [f"{target} = {self._new(first, out)}"]
                scalar = sp.Mul(*[f for f in expr.args if not f.free_symbols - {SCALE}])
                arrays = [f for f in expr.args if f is not first and f.free_symbols - {SCALE}]
                for factor in [*arrays, *([scalar] if scalar != 1 else [])]:
                    lines += self.multiply_lines(target, factor)
                return lines
        return self.chained(target, "=", expr) or [f"{target} = {self._new(expr, out)}"]

    def multiplied(self, target: str, factor: Expr) -> str:
        """target times one factor, in place."""
        return self.update(target, "*=", self.factor_code(factor))

    def multiply_lines(self, target: str, factor: Expr) -> list[str]:
        """target times one factor, in place: a long elementwise factor one operation at a
        time (chained)."""
        if _indicator(factor) is None and (lines := self.chained(target, "*=", factor)):
            return lines
        return [self.multiplied(target, factor)]

    def chained(self, target: str, op: str, expr: Expr) -> list[str] | None:
        """target op expr, an elementwise expression of several whole-array operations,
        evaluated one ufunc call at a time into a few temporaries (symbp.backends.numpy.
        inplace: an array per operation costs more than the arithmetic); None to print it
        as one expression."""
        return chain_lines(target, op, expr, self.code, self.per_sample)

    def factor_code(self, factor: Expr) -> str:
        """A factor multiplied in: a 0/1 mask as its condition (a boolean array)."""
        mask = _indicator(factor)
        return self.code(mask if mask is not None else factor)

    def _new(self, expr: Expr, out: str | None) -> str:
        """expr as code; a difference or sum of two arrays is written into `out`."""
        terms = sp.Add.make_args(expr)
        if out is None or len(terms) != 2 or not self.fresh(expr) or expr.has(sp.exp):
            return self.code(expr)
        signs = [t.could_extract_minus_sign() for t in terms]
        if all(signs):
            return self.code(expr)
        first, second = terms if not signs[0] else terms[::-1]
        if second.could_extract_minus_sign():
            return f"np.subtract({self.code(first)}, {self.code(-second)}, out={out})"
        return f"np.add({self.code(first)}, {self.code(second)}, out={out})"

    def _product(self, mat: sp.MatMul, out: str | None) -> str:
        """A matrix product (or a sum over samples) as code; into `out` when there is one."""
        text = self.code(mat)
        scalars = [a for a in mat.args if not isinstance(a, sp.MatrixExpr)]
        mats = [a for a in mat.args if isinstance(a, sp.MatrixExpr)]
        if out is None or scalars or len(mats) != 2:
            return text
        left, right = mats
        if isinstance(right, sp.OneMatrix) and right.shape[1] == 1:
            if isinstance(left, sp.Transpose) and self._ones_fit(left.arg):
                self.uses_ones = True
                return f"np.matmul(ones, {self.code(left.arg)}, out={out})"
            if isinstance(left, sp.Transpose):
                return f"np.sum({self.code(left.arg)}, axis=0, out={out})"
            return f"{self.printer.attr(left)}.sum(axis=1, keepdims=True, out={out})"
        if any(isinstance(m, sp.OneMatrix) for m in mats):
            return text
        return f"np.matmul({self.code(left)}, {self.code(right)}, out={out})"

    def _batch_sum(self, expr: BatchSum, out: str) -> str:
        """A sum over the samples into `out`; in row layout, of an array, as a product
        with a ones-vector (NumPy's column sums are 2-3x slower than BLAS's)."""
        arg = expr.args[0]
        if self.printer.row_layout:
            if isinstance(arg, sp.Symbol) and self._ones_fit(arg):
                self.uses_ones = True
                return f"np.matmul(ones, {self.code(arg)}, out={out})"
            return f"np.sum({self.code(arg)}, axis=0, out={out})"
        return f"np.sum({self.code(arg)}, axis=1, keepdims=True, out={out})"

    def _ones_fit(self, arg: sp.Basic) -> bool:
        """Whether `ones` (one entry per stored row: batch*T in a sequence network) fits
        arg's rows: not an array of one row per sample after a flatten of a sequence."""
        info = self.info(arg)
        positions = self.p.d.arch.positions
        return not positions or positions == 1 or info is None or info.rows > 1

    uses_ones: bool = False


def _broadcast(mat: sp.MatMul) -> bool:
    return any(isinstance(a, sp.OneMatrix) for a in mat.args)


def _shape(tensor: Tensor) -> str:
    """ "784" for a vector, "8x28x28" for an image, as the layer comments show them."""
    return "x".join(map(str, tensor.shape))


# --- the forward pass ------------------------------------------------------------------


def _is_sigmoid_of(a: sp.Expr, z: sp.Symbol) -> bool:
    """Whether a is 1/(1 + exp(-z)), read off its tree (building that expression to compare
    costs more than the test)."""
    return isinstance(a, sp.Pow) and a.exp == -1 and sigmoid_arg(a) == z


def forward_lines(
    e: Emitter,
    ws: bool,
    lse: str = "",
    last: bool = True,
    evaluation: bool = False,
    frees: bool = False,
) -> list[str]:
    """The forward pass: per node its statements, then its activation (`last`: the output
    layer's too). With ws, new arrays go to workspace buffers; with `evaluation`, the
    evaluation mode's statements (batch norm with its running statistics); with `frees`, a
    z that no later statement and no backward pass reads is deleted after its activation."""
    lines: list[str] = []
    nodes = e.p.net.nodes
    if reads_batch_size(e.p):
        rows = f"A0.shape[{0 if e.p.d.arch.layout == 'row' else 1}]"
        positions = e.p.d.arch.positions
        count = f"{rows} // {positions}" if positions else rows  # n*T rows: n samples
        lines.append(f"count = {count}  # batch size")
    stmts = e.p.forward_eval if evaluation else e.p.forward
    for k, s in enumerate(stmts):
        if s.op == "#":
            lines.append(f"# {s.comment}")
            continue
        nd = nodes[s.layer - 1]
        l, n = nd.node.index, nd.node.z.row_size
        a_code, overwrites, helper = _activation(e, nd)
        if s.activation:
            if nd.is_output and not last:
                continue
            target, code = array_name(Role.ACTIVATION, l), a_code
            if ws and not overwrites and helper:
                extra = ", lse=True" if lse and nd.is_output else ""
                z = e.code(array(Role.PRE_ACTIVATION, l))
                buffer = e.ws.per_sample(target, n, nd.node.z.rows)
                code = f"{helper}({z}, out={buffer}{extra})"
                target = f"{target}, {lse}" if extra else target
            chained = (
                None
                if overwrites or helper or nd.act is None
                else e.chained(target, "=", _stable(nd))
            )
            lines += chained or [f"{target} = {code}"]
            z = array_name(Role.PRE_ACTIVATION, l)
            later = set().union(*(t.reads() for t in stmts[k + 1 :]))
            if frees and not nd.is_output and l not in e.p.keep_z and z not in later:
                lines.append(f"del {z}")
            continue
        target = sym(s.target)
        name, info = e.code(target), e.info(target)
        if s.target == array_name(Role.PRE_ACTIVATION, l):
            key = (
                array_name(Role.ACTIVATION, l) if overwrites else array_name(Role.PRE_ACTIVATION, l)
            )
            out = e.ws.per_sample(key, n, nd.node.z.rows) if ws else None
            lines += e.assign(name, s.expr, out)
        elif info is not None and info.kind == Kind.SAMPLES:
            out = e.ws.per_sample(name, info.units, info.rows) if ws else None
            lines += e.assign(name, s.expr, out)
        else:
            lines.append(f"{name} = {e.code(s.expr)}")
    return lines


def _activation(e: Emitter, nd: NodeDerivation) -> tuple[str, bool, str]:
    """(a = f(z) as code, whether it overwrites z, the helper that can take out=), worked out
    once per layer (each forward pass prints it)."""
    l = nd.node.index
    if l not in e.activations:
        e.activations[l] = _activation_code(e, nd)
    return e.activations[l]


def _stable(nd: NodeDerivation) -> sp.Expr:
    """a = f(z) in the form the printer evaluates stably, worked out once per activation
    (in x) and put at the layer's z."""
    if nd.act is None or _stable_in_x(nd.act.f) == nd.act.f:
        return nd.a  # nothing to rewrite (rebuilding a SymPy expression costs ~1 ms a layer)
    return through_sigmoid(nd.a)


@functools.lru_cache(maxsize=256)
def _stable_in_x(f: sp.Expr) -> sp.Expr:
    return through_sigmoid(f)


def _activation_code(e: Emitter, nd: NodeDerivation) -> tuple[str, bool, str]:
    l = nd.node.index
    z = array(Role.PRE_ACTIVATION, l)
    z_name = e.code(z)
    if nd.act is None:
        return e.printer.call("_softmax", z_name), False, "_softmax"
    code = e.array_code(_stable(nd), z_name)
    helper = "_sigmoid" if _is_sigmoid_of(nd.a, z) else ""
    if z_name != "Z":
        return code, False, helper
    if nd.a == z:
        return code, True, helper
    if nd.a == sp.tanh(z):
        return "np.tanh(Z, out=Z)", True, helper
    if isinstance(nd.a, sp.Piecewise) and _rectified(nd.a) == z:
        return "np.maximum(Z, 0, out=Z)", True, helper
    if helper:
        e.printer.used.add("_sigmoid")
        return "_sigmoid(Z, out=Z)", True, helper
    return code, False, helper


def print_backward(
    e: Emitter, stmts: list[Stmt], ws: bool, frees: tuple[Family, ...] = ()
) -> list[str]:
    """The statements as lines; with ws, new arrays go to their buffers, and the error
    terms are deleted after their last read (as are the arrays of the families `frees`)."""
    lines: list[str] = []
    families = (Family.BACKWARD,) if ws else ()
    dying_at = dying(e.p, stmts, (*families, *frees)) if families or frees else {}
    for k, s in enumerate(stmts):
        if s.comment:
            lines.append(f"# {s.comment}")
        out = _buffer(e, s) if ws else None
        if s.op == "#":
            continue
        if s.op == "=":
            if e.constant(s.expr) and s.param is None:
                like = s.like or array_name(Role.ACTIVATION, s.layer)
                lines.append(f"{s.target} = {e.full_like(like, e.code(s.expr))}")
            else:
                lines += e.assign(s.target, s.expr, out)
        else:
            if s.op == "*=":
                lines += e.multiply_lines(s.target, s.expr)
            else:
                chained = e.chained(s.target, s.op, s.expr) if s.op == "+=" else None
                lines += chained or [e.update(s.target, s.op, e.code(s.expr))]
        lines += [f"del {name}" for name in dying_at.get(k, ())]
    return lines


def _buffer(e: Emitter, s: Stmt) -> str | None:
    if s.out is None:
        return None
    if s.param is not None:
        if s.param.stored_flat:
            return e.ws.per_unit(s.out, s.param.size)
        if len(s.param.shape) != 1:
            return e.ws.shaped(s.out, s.param.shape)
        return e.ws.per_unit(s.out, s.param.shape[0])
    info = e.p.net.bindings.table[s.target]
    return e.ws.per_sample(s.out, info.units, info.rows)


def block_lines(e: Emitter, stmts: list[Stmt | Loop], indent: str = "") -> list[str]:
    """Statements and loops as lines, a loop's body indented under its `for`; a statement
    that writes one step of an array goes through the runtime's _put_step."""
    lines: list[str] = []
    for s in stmts:
        if isinstance(s, Loop):
            bounds = [e.code(s.start), e.code(s.stop)] + ([str(s.step)] if s.step != 1 else [])
            lines.append(f"{indent}for {s.index.name} in range({', '.join(bounds)}):")
            lines += block_lines(e, s.body, indent + "    ")
        elif s.op == "#":
            lines.append(f"{indent}# {s.comment}")
        elif s.step is not None:
            axis, index = s.step
            args = (s.target, str(s.shape), str(axis), e.code(index), e.code(s.expr))
            lines.append(f"{indent}{e.put_step(*args)}")
        elif s.op in ("+=", "*="):
            lines.append(f"{indent}{e.update(s.target, s.op, e.code(s.expr))}")
        else:
            lines.append(f"{indent}{s.target} {s.op} {e.code(s.expr)}")
    return lines


# --- forward mode and the R-operator ---------------------------------------------------


def tangent_lines(e: Emitter) -> list[str]:
    """out["name"] = value for each tangent, bound to a local name when a later line reads it."""
    lines = []
    for s in e.p.tangent:
        value = e.array_code(s.expr, s.like)
        if not s.store:  # a shared subexpression
            lines.append(f"{s.target} = {value}")
            continue
        bind = f"{s.target} = " if s.bind else ""
        lines.append(f'{s.store}["{s.target}"] = {bind}{value}')
    return lines


def r_backward_lines(e: Emitter) -> list[str]:
    """R{G} (the sum over the consumers), R{delta}, each R{gradient} into H."""
    lines: list[str] = []
    for s in e.p.r_backward:
        if s.store:
            assert s.param is not None
            value = e.shaped(e.code(s.expr), s.param)
            target = f'{s.store}["{s.target}"]'
            lines.append(e.update(target, s.op, value) if s.op != "=" else f"{target} = {value}")
        elif s.parts[1:]:
            lines.append(f"{s.target} = " + " + ".join(f"({e.code(p)})" for p in s.parts))
        elif s.parts:
            lines.append(f"{s.target} = {e.code(s.parts[0])}")
        else:
            lines.append(f"{s.target} = {e.array_code(s.expr, s.like)}")
    return lines


_CONTAINERS = {
    Family.FORWARD: "cache",
    Family.BACKWARD: "deltas",
    Family.TANGENT: "tan",
    Family.STATE: "state",
}


def state_lines(e: Emitter) -> list[str]:
    """new_state["running_mean3"] = ... for each batch norm's running statistics."""
    return [f'{s.store}["{s.target}"] = {e.code(s.expr)}' for s in e.p.state_update]


def load_lines(
    e: Emitter, stmts: Iterable[Stmt], direction: str, families: tuple[Family, ...] = ()
) -> list[str]:
    """`name = container["key"]` for every array the statements read and do not write:
    parameters from params, directions from `direction`, the forward pass's arrays from
    cache, the backward pass's from deltas, tangents from tan."""
    lines = []
    for load in loads(e.p, stmts):
        if families and load.family not in families:
            continue
        if load.family == Family.PARAMETER:
            source = "params"
        elif load.family == Family.DIRECTION:
            source = direction
        else:
            source = _CONTAINERS[load.family]
        key = load.key if load.family != Family.FORWARD else e.code(sym(load.key))
        value = f'{source}["{key}"]'
        lines.append(f"{e.code(sym(load.target))} = {e.flat(value) if load.flat else value}")
    return lines


# --- the module template's context ----------------------------------------------------


def _init_lines(e: Emitter) -> list[str]:
    """init_params: He (rectifiers) or Glorot normal weights; biases and shifts 0, scales 1;
    embedding tables and learned positions N(0, 0.02^2), as GPT-2. A tied weight is made
    once, by the layer that owns it."""
    row = e.p.d.arch.layout == "row"
    lines = []
    for nd in e.p.net.nodes:
        activation = nd.node.layer.activation
        for p in nd.node.params:
            if p.layer != nd.node.index:
                continue
            shape = p.shape if len(p.shape) != 1 else ((p.shape[0],) if row else (p.shape[0], 1))
            if p.init == "normal":
                lines.append(
                    f'params["{p.key}"] = (rng.standard_normal({shape}) * 0.02).astype(DTYPE)'
                )
            elif p.init == "recurrent":  # U(-1/sqrt(h), 1/sqrt(h)), as PyTorch
                bound = f"1 / np.sqrt({nd.node.z.shape[-1]})"
                lines.append(
                    f'params["{p.key}"] = rng.uniform(-{bound}, {bound}, {shape}).astype(DTYPE)'
                )
            elif p.init == "fan":
                # fan in and out: a kernel (F, C, kh, kw) reads C kh kw entries per output
                area = math.prod(p.shape[2:])
                n_out, n_in = p.shape[0] * area, p.shape[1] * area
                he = activation in HE_INIT
                std = f"np.sqrt(2 / {n_in})" if he else f"np.sqrt(2 / ({n_in} + {n_out}))"
                lines.append(f"# layer {nd.node.index} ({activation}): {'He' if he else 'Glorot'}")
                lines.append(
                    f'params["{p.key}"] = (rng.standard_normal({shape}) * {std}).astype(DTYPE)'
                )
            else:
                fill = "np.ones" if p.init == "ones" else "np.zeros"
                lines.append(f'params["{p.key}"] = {fill}({shape}, dtype=DTYPE)')
    return lines


def module_context(p: Program) -> dict[str, Any]:
    """Everything the module template needs, as plain strings and lists of lines; the
    program's equation numbers let the comments cite the document's equations."""
    d, net, eq = p.d, p.net, p.eq
    e = Emitter(p)
    arch = d.arch
    row = arch.layout == "row"
    loss, lse, common = loss_reuse(p)
    reuse = {"lse": lse, "common": e.code(common) if common is not None else ""}
    reuse["loss"] = e.array_code(loss, "Y")
    plain_loss = e.array_code(loss_expr(p), "Y")
    forward = forward_lines(e, ws=False)
    forward_loss = forward_lines(e, ws=False, last=not d.output.loss_from_logits)
    forward_ws = forward_lines(e, ws=True, lse=lse)
    backward_ws = print_backward(e, p.backward_fused, ws=True)
    loss_pre = []
    if common is not None:
        # The output error's first array (A - Y) is computed before the loss, which reads it.
        loss_pre = [backward_ws.pop(1)]
    eq_loss = (eq or {}).get("eq:loss")
    backward_plain = print_backward(e, p.backward_plain, ws=False)
    written = {s.target for s in p.backward_plain if s.op != "#"}
    grads = [(q.key, e.shaped(gradient_name(q.key), q)) for q in net.graph.parameters]
    state = _state_context(e)
    tangent = tangent_lines(e)
    context = {
        "name": arch.name,
        "layer_sizes": arch.layer_sizes,
        "layer_shapes": arch.layer_shapes,
        "sizes_text": _sizes_text(arch.layer_sizes),
        "kinds": [nd.node.kind for nd in net.nodes],
        "layout": arch.layout,
        "dtype": arch.dtype,
        "reduction": arch.reduction,
        "loss_kind": arch.loss.kind,
        "loss_text": arch.loss.kind if arch.loss.kind != "expr" else f"expr: {arch.loss.expr}",
        "l2": repr(float(arch.l2)) if arch.l2 else "",
        "init_lines": _init_lines(e),
        "param_keys": [p.key for p in net.graph.parameters],
        "param_loads": [(p.key, p.stored_flat) for p in net.graph.parameters],
        "weights": [p.key for p in net.graph.parameters if p.decayed],
        "forward": forward,
        "forward_loss": forward_loss,
        "forward_ws": forward_ws,
        "cache": [e.code(sym(name)) for name in cache_names(p)],
        "loss_plain": plain_loss,
        "loss_ws": reuse,
        "loss_pre": loss_pre,
        "eq_loss": f", eq. ({eq_loss})" if eq_loss else "",
        "loss_from_logits": d.output.loss_from_logits,
        "backward_ws": backward_ws,
        "backward_plain": backward_plain,
        "backward_loads": load_lines(e, p.backward_plain, "vectors"),
        "deltas": sorted(written),
        "tangent": tangent,
        "tangent_loads": load_lines(e, p.tangent, "tangents"),
        "r_backward": r_backward_lines(e),
        "r_loads": load_lines(e, p.r_backward, "vectors"),
        "grads": grads,
        "n_layers": len(net.nodes),
        "output": net.nodes[-1].node.index,
        "sample_axis": 0 if row else 1,
        "unit_axis": 1 if row else 0,
        "helpers": sorted(e.printer.used),
        "workspace": dict(e.ws.shapes),
        "uses_ones": e.uses_ones,
        "images": arch.images,
        **state,
        # an image input may come as (n, C, H, W): each sample is read as its C*H*W entries
        "input_line": "np.asarray(X, dtype=DTYPE)"
        + (".reshape(np.shape(X)[0], -1)" if arch.input_shape else ""),
        "targets_line": "np.asarray(Y, dtype=DTYPE)",
        "yhat": "{}",
        "positions": arch.positions,
        # the samples of a batch, and its stored rows (batch*T for a sequence network)
        "samples": f"Y.shape[{0 if row else 1}]",
        "rows": f"Y.shape[{0 if row else 1}]",
    }
    if e.printer.cells:  # the recurrent cells' step functions, printed from SymPy
        printer = NumPyPrinter(row)
        context["cells"] = cells_source(e.printer.cells, printer)
        context["helpers"] = sorted({*context["helpers"], *printer.used})
    io = sequence_io(p)
    if io is not None:  # a sequence network: (n, T, ...) in and out, n*T rows inside
        context["input_line"] = (
            f"_token_ids(X, {io.shape_in}, {io.vocab})"
            if io.vocab
            else f"_sequence_rows(X, {io.shape_in})"
        )
        context["targets_line"] = f"_sequence_targets(Y, {io.shape_out}, ids={io.ids})"
        context["yhat"] = f"_sequences({{}}, {io.shape_out})"
        if net.graph.output.z.rows > 1:
            context["samples"] = "Y.shape[0] // POSITIONS"
        else:
            context["rows"] = "Y.shape[0] * POSITIONS"
        reader = "_token_ids" if io.vocab else "_sequence_rows"
        context["helpers"] += [reader, "_sequence_targets", "_sequences"]
    return context


def _state_context(e: Emitter) -> dict[str, Any]:
    """Batch norm's state: what init_state makes, the evaluation mode's forward pass, and the
    update of the running statistics after a training step."""
    p = e.p
    row = p.d.arch.layout == "row"
    init = []
    for nd in p.net.nodes:
        for symbol, _ in nd.state_updates:
            gamma = nd.node.params[0]  # the state is shaped like the layer's gamma
            shape = gamma.shape if row or len(gamma.shape) != 1 else (*gamma.shape, 1)
            fill = "np.zeros" if symbol.role == Role.RUNNING_MEAN else "np.ones"
            init.append((symbol.name, repr(tuple(shape)), fill))
    forward_eval = forward_lines(e, ws=False, evaluation=True) if p.forward_eval else []
    state_reads = [*p.forward_eval, *p.state_update]
    return {
        "state_init": init,
        "forward_eval": forward_eval,
        "state_loads": load_lines(e, state_reads, "vectors", (Family.STATE,)),
        "state_update": state_lines(e),
        "state_loads_update": load_lines(e, p.state_update, "vectors", (Family.STATE,)),
        "eval_loss_loads": load_lines(e, [Stmt("", loss_expr(p))], "vectors", (Family.FORWARD,)),
    }


def _sizes_text(sizes: tuple[int, ...]) -> str:
    """'784-512-10', or for a deep network '1-1-1-...-1 (1001 sizes)': one short line."""
    if len(sizes) <= 12:
        return "-".join(map(str, sizes))
    head, tail = "-".join(map(str, sizes[:3])), "-".join(map(str, sizes[-2:]))
    return f"{head}-...-{tail} ({len(sizes)} sizes)"
