"""The network's equations -> statements -> buffers -> NumPy lines, for every function of the
generated module.

Statements are (target, expression, operation) built from the per-node equations of
symbp.derivation.network; which array a symbol stands for comes from the bindings, never from its
name. A liveness pass over the backward statements places the error terms in workspace buffers (an
array's buffer is free again after its last read), and only then is anything printed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from symbp.backends.numpy.printer import NumPyPrinter, _indicator, _rectified
from symbp.derivation.derive import Derivation, at_layer
from symbp.derivation.network import Network
from symbp.derivation.nodes import NodeDerivation
from symbp.errors import DerivationError
from symbp.ir.bindings import Expr, Family, Kind
from symbp.ir.graph import Tensor
from symbp.ir.image_ops import ImageOp
from symbp.ir.reductions import BatchSum, LogSumExp, UnitSum
from symbp.symbolic.cse import common_subexpressions
from symbp.symbolic.output import SCALE
from symbp.symbolic.stable import through_sigmoid

HE_INIT = ("relu", "leaky_relu", "elu")


@dataclass
class Stmt:
    """target op expr: "=" makes a new array, "+=" and "*=" update it in place."""

    target: str
    expr: Expr
    op: str = "="
    comment: str = ""
    layer: int = 0  # the layer whose array the target is
    param: Tensor | None = None  # set when the target is this parameter's gradient
    out: str | None = None  # the workspace buffer key of a new array, set by place()

    def reads(self) -> set[str]:
        names = {getattr(s, "name", None) for s in _symbols(self.expr)}
        return {n for n in names if isinstance(n, str)} | (
            {self.target} if self.op != "=" else set()
        )


def _symbols(expr: Expr) -> set:
    if not isinstance(expr, sp.Basic):
        return set()
    return set(expr.free_symbols) | set(expr.atoms(sp.MatrixSymbol))


class Workspace:
    """The arrays make_workspace(batch) preallocates: key -> shape (code text), in use order."""

    def __init__(self, row: bool) -> None:
        self.row = row
        self.shapes: dict[str, str] = {}

    def per_sample(self, key: str, units: int) -> str:
        return self._add(key, f"(batch, {units})" if self.row else f"({units}, batch)")

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
    """Prints the statements of one network for one layout."""

    d: Derivation
    net: Network
    eq: dict[str, int] = field(default_factory=dict)  # document label -> equation number
    printer: NumPyPrinter = field(init=False)
    ws: Workspace = field(init=False)
    keep_z: set[int] = field(init=False)
    activations: dict[int, tuple[str, bool, str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        row = self.d.arch.layout == "row"
        self.keep_z = {nd.node.index for nd in self.net.nodes if nd.stores_z}
        if self.d.output.loss_from_logits:
            self.keep_z.add(self.net.nodes[-1].node.index)
        names = {"c": "scale", "Y": "Y", "lambda": repr(float(self.d.arch.l2))}
        names.update({f"Z{nd.node.index}": "Z" for nd in self.net.nodes if self._z_reused(nd)})
        self.printer = NumPyPrinter(row, names)
        self.ws = Workspace(row)

    def cite(self, kind: str, l: int) -> str:
        """ "eq. (N)" for the document's equation of this kind at layer l, or ""."""
        number = self.eq.get(f"eq:{kind}-{l}")
        return f"eq. ({number})" if number else ""

    # --- what a symbol is -------------------------------------------------------------

    def _z_reused(self, nd: NodeDerivation) -> bool:
        """z lives in the one reused name Z when nothing after its layer reads it."""
        return nd.node.index not in self.keep_z and nd.node.kind == "dense"

    def info(self, symbol: Any):
        return self.net.bindings.info(symbol)

    def per_sample(self, expr: Expr) -> bool:
        """Whether printing expr gives a full per-sample array (reductions excluded)."""
        if isinstance(expr, sp.MatrixExpr):
            return True
        return self.net.bindings.per_sample(expr)

    def constant(self, expr: Expr) -> bool:
        """True when expr reads no per-sample array at all (a constant error term, say)."""
        if isinstance(expr, sp.MatrixExpr):
            return False
        return not any(
            (i := self.info(s)) is not None and i.kind == Kind.SAMPLES for s in _symbols(expr)
        )

    def fresh(self, expr: Expr) -> bool:
        """True when printing expr makes a new full-shape array (safe to update in place)."""
        if isinstance(expr, sp.Symbol):
            return False
        is_call = isinstance(expr, (sp.Add, sp.Function)) or (
            isinstance(expr, sp.Pow) and expr.exp > 0
        )
        return is_call and self.per_sample(expr)

    def code(self, expr: Expr) -> str:
        return self.printer.doprint(expr)

    def array_code(self, expr: Expr, like: str) -> str:
        """expr as code, shaped like the array `like` when it is a constant."""
        text = self.code(expr)
        return f"np.full_like({like}, {text})" if self.constant(expr) else text

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
                    f"{target} += {self.code(a)}" for a in rest
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
                f"{target} += {self.code(a)}" for a in rest
            ]
        if isinstance(expr, sp.Symbol) and self.per_sample(expr):
            self.printer.used.add("_copy")
            return [f"{target} = _copy({self.code(expr)}, {out or 'None'})"]
        if isinstance(expr, sp.Mul):
            first = next((f for f in expr.args if self.fresh(f)), None)
            if first is not None:
                lines = [f"{target} = {_bare(self._new(first, out))}"]
                scalar = sp.Mul(*[f for f in expr.args if not f.free_symbols - {SCALE}])
                arrays = [f for f in expr.args if f is not first and f.free_symbols - {SCALE}]
                for factor in [*arrays, *([scalar] if scalar != 1 else [])]:
                    mask = _indicator(factor)
                    lines.append(f"{target} *= {self.code(mask if mask is not None else factor)}")
                return lines
        return [f"{target} = {self._new(expr, out)}"]

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
            if isinstance(left, sp.Transpose):
                self.uses_ones = True
                return f"np.matmul(ones, {self.code(left.arg)}, out={out})"
            return f"{self.printer.attr(left)}.sum(axis=1, keepdims=True, out={out})"
        if any(isinstance(m, sp.OneMatrix) for m in mats):
            return text
        return f"np.matmul({self.code(left)}, {self.code(right)}, out={out})"

    def _batch_sum(self, expr: BatchSum, out: str) -> str:
        """A sum over the samples into `out`; in row layout, of an array, as a product
        with a ones-vector (NumPy's column sums are 2-3x slower than BLAS's)."""
        arg = expr.args[0]
        if self.printer.row_layout:
            if isinstance(arg, sp.Symbol):
                self.uses_ones = True
                return f"np.matmul(ones, {self.code(arg)}, out={out})"
            return f"np.sum({self.code(arg)}, axis=0, out={out})"
        return f"np.sum({self.code(arg)}, axis=1, keepdims=True, out={out})"

    uses_ones: bool = False


def _broadcast(mat: sp.MatMul) -> bool:
    return any(isinstance(a, sp.OneMatrix) for a in mat.args)


def _shape(tensor: Tensor) -> str:
    """ "784" for a vector, "8x28x28" for an image, as the layer comments show them."""
    return "x".join(map(str, tensor.shape))


def _shaped(code: str, param: Tensor) -> str:
    """A gradient as the caller's parameter is shaped (one stored flat is reshaped back)."""
    return f"np.reshape({code}, {param.shape})" if param.stored_flat else code


def _bare(text: str) -> str:
    """Drop one pair of parentheses enclosing the whole text: "(a - b)" but not "(a)*(b)"."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and i < len(text) - 1:
            return text
    return text[1:-1]


# --- the forward pass ------------------------------------------------------------------


def _is_sigmoid_of(a: sp.Expr, z: sp.Symbol) -> bool:
    return bool(a == 1 / (1 + sp.exp(-z)))


def forward_lines(e: Emitter, ws: bool, lse: str = "", last: bool = True) -> list[str]:
    """The forward pass: per node its statements, then its activation (`last`: the output
    layer's too). With ws, new arrays go to workspace buffers."""
    lines: list[str] = []
    if any(nd.node.kind == "batchnorm" for nd in e.net.nodes):
        lines.append(f"count = A0.shape[{0 if e.d.arch.layout == 'row' else 1}]  # batch size")
    for nd in e.net.nodes:
        l, n = nd.node.index, nd.node.z.size
        cites = [c for c in (e.cite("z", l), e.cite("a", l)) if c]
        sizes = f"{_shape(nd.node.inputs[0])} -> {_shape(nd.node.z)}"
        kind = f"{nd.node.kind}, " if nd.node.kind != "dense" else ""
        where = f": {', '.join(cites)}" if cites else ""
        lines.append(f"# layer {l}, {sizes} ({kind}{nd.node.layer.activation}){where}")
        a_code, overwrites, helper = _activation(e, nd)
        for target, value in nd.forward:
            name = e.code(target)
            info = e.info(target)
            if target == sp.Symbol(f"Z{l}", real=True):
                key = f"A{l}" if overwrites else f"Z{l}"
                out = e.ws.per_sample(key, n) if ws else None
                lines += e.assign(name, value, out)
            elif info is not None and info.kind == Kind.SAMPLES:
                lines += e.assign(name, value, e.ws.per_sample(name, info.units) if ws else None)
            else:
                lines.append(f"{name} = {e.code(value)}")
        if nd.is_output and not last:
            continue
        target, code = f"A{l}", a_code
        if ws and not overwrites and helper:
            extra = ", lse=True" if lse and nd.is_output else ""
            code = (
                f"{helper}({e.code(sp.Symbol(f'Z{l}'))}, out={e.ws.per_sample(f'A{l}', n)}{extra})"
            )
            target = f"A{l}, {lse}" if extra else target
        lines.append(f"{target} = {code}")
    return lines


def _activation(e: Emitter, nd: NodeDerivation) -> tuple[str, bool, str]:
    """(a = f(z) as code, whether it overwrites z, the helper that can take out=), worked out
    once per layer (each forward pass prints it)."""
    l = nd.node.index
    if l not in e.activations:
        e.activations[l] = _activation_code(e, nd)
    return e.activations[l]


def _activation_code(e: Emitter, nd: NodeDerivation) -> tuple[str, bool, str]:
    l = nd.node.index
    z = sp.Symbol(f"Z{l}", real=True)
    z_name = e.code(z)
    if nd.act is None:
        e.printer.used.add("_softmax")
        return f"_softmax({z_name})", False, "_softmax"
    code = e.array_code(through_sigmoid(nd.a), z_name)
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


def cache_names(e: Emitter) -> list[str]:
    """What _forward returns for the backward passes: every a, the kept z, the statistics."""
    names = ["A0"]
    for nd in e.net.nodes:
        l = nd.node.index
        names.append(f"A{l}")
        if l in e.keep_z:
            names.append(f"Z{l}")
        names += [e.code(t) for t, _ in nd.forward if t != sp.Symbol(f"Z{l}", real=True)]
    if any(nd.node.kind == "batchnorm" for nd in e.net.nodes):
        names.append("count")
    return names


# --- the loss ------------------------------------------------------------------------


def loss_expr(e: Emitter) -> sp.Expr:
    return through_sigmoid(at_layer(e.d.output.loss_array, len(e.net.nodes)))


def loss_reuse(e: Emitter) -> dict[str, str]:
    """The loss as loss_and_grads computes it, reading what the step computes anyway:
    log-sum-exp from the output softmax (lse), and the first array of the output error
    when the loss contains it (A - Y for mse), computed once into delta's buffer."""
    output = e.net.nodes[-1]
    L = output.node.index
    loss = loss_expr(e)
    reuse = {"lse": "", "common": ""}
    z = sp.Symbol(f"Z{L}", real=True)
    if output.act is None:
        sums = {u: sp.Symbol(f"lse{L}") for u in loss.atoms(LogSumExp) if u.args[0] == z}
        if sums:
            loss = loss.xreplace(sums)
            reuse["lse"] = f"lse{L}"
    delta = through_sigmoid(output.delta)
    first = next((f for f in sp.Mul.make_args(delta) if e.fresh(f)), None)
    if isinstance(delta, sp.Mul) and isinstance(first, sp.Add) and loss.has(first):
        reuse["common"] = e.code(first)
        loss = loss.xreplace({first: sp.Symbol(f"delta{L}", real=True)})
    return {**reuse, "loss": e.array_code(loss, "Y")}


# --- the backward pass -----------------------------------------------------------------


def backward_statements(e: Emitter, fused: bool) -> list[Stmt]:
    """Reverse mode over the graph. A tensor's error is the sum of what its consumers send
    back, accumulated once its first consumer has been reached; with `fused`, it is
    accumulated straight into delta's array and f' multiplied in place (loss_and_grads),
    else kept as G<l> beside delta<l> (the R-operator reads both)."""
    pending: dict[str, list[Expr]] = {}
    out: list[Stmt] = []
    for nd in reversed(e.net.nodes):
        l = nd.node.index
        delta = through_sigmoid(nd.delta)
        out.append(Stmt("", sp.S.Zero, "#", comment=_block_comment(e, nd, fused), layer=l))
        if not nd.is_output:
            # Every consumer of a^(l) has a higher index: what they sent back is complete.
            target = f"delta{l}" if fused else f"G{l}"
            out += _accumulate(e, target, pending.pop(nd.node.a.key), l)
        if nd.is_output or not fused:
            out.append(Stmt(f"delta{l}", delta, layer=l))
        else:
            g = sp.Symbol(f"G{l}", real=True)
            factors = delta.xreplace({g: sp.S.One})
            for factor in sp.Mul.make_args(factors) if factors != 1 else ():
                out.append(Stmt(f"delta{l}", factor, "*=", layer=l))
        if fused:
            for param, grad in nd.grads:
                out.append(Stmt(f"d{param.key}", grad, layer=l, param=param))
        for tensor, contribution in nd.backs:
            pending.setdefault(tensor.key, []).append(contribution)
    return out


def shared_subexpressions(e: Emitter, stmts: list[Stmt]) -> list[Stmt]:
    """Common subexpressions of the backward statements, computed once:
    - a new array's whole expression found inside a later statement (a batch norm's
      BatchSum(G ⊙ xhat) is dgamma, which its error term reads again) is read from that
      array, while it still holds that value;
    - within one statement, sympy.cse: a subexpression that reads arrays and occurs twice
      (a layer norm's gamma ⊙ g) becomes its own statement, bound as an error-term array
      (or a per-sample statistic) of that layer."""
    out: list[Stmt] = []
    output = e.net.nodes[-1].node.index  # its error may be shared with the loss: kept whole
    held: dict[sp.Basic, sp.Symbol] = {}  # expression -> the array that holds its value
    for s in stmts:
        for expr, name in list(held.items()):
            if name.name == s.target:  # overwritten or updated in place from here on
                del held[expr]
        expr = s.expr
        elementwise = isinstance(expr, sp.Expr) and not isinstance(expr, sp.MatrixExpr)
        if s.op == "*=" and elementwise:  # f'(z) multiplied in: tanh(softplus(z)) once
            out += _repeated_calls(e, s)
            continue
        if s.op != "=" or not elementwise or s.layer == output:
            out.append(s)
            continue
        expr = expr.xreplace(held)
        out += _within(e, dataclasses.replace(s, expr=expr))
        named = s.param is not None or e.info(sp.Symbol(s.target)) is not None
        if named and isinstance(s.expr, (BatchSum, UnitSum, sp.Add, sp.Mul)):
            held[s.expr] = sp.Symbol(s.target, real=True)
    return out


def _repeated_calls(e: Emitter, s: Stmt) -> list[Stmt]:
    """s preceded by a statement for each function call it makes twice or more on arrays
    (tanh(softplus(z)) in mish's f', sigmoid(z) in swish's). Only whole calls other than exp,
    and whole reciprocals of sums with an exp (a sigmoid), are shared, so the printer still
    sees the forms it evaluates stably (log(1 + exp(u)), 1/(1 + exp(-u)))."""
    counts: dict[sp.Basic, int] = {}
    for node in sp.preorder_traversal(s.expr):
        call = isinstance(node, sp.Function) and not isinstance(node, (sp.exp, sp.Piecewise))
        sigmoid = isinstance(node, sp.Pow) and node.exp == -1 and node.base.has(sp.exp)
        if call or sigmoid:
            counts[node] = counts.get(node, 0) + 1
    shared = [c for c, k in counts.items() if k > 1 and e.per_sample(c)]
    shared = [c for c in shared if not any(c != o and o.has(c) for o in shared)]  # outermost
    if not shared:
        return [s]
    info = e.info(sp.Symbol(s.target))
    units = info.units if info is not None else 0
    stmts, names = [], {}
    for k, call in enumerate(sorted(shared, key=sp.default_sort_key)):
        name = e.net.bindings.add(
            f"{s.target}_f{k}", Kind.SAMPLES, units, "a shared function call", Family.BACKWARD
        )
        names[call] = name
        stmts.append(Stmt(name.name, call, layer=s.layer))
    return [*stmts, dataclasses.replace(s, expr=s.expr.xreplace(names))]


def _within(e: Emitter, s: Stmt) -> list[Stmt]:
    """s preceded by a statement for each subexpression sympy.cse finds in it twice."""
    names = (sp.Symbol(f"{s.target}_{k}", real=True) for k in itertools.count())
    kinds: dict[sp.Symbol, Kind | None] = {}

    def array(name: sp.Symbol, value: Expr, rest: Callable[[], Expr]) -> bool:
        kinds[name] = _temporary_kind(e, value)  # None: a scalar or a constant, inline
        return kinds[name] is not None

    reduced, kept = common_subexpressions(s.expr, names, array)
    if not kept:
        return [s]
    info = e.info(sp.Symbol(s.target))
    units = info.units if info is not None else 0
    for name, _ in kept:
        kind = kinds[name]
        assert kind is not None
        e.net.bindings.add(name.name, kind, units, "a shared subexpression", Family.BACKWARD)
    for name, value in reversed(kept):  # cse can leave a top-level occurrence whole
        reduced = reduced.xreplace({value: name})
    return [
        *(Stmt(name.name, value, layer=s.layer) for name, value in kept),
        dataclasses.replace(s, expr=reduced),
    ]


def _temporary_kind(e: Emitter, value: Expr) -> Kind | None:
    """What array a shared subexpression is: per sample, one value per sample (a sum over
    the units), or None when it reads no array."""
    if e.per_sample(value):
        return Kind.SAMPLES
    if isinstance(value, UnitSum) or (
        value.has(UnitSum) and not value.has(BatchSum) and not e.constant(value)
    ):
        return Kind.SAMPLE_STAT
    return None


def _block_comment(e: Emitter, nd: NodeDerivation, grads: bool) -> str:
    """ "layer 3 (output): delta (eq. (N)), dW (eq. (M)), db (...)": what the block computes."""
    l = nd.node.index
    parts = [f"delta ({e.cite('delta', l)})" if e.cite("delta", l) else "delta"]
    if grads:
        for param, _ in nd.grads:
            label = f"d{param.symbol}"
            cite = e.cite(label, l)
            parts.append(f"{label} ({cite})" if cite else label)
    return f"layer {l}{' (output)' if nd.is_output else ''}: {', '.join(parts)}"


def _accumulate(e: Emitter, target: str, contributions: list[Expr], layer: int) -> list[Stmt]:
    """target = the first contribution that makes a new array, += the others."""
    ordered = sorted(contributions, key=lambda c: not (isinstance(c, sp.MatrixExpr) or e.fresh(c)))
    comment = f"dL/da{layer}, the sum over its consumers" if ordered[1:] else ""
    stmts = [Stmt(target, ordered[0], comment=comment, layer=layer)]
    return stmts + [Stmt(target, c, "+=", layer=layer) for c in ordered[1:]]


def place(e: Emitter, stmts: list[Stmt]) -> None:
    """Liveness: each new per-sample array of the backward pass gets a workspace buffer of
    its size that no live array holds; a buffer is free again after its array's last read."""
    last_read: dict[str, int] = {}
    for k, s in enumerate(stmts):
        for name in s.reads():
            last_read[name] = k
    held: dict[str, str] = {}  # array -> buffer key
    free: dict[int, list[str]] = {}
    count = 0
    for k, s in enumerate(stmts):
        info = e.net.bindings.table.get(s.target)
        if s.op == "=" and info is not None and info.kind == Kind.SAMPLES and s.target not in held:
            pool = free.setdefault(info.units, [])
            if pool:
                key = pool.pop(0)
            else:
                key = f"back{count}_{info.units}"
                count += 1
            held[s.target] = key
            s.out = key
        elif s.op == "=" and s.param is not None:
            s.out = s.target  # a gradient: its own buffer
        for name in list(held):
            if last_read.get(name, -1) <= k and name != s.target:
                info = e.net.bindings.table[name]
                free.setdefault(info.units, []).append(held.pop(name))


def print_backward(e: Emitter, stmts: list[Stmt], ws: bool) -> list[str]:
    """The statements as lines; with ws, new arrays go to their buffers."""
    lines: list[str] = []
    dying = _dying(e, stmts) if ws else {}
    for k, s in enumerate(stmts):
        if s.comment:
            lines.append(f"# {s.comment}")
        out = _buffer(e, s) if ws else None
        if s.op == "#":
            continue
        if s.op == "=":
            if e.constant(s.expr) and s.param is None:
                lines.append(f"{s.target} = np.full_like(A{s.layer}, {e.code(s.expr)})")
            else:
                lines += e.assign(s.target, s.expr, out)
        elif s.op == "*=":
            mask = _indicator(s.expr)
            lines.append(f"{s.target} *= {e.code(mask if mask is not None else s.expr)}")
        else:
            lines.append(f"{s.target} += {e.code(s.expr)}")
        lines += [f"del {name}" for name in dying.get(k, ())]
    return lines


def _dying(e: Emitter, stmts: list[Stmt]) -> dict[int, list[str]]:
    """Statement index -> the error terms read for the last time there and not written again
    (with a workspace, del frees them). One pass over the statements, so linear in depth."""
    last_read: dict[str, int] = {}
    last_write: dict[str, int] = {}
    for k, s in enumerate(stmts):
        for name in s.reads():
            last_read[name] = k
        if s.target:
            last_write[s.target] = k
    out: dict[int, list[str]] = {}
    for name, last in last_read.items():
        info = e.net.bindings.table.get(name)
        if info is None or info.family != Family.BACKWARD or name == stmts[last].target:
            continue
        if last_write.get(name, -1) <= last:
            out.setdefault(last, []).append(name)
    return {k: sorted(names) for k, names in out.items()}


def _buffer(e: Emitter, s: Stmt) -> str | None:
    if s.out is None:
        return None
    if s.param is not None:
        if s.param.stored_flat:
            return e.ws.per_unit(s.out, s.param.size)
        if len(s.param.shape) != 1:
            return e.ws.shaped(s.out, s.param.shape)
        return e.ws.per_unit(s.out, s.param.shape[0])
    info = e.net.bindings.table[s.target]
    return e.ws.per_sample(s.out, info.units)


# --- forward mode and the R-operator ---------------------------------------------------


def tangent_lines(e: Emitter) -> list[str]:
    """z', a' (and the statistics' tangents) for every node; a name is bound only when a
    later line reads it."""
    steps: list[tuple[str, sp.Basic, str]] = []
    for nd in e.net.nodes:
        l = nd.node.index
        # a constant tangent (a pooling of the input, which does not move) takes the
        # shape of the layer's own output
        steps += [(e.code(t), v, f"A{l}") for t, v in nd.tangent]
        steps.append((f"Ad{l}", through_sigmoid(nd.a_dot), f"Zd{l}"))
    read = {getattr(s, "name", None) for _, v, _ in steps for s in _symbols(v)}
    read |= {like for name, v, like in steps if e.constant(v)}
    lines = []
    for name, value, like in steps:
        bind = f"{name} = " if name in read else ""
        lines.append(f'out["{name}"] = {bind}{e.array_code(value, like)}')
    return lines


def r_backward_lines(e: Emitter) -> list[str]:
    """R{G} (the sum of what the consumers' R-backward sends back), R{delta}, R{grads}."""
    pending: dict[str, list[Expr]] = {}
    lines: list[str] = []
    for nd in reversed(e.net.nodes):
        l = nd.node.index
        if not nd.is_output:
            parts = pending.pop(nd.node.a.key)
            text = " + ".join(f"({e.code(p)})" for p in parts) if parts[1:] else e.code(parts[0])
            lines.append(f"RG{l} = {text}")
        lines.append(f"Rdelta{l} = {e.array_code(through_sigmoid(nd.r_delta), f'A{l}')}")
        for param, r_grad in nd.r_grads:
            lines.append(f'H["{param.key}"] = {_shaped(e.code(r_grad), param)}')
        for tensor, contribution in nd.r_backs:
            pending.setdefault(tensor.key, []).append(contribution)
    return lines


def loads(e: Emitter, lines_exprs: Iterable[Expr], written: set[str], direction: str) -> list[str]:
    """`name = container["key"]` for every array the expressions read that they do not
    write: parameters from params, directions from `direction`, the forward pass's arrays
    from cache, the backward pass's from deltas, tangents from tan."""
    needed: dict[str, str] = {}
    for expr in lines_exprs:
        for s in _symbols(expr):
            name = getattr(s, "name", None)
            if not isinstance(name, str) or name in written or name in needed:
                continue
            info = e.net.bindings.table.get(name)
            if info is not None:
                needed[name] = _source(e, name, info, direction)
    return [f"{e.code(sp.Symbol(n))} = {src}" for n, src in sorted(needed.items()) if src]


def _source(e: Emitter, name: str, info, direction: str) -> str:
    flat = ".reshape(-1)" if info.tensor is not None and info.tensor.stored_flat else ""
    if info.family == Family.PARAMETER:
        return f'params["{info.tensor.key}"]{flat}'
    if info.family == Family.DIRECTION:
        return f'{direction}["{info.tensor.key}"]{flat}'
    if info.family == Family.FORWARD:
        return f'cache["{e.code(sp.Symbol(name))}"]' if name != "A0" else 'cache["A0"]'
    if info.family == Family.BACKWARD:
        return f'deltas["{name}"]'
    if info.family == Family.TANGENT:
        return f'tan["{name}"]'
    return ""


__all__ = [
    "Emitter",
    "Stmt",
    "BatchSum",
    "UnitSum",
    "backward_statements",
    "cache_names",
    "forward_lines",
    "loads",
    "loss_reuse",
    "place",
    "print_backward",
    "r_backward_lines",
    "tangent_lines",
]


# --- the module template's context ----------------------------------------------------


def _init_lines(e: Emitter) -> list[str]:
    """init_params: He (rectifiers) or Glorot normal weights; biases and shifts 0, scales 1."""
    row = e.d.arch.layout == "row"
    lines = []
    for nd in e.net.nodes:
        activation = nd.node.layer.activation
        for p in nd.node.params:
            shape = p.shape if len(p.shape) != 1 else ((p.shape[0],) if row else (p.shape[0], 1))
            if p.symbol == "W":
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
                fill = "np.ones" if p.symbol == "gamma" else "np.zeros"
                lines.append(f'params["{p.key}"] = {fill}({shape}, dtype=DTYPE)')
    return lines


def module_context(d: Derivation, net: Network, eq: dict[str, int] | None = None) -> dict[str, Any]:
    """Everything the module template needs, as plain strings and lists of lines;
    `eq` (label -> number) lets the comments cite the document's equations."""
    e = Emitter(d, net, eq or {})
    arch = d.arch
    row = arch.layout == "row"
    reuse = loss_reuse(e)
    plain_loss = e.array_code(loss_expr(e), "Y")
    forward = forward_lines(e, ws=False)
    forward_loss = forward_lines(e, ws=False, last=not d.output.loss_from_logits)
    forward_ws = forward_lines(e, ws=True, lse=reuse["lse"])
    fused = shared_subexpressions(e, backward_statements(e, fused=True))
    place(e, fused)
    backward_ws = print_backward(e, fused, ws=True)
    loss_pre = []
    if reuse["common"]:
        # The output error's first array (A - Y) is computed before the loss, which reads it.
        loss_pre = [backward_ws.pop(1)]
    eq_loss = (eq or {}).get("eq:loss")
    unfused = backward_statements(e, fused=False)
    backward_plain = print_backward(e, unfused, ws=False)
    written = {s.target for s in unfused if s.op != "#"}
    read = [s.expr for s in unfused]
    # A constant error term takes its shape from the layer's activation.
    read += [sp.Symbol(f"A{s.layer}") for s in unfused if s.op == "=" and e.constant(s.expr)]
    backward_loads = loads(e, read, written, "vectors")
    tangent = tangent_lines(e)
    tangent_exprs = [v for nd in net.nodes for _, v in nd.tangent] + [nd.a_dot for nd in net.nodes]
    tan_written = {e.code(t) for nd in net.nodes for t, _ in nd.tangent} | {
        f"Ad{nd.node.index}" for nd in net.nodes
    }
    r_exprs = [nd.r_delta for nd in net.nodes]
    r_exprs += [sp.Symbol(f"A{nd.node.index}") for nd in net.nodes if e.constant(nd.r_delta)]
    tangent_exprs += [
        sp.Symbol(f"A{nd.node.index}") for nd in net.nodes for _, v in nd.tangent if e.constant(v)
    ]
    r_exprs += [g for nd in net.nodes for _, g in (*nd.r_grads, *nd.r_backs)]
    r_written = {f"Rdelta{nd.node.index}" for nd in net.nodes} | {
        f"RG{nd.node.index}" for nd in net.nodes
    }
    grads = [(p.key, _shaped(f"d{p.key}", p)) for p in net.graph.parameters]
    return {
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
        "weights": [p.key for p in net.graph.parameters if p.symbol == "W"],
        "forward": forward,
        "forward_loss": forward_loss,
        "forward_ws": forward_ws,
        "cache": cache_names(e),
        "loss_plain": plain_loss,
        "loss_ws": reuse,
        "loss_pre": loss_pre,
        "eq_loss": f", eq. ({eq_loss})" if eq_loss else "",
        "loss_from_logits": d.output.loss_from_logits,
        "backward_ws": backward_ws,
        "backward_plain": backward_plain,
        "backward_loads": backward_loads,
        "deltas": sorted(written),
        "tangent": tangent,
        "tangent_loads": loads(e, tangent_exprs, tan_written, "tangents"),
        "r_backward": r_backward_lines(e),
        "r_loads": loads(e, r_exprs, r_written, "vectors"),
        "grads": grads,
        "n_layers": len(net.nodes),
        "output": net.nodes[-1].node.index,
        "sample_axis": 0 if row else 1,
        "unit_axis": 1 if row else 0,
        "helpers": sorted(e.printer.used),
        "workspace": dict(e.ws.shapes),
        "uses_ones": e.uses_ones,
        "images": arch.images,
        # an image input may come as (n, C, H, W): each sample is read as its C*H*W entries
        "input_line": "np.asarray(X, dtype=DTYPE)"
        + (".reshape(np.shape(X)[0], -1)" if arch.input_shape else ""),
    }


def _sizes_text(sizes: tuple[int, ...]) -> str:
    """'784-512-10', or for a deep network '1-1-1-...-1 (1001 sizes)': one short line."""
    if len(sizes) <= 12:
        return "-".join(map(str, sizes))
    head, tail = "-".join(map(str, sizes[:3])), "-".join(map(str, sizes[-2:]))
    return f"{head}-...-{tail} ({len(sizes)} sizes)"
