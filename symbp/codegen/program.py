"""The program IR: every pass of the generated module as a list of statements built from the
network's SymPy equations, language-neutral, before any printer sees them.

A statement is (target, expression, operation) with what a backend needs to place and print
it: the layer it belongs to, the parameter whose gradient it is, the workspace buffer the
liveness pass gives it (`out`), the container a function returns it in (`store`), the array
whose shape a constant takes (`like`). What a symbol *is* comes from the network's bindings,
never from its name. The passes:

- forward: per node its forward statements (statistics, z), then a = f(z);
- backward: reverse mode over the graph, each tensor's error the sum over its consumers
  (fused: straight into delta's array with f' multiplied in; plain: G<l> kept for hvp),
  with common subexpressions computed once and buffers placed by liveness;
- tangent: z', a' (forward mode); r_backward: R{G}, R{delta}, R{gradients} (Pearlmutter).

Each function's inputs (loads) are the free symbols its statements read and do not write.
A backend prints the statements (symbp.backends.<name>); nothing here is backend text.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from symbp.derivation.derive import Derivation, at_layer
from symbp.derivation.network import Network
from symbp.derivation.nodes import NodeDerivation
from symbp.derivation.numbering import cited_label
from symbp.frontend.kind_keys import DEFAULT_KIND
from symbp.ir.bindings import ArrayInfo, Bindings, Expr, Family, Kind
from symbp.ir.graph import Tensor
from symbp.ir.naming import Role, array, gradient_name
from symbp.ir.naming import name as array_name
from symbp.ir.reductions import BatchSum, LogSumExp, UnitSum
from symbp.symbolic.cse import common_subexpressions
from symbp.symbolic.stable import through_sigmoid


@dataclass
class Stmt:
    """target op expr: "=" makes a new array, "+=" and "*=" update it in place, "#" is a
    comment line only."""

    target: str
    expr: Expr
    op: str = "="
    comment: str = ""
    layer: int = 0  # the layer whose array the target is
    param: Tensor | None = None  # set when the target is this parameter's gradient
    out: str | None = None  # the workspace buffer key of a new array, set by place()
    store: str = ""  # the container the value is returned in ("out", "H"), keyed by target
    like: str = ""  # the array whose shape a constant value takes
    bind: bool = True  # whether the value is also bound to the local name `target`
    activation: bool = False  # a = f(z) of its layer: a backend may evaluate it into z
    parts: tuple[Expr, ...] = ()  # a sum printed term by term (R{G} over the consumers)
    # set inside a loop: the value is step `step[1]` along axis `step[0]` of the target,
    # an array of per-sample shape `shape`
    step: tuple[int, Expr] | None = None
    shape: tuple[int, ...] = ()

    def reads(self) -> set[str]:
        names = {getattr(s, "name", None) for e in (self.expr, *self.parts) for s in symbols(e)}
        return {n for n in names if isinstance(n, str)} | (
            {self.target} if self.op not in ("=", "#") else set()
        )


@dataclass
class Loop:
    """for index in range(start, stop, step): body. The body's statements may read the
    index (a Step of a sequence) and write one step of an array (Stmt.step); a backward
    pass through time is a loop with a negative step."""

    index: sp.Symbol
    start: Expr
    stop: Expr
    body: list[Stmt | Loop]
    step: int = 1

    def reads(self) -> set[str]:
        inner = set().union(*(s.reads() for s in self.body)) if self.body else set()
        return inner - {self.index.name}


def symbols(expr: Expr) -> frozenset:
    """The symbols and matrix symbols an expression reads (worked out once per expression:
    the passes ask for the same statements' symbols many times)."""
    if not isinstance(expr, sp.Basic):
        return frozenset()
    return _symbols(expr)


@functools.lru_cache(maxsize=65536)
def _symbols(expr: sp.Basic) -> frozenset:
    return frozenset(expr.free_symbols) | frozenset(expr.atoms(sp.MatrixSymbol))


def sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


@dataclass
class Arrays:
    """What the symbols of one network are, read from its bindings."""

    bindings: Bindings
    _per_sample: dict[Any, bool] = field(default_factory=dict, repr=False)

    def info(self, symbol: Any) -> ArrayInfo | None:
        return self.bindings.info(symbol)

    def per_sample(self, expr: Expr) -> bool:
        """Whether expr gives a full per-sample array (reductions excluded)."""
        if isinstance(expr, sp.MatrixExpr):
            return True
        known = self._per_sample.get(expr)
        if known is None:
            known = self._per_sample[expr] = self.bindings.per_sample(expr)
        return known

    def constant(self, expr: Expr) -> bool:
        """True when expr reads no per-sample array at all (a constant error term, say)."""
        if isinstance(expr, sp.MatrixExpr):
            return False
        return not any(
            (i := self.info(s)) is not None and i.kind == Kind.SAMPLES for s in symbols(expr)
        )

    def fresh(self, expr: Expr) -> bool:
        """True when evaluating expr makes a new full-shape array (safe to update in place)."""
        if isinstance(expr, sp.Symbol):
            return False
        is_call = isinstance(expr, (sp.Add, sp.Function)) or (
            isinstance(expr, sp.Pow) and expr.exp > 0
        )
        return is_call and self.per_sample(expr)


@dataclass
class Program:
    """Every pass of one network's module as statements, with what the backends read."""

    d: Derivation
    net: Network
    arrays: Arrays
    eq: dict[str, int]
    keep_z: set[int]  # layers whose z the forward pass keeps (the backward passes read it)
    forward: list[Stmt] = field(default_factory=list)
    # evaluation mode (batch norm's running statistics), when it differs; the state update
    forward_eval: list[Stmt] = field(default_factory=list)
    state_update: list[Stmt] = field(default_factory=list)
    backward_fused: list[Stmt] = field(default_factory=list)
    backward_plain: list[Stmt] = field(default_factory=list)
    tangent: list[Stmt] = field(default_factory=list)
    r_backward: list[Stmt] = field(default_factory=list)

    def cite(self, step: str, l: int) -> str:
        """ "eq. (N)" for the document's equation of this step of layer l (symbp.derivation.
        numbering.cited_label: a kind's box, never an appendix equation), or ""."""
        number = self.eq.get(cited_label(self.net, step, l))
        return f"eq. ({number})" if number else ""


def build_program(d: Derivation, net: Network, eq: dict[str, int] | None = None) -> Program:
    """The statements of every pass of the module for the network."""
    keep_z = {nd.node.index for nd in net.nodes if nd.stores_z}
    if d.output.loss_from_logits:
        keep_z.add(net.nodes[-1].node.index)
    p = Program(d, net, Arrays(net.bindings), eq or {}, keep_z)
    p.forward = forward_statements(p)
    if any(nd.eval_forward is not None for nd in net.nodes):
        p.forward_eval = forward_statements(p, evaluation=True)
    p.state_update = [
        Stmt(target.name, value, layer=nd.node.index, store="new_state", bind=False)
        for nd in net.nodes
        for target, value in nd.state_updates
    ]
    p.backward_fused = shared_subexpressions(p, backward_statements(p, fused=True))
    place(p, p.backward_fused)
    p.backward_plain = backward_statements(p, fused=False)
    p.tangent = within_statements(p, tangent_statements(p))
    p.r_backward = within_statements(p, r_backward_statements(p))
    return p


# --- the forward pass ------------------------------------------------------------------


def forward_statements(p: Program, evaluation: bool = False) -> list[Stmt]:
    """Per node: a comment naming the layer, its forward statements (statistics, then z),
    then its activation a = f(z); with `evaluation`, the evaluation mode's statements where
    a kind has them (batch norm with its running statistics)."""
    stmts: list[Stmt] = []
    for nd in p.net.nodes:
        l = nd.node.index
        cites = [c for c in (p.cite("z", l), p.cite("a", l)) if c]
        sizes = f"{_shape(nd.node.inputs[0])} -> {_shape(nd.node.z)}"
        kind = f"{nd.node.kind}, " if nd.node.kind != DEFAULT_KIND else ""
        where = f": {', '.join(cites)}" if cites else ""
        comment = f"layer {l}, {sizes} ({kind}{nd.node.layer.activation}){where}"
        stmts.append(Stmt("", sp.S.Zero, "#", comment=comment, layer=l))
        steps = nd.eval_forward if evaluation and nd.eval_forward is not None else nd.forward
        stmts += [Stmt(t.name, value, layer=l) for t, value in steps]
        stmts.append(Stmt(array_name(Role.ACTIVATION, l), nd.a, layer=l, activation=True))
    return stmts


def _shape(tensor: Tensor) -> str:
    """ "784" for a vector, "8x28x28" for an image, as the layer comments show them."""
    return "x".join(map(str, tensor.shape))


@dataclass(frozen=True)
class SequenceIO:
    """How a sequence network's arrays cross the module's interface: inputs (n, *shape_in)
    (token ids in [0, vocab) when vocab), targets and outputs (n, *shape_out), the targets
    also class ids when `ids` (cross-entropy); inside, the n*T rows of the positions."""

    shape_in: tuple[int, ...]
    shape_out: tuple[int, ...]
    ids: bool
    vocab: int


def sequence_io(p: Program) -> SequenceIO | None:
    """The interface of a sequence network (None for vectors and images)."""
    arch = p.d.arch
    if not arch.positions:
        return None
    ids = arch.loss.kind == "cross_entropy"
    return SequenceIO(arch.layer_shapes[0], arch.layer_shapes[-1], ids, arch.vocab)


def cache_names(p: Program) -> list[str]:
    """What the forward pass returns for the backward passes: every a, the kept z, the
    statistics."""
    names = ["A0"]
    for nd in p.net.nodes:
        l = nd.node.index
        names.append(array_name(Role.ACTIVATION, l))
        if l in p.keep_z:
            names.append(array_name(Role.PRE_ACTIVATION, l))
        names += [t.name for t, _ in nd.forward if t != array(Role.PRE_ACTIVATION, l)]
    if reads_batch_size(p):
        names.append("count")
    return names


def reads_batch_size(p: Program) -> bool:
    """Whether the forward pass reads the batch size (a statistic over the batch does): a
    scalar of the forward pass in the bindings."""
    table = p.net.bindings.table
    return any(
        (info := table.get(name)) is not None
        and info.kind == Kind.SCALAR
        and info.family == Family.FORWARD
        for s in p.forward
        for name in s.reads()
    )


def loss_expr(p: Program) -> sp.Expr:
    """The per-element loss as the code evaluates it."""
    return through_sigmoid(at_layer(p.d.output.loss_array, len(p.net.nodes)))


def loss_reuse(p: Program) -> tuple[sp.Expr, str, sp.Expr | None]:
    """The loss as loss_and_grads computes it, reading what the step computes anyway: the
    log-sum-exp of the output softmax (named lse<L>; "" when not read), and the first array
    of the output error when the loss contains it (A - Y for mse: computed once into delta's
    array, which the loss then reads; None when not)."""
    output = p.net.nodes[-1]
    L = output.node.index
    loss = loss_expr(p)
    lse = ""
    if output.act is None:
        sums = {
            u: array(Role.LOG_SUM_EXP, L)
            for u in loss.atoms(LogSumExp)
            if u.args[0] == array(Role.PRE_ACTIVATION, L)
        }
        if sums:
            loss = loss.xreplace(sums)
            lse = array_name(Role.LOG_SUM_EXP, L)
    delta = through_sigmoid(output.delta)
    first = next((f for f in sp.Mul.make_args(delta) if p.arrays.fresh(f)), None)
    if isinstance(delta, sp.Mul) and isinstance(first, sp.Add) and loss.has(first):
        return loss.xreplace({first: array(Role.ERROR, L)}), lse, first
    return loss, lse, None


# --- the backward pass -----------------------------------------------------------------


def backward_statements(p: Program, fused: bool) -> list[Stmt]:
    """Reverse mode over the graph. A tensor's error is the sum of what its consumers send
    back, accumulated once its first consumer has been reached; with `fused`, it is
    accumulated straight into delta's array and f' multiplied in place (loss_and_grads),
    else kept as G<l> beside delta<l> (the R-operator reads both)."""
    pending: dict[str, list[Expr]] = {}
    out: list[Stmt] = []
    summed: set[Tensor] = set()
    for nd in reversed(p.net.nodes):
        l = nd.node.index
        delta = through_sigmoid(nd.delta)
        out.append(Stmt("", sp.S.Zero, "#", comment=_block_comment(p, nd, fused), layer=l))
        g = array(Role.ERROR_IN, l)
        in_place = fused and _scales(delta, g)
        if not nd.is_output:
            # Every consumer of a^(l) has a higher index: what they sent back is complete.
            target = array_name(Role.ERROR, l) if in_place else array_name(Role.ERROR_IN, l)
            out += _accumulate(p, target, pending.pop(nd.node.a.key), l)
        if nd.is_output or not in_place:
            out.append(Stmt(array_name(Role.ERROR, l), delta, layer=l))
        else:
            factors = delta.xreplace({g: sp.S.One})
            for factor in sp.Mul.make_args(factors) if factors != 1 else ():
                out.append(Stmt(array_name(Role.ERROR, l), factor, "*=", layer=l))
        out += [Stmt(target.name, value, layer=l) for target, value in nd.backward_steps]
        if fused:
            for param, grad in nd.grads:
                # a parameter read by several nodes: their gradients add up
                op = "+=" if param in summed else "="
                summed.add(param)
                out.append(Stmt(gradient_name(param.key), grad, op, layer=l, param=param))
        for tensor, contribution in nd.backs:
            pending.setdefault(tensor.key, []).append(contribution)
    for s in out:  # a constant error term takes its shape from the layer's activation
        if s.op == "=" and s.param is None:
            s.like = array_name(Role.ACTIVATION, s.layer)
    return out


def _scales(delta: Expr, g: sp.Symbol) -> bool:
    """Whether delta is G times factors without G (an elementwise f'), so that it can be
    formed by multiplying G's array in place; a softmax's Jacobian also sums G over units."""
    if delta == g:
        return True
    return isinstance(delta, sp.Mul) and g in delta.args and not delta.xreplace({g: 1}).has(g)


def shared_subexpressions(p: Program, stmts: list[Stmt]) -> list[Stmt]:
    """Common subexpressions of the backward statements, computed once:
    - a new array's whole expression found inside a later statement (a batch norm's
      BatchSum(G ⊙ xhat) is dgamma, which its error term reads again) is read from that
      array, while it still holds that value;
    - within one statement, sympy.cse: a subexpression that reads arrays and occurs twice
      (a layer norm's gamma ⊙ g) becomes its own statement, bound as an error-term array
      (or a per-sample statistic) of that layer."""
    out: list[Stmt] = []
    output = p.net.nodes[-1].node.index  # its error may be shared with the loss: kept whole
    held: dict[sp.Basic, sp.Symbol] = {}  # expression -> the array that holds its value
    for s in stmts:
        for expr, name in list(held.items()):
            if name.name == s.target:  # overwritten or updated in place from here on
                del held[expr]
        expr = s.expr
        elementwise = isinstance(expr, sp.Expr) and not isinstance(expr, sp.MatrixExpr)
        if s.op == "*=" and elementwise:  # f'(z) multiplied in: tanh(softplus(z)) once
            out += _repeated_calls(p, s)
            continue
        if s.op != "=" or not elementwise or s.layer == output:
            out.append(s)
            continue
        expr = expr.xreplace(held)
        out += _within(p, dataclasses.replace(s, expr=expr))
        named = s.param is not None or p.arrays.info(sp.Symbol(s.target)) is not None
        if named and isinstance(s.expr, (BatchSum, UnitSum, sp.Add, sp.Mul)):
            held[s.expr] = sym(s.target)
    return out


def within_statements(p: Program, stmts: list[Stmt]) -> list[Stmt]:
    """Each elementwise statement preceded by the subexpressions sympy.cse finds in it twice
    (the forward-mode and R passes: R{delta} reads f'(z) and f''(z), which share calls)."""
    out: list[Stmt] = []
    for s in stmts:
        elementwise = isinstance(s.expr, sp.Expr) and not isinstance(s.expr, sp.MatrixExpr)
        if s.op == "=" and elementwise and not s.parts:
            out += _within(p, s)
        else:
            out.append(s)
    return out


def _repeated_calls(p: Program, s: Stmt) -> list[Stmt]:
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
    shared = [c for c, k in counts.items() if k > 1 and p.arrays.per_sample(c)]
    shared = [c for c in shared if not any(c != o and o.has(c) for o in shared)]  # outermost
    if not shared:
        return [s]
    info = p.arrays.info(sp.Symbol(s.target))
    units, rows = (info.units, info.rows) if info is not None else (0, 1)
    stmts, names = [], {}
    for k, call in enumerate(sorted(shared, key=sp.default_sort_key)):
        what = "a shared function call"
        name = p.net.bindings.add(
            f"{s.target}_f{k}", Kind.SAMPLES, units, what, Family.BACKWARD, rows=rows
        )
        names[call] = name
        stmts.append(Stmt(name.name, call, layer=s.layer))
    return [*stmts, dataclasses.replace(s, expr=s.expr.xreplace(names))]


def _within(p: Program, s: Stmt) -> list[Stmt]:
    """s preceded by a statement for each subexpression sympy.cse finds in it twice."""
    names = (sym(f"{s.target}_{k}") for k in itertools.count())
    kinds: dict[sp.Symbol, Kind | None] = {}

    def array(name: sp.Symbol, value: Expr, rest: Callable[[], Expr]) -> bool:
        kinds[name] = _temporary_kind(p, value)  # None: a scalar or a constant, inline
        return kinds[name] is not None

    reduced, kept = common_subexpressions(s.expr, names, array)
    if not kept:
        return [s]
    info = p.arrays.info(sp.Symbol(s.target))
    units = info.units if info is not None else 0
    for name, _ in kept:
        kind = kinds[name]
        assert kind is not None
        p.net.bindings.add(name.name, kind, units, "a shared subexpression", Family.BACKWARD)
    for name, value in reversed(kept):  # cse can leave a top-level occurrence whole
        reduced = reduced.xreplace({value: name})
    return [
        *(Stmt(name.name, value, layer=s.layer) for name, value in kept),
        dataclasses.replace(s, expr=reduced),
    ]


def _temporary_kind(p: Program, value: Expr) -> Kind | None:
    """What array a shared subexpression is: per sample, one value per sample (a sum over
    the units), or None when it reads no array."""
    if p.arrays.per_sample(value):
        return Kind.SAMPLES
    if isinstance(value, UnitSum) or (
        value.has(UnitSum) and not value.has(BatchSum) and not p.arrays.constant(value)
    ):
        return Kind.SAMPLE_STAT
    return None


def _block_comment(p: Program, nd: NodeDerivation, grads: bool) -> str:
    """ "layer 3 (output): delta (eq. (N)), dW (eq. (M)), db (...)": what the block computes."""
    l = nd.node.index
    parts = [f"delta ({p.cite('delta', l)})" if p.cite("delta", l) else "delta"]
    if grads and nd.grads:
        # the parameters' gradients: one kind's box holds them all
        names = ", ".join(f"d{param.symbol}" for param, _ in nd.grads)
        cite = p.cite(f"d{nd.grads[0][0].symbol}", l)
        parts.append(f"{names} ({cite})" if cite else names)
    return f"layer {l}{' (output)' if nd.is_output else ''}: {', '.join(parts)}"


def _accumulate(p: Program, target: str, contributions: list[Expr], layer: int) -> list[Stmt]:
    """target = the first contribution that makes a new array, += the others."""
    ordered = sorted(
        contributions, key=lambda c: not (isinstance(c, sp.MatrixExpr) or p.arrays.fresh(c))
    )
    comment = f"dL/da{layer}, the sum over its consumers" if ordered[1:] else ""
    stmts = [Stmt(target, ordered[0], comment=comment, layer=layer)]
    return stmts + [Stmt(target, c, "+=", layer=layer) for c in ordered[1:]]


def place(p: Program, stmts: list[Stmt]) -> None:
    """Liveness: each new per-sample array gets a workspace buffer of its size that no live
    array holds; a buffer is free again after its array's last read."""
    table = p.net.bindings.table
    last_read: dict[str, int] = {}
    for k, s in enumerate(stmts):
        for name in s.reads():
            last_read[name] = k
    held: dict[str, str] = {}  # array -> buffer key
    free: dict[tuple[int, int], list[str]] = {}  # (units, rows) -> free buffers
    count = 0
    for k, s in enumerate(stmts):
        info = table.get(s.target)
        if s.op == "=" and info is not None and info.kind == Kind.SAMPLES and s.target not in held:
            pool = free.setdefault((info.units, info.rows), [])
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
                free.setdefault((table[name].units, table[name].rows), []).append(held.pop(name))


def dying(
    p: Program, stmts: list[Stmt], families: tuple[Family, ...] = (Family.BACKWARD,)
) -> dict[int, list[str]]:
    """Statement index -> the arrays of `families` (the error terms by default) read for the
    last time there and not written again, which a backend may free. One pass over the
    statements."""
    last_read: dict[str, int] = {}
    last_write: dict[str, int] = {}
    for k, s in enumerate(stmts):
        for name in s.reads():
            last_read[name] = k
        if s.target:
            last_write[s.target] = k
    out: dict[int, list[str]] = {}
    for name, last in last_read.items():
        info = p.net.bindings.table.get(name)
        if info is None or info.family not in families or name == stmts[last].target:
            continue
        if last_write.get(name, -1) <= last:
            out.setdefault(last, []).append(name)
    return {k: sorted(names) for k, names in out.items()}


# --- forward mode and the R-operator ---------------------------------------------------


def tangent_statements(p: Program) -> list[Stmt]:
    """z', a' (and the statistics' tangents) for every node, each returned in `out`; a name
    is bound only when a later statement reads it. A constant tangent (a pooling of the
    input, which does not move) takes the shape of the layer's own output."""
    stmts: list[Stmt] = []
    for nd in p.net.nodes:
        l = nd.node.index
        stmts += [
            Stmt(t.name, v, layer=l, store="out", like=array_name(Role.ACTIVATION, l))
            for t, v in nd.tangent
        ]
        stmts.append(
            Stmt(
                array_name(Role.TANGENT_A, l),
                through_sigmoid(nd.a_dot),
                layer=l,
                store="out",
                like=array_name(Role.TANGENT_Z, l),
            )
        )
    read = {name for s in stmts for name in s.reads()}
    read |= {s.like for s in stmts if p.arrays.constant(s.expr)}
    for s in stmts:
        s.bind = s.target in read
    return stmts


def r_backward_statements(p: Program) -> list[Stmt]:
    """R{G} (the sum of what the consumers' R-backward sends back), R{delta}, and each
    parameter's R{gradient}, returned in H."""
    pending: dict[str, list[Expr]] = {}
    stmts: list[Stmt] = []
    summed: set[Tensor] = set()
    for nd in reversed(p.net.nodes):
        l = nd.node.index
        if not nd.is_output:
            parts = tuple(pending.pop(nd.node.a.key))
            stmts.append(Stmt(array_name(Role.R_ERROR_IN, l), parts[0], layer=l, parts=parts))
        stmts.append(
            Stmt(
                array_name(Role.R_ERROR, l),
                through_sigmoid(nd.r_delta),
                layer=l,
                like=array_name(Role.ACTIVATION, l),
            )
        )
        stmts += [Stmt(target.name, value, layer=l) for target, value in nd.r_steps]
        for param, r_grad in nd.r_grads:
            op = "+=" if param in summed else "="
            summed.add(param)
            stmts.append(Stmt(param.key, r_grad, op, layer=l, param=param, store="H", bind=False))
        for tensor, contribution in nd.r_backs:
            pending.setdefault(tensor.key, []).append(contribution)
    return stmts


# --- what each function reads ------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """target = container[key] at the start of a function (flat: read as its entries)."""

    target: str
    family: Family
    key: str
    flat: bool


def loads(p: Program, stmts: Iterable[Stmt]) -> list[Load]:
    """The arrays the statements read and do not write, in name order: parameters,
    directions, the forward pass's arrays, the backward pass's and the tangents'. A constant
    value's `like` array counts as read."""
    stmts = list(stmts)
    written = {s.target for s in stmts if s.op != "#" and s.target and s.bind}
    exprs: list[Expr] = [e for s in stmts for e in (s.expr, *s.parts)]
    exprs += [sym(s.like) for s in stmts if s.like and s.op == "=" and p.arrays.constant(s.expr)]
    needed: dict[str, Load] = {}
    for expr in exprs:
        for s in symbols(expr):
            name = getattr(s, "name", None)
            if not isinstance(name, str) or name in written or name in needed:
                continue
            info = p.net.bindings.table.get(name)
            if info is not None and info.family in _LOADED:
                by_tensor = info.family in _BY_TENSOR and info.tensor is not None
                key = info.tensor.key if by_tensor and info.tensor is not None else name
                flat = info.tensor is not None and info.tensor.stored_flat
                needed[name] = Load(name, info.family, key, flat)
    return [needed[n] for n in sorted(needed)]


_LOADED = (
    Family.PARAMETER,
    Family.DIRECTION,
    Family.FORWARD,
    Family.BACKWARD,
    Family.TANGENT,
    Family.STATE,
)
_BY_TENSOR = (Family.PARAMETER, Family.DIRECTION)


__all__ = [
    "Arrays",
    "Load",
    "Loop",
    "SequenceIO",
    "Program",
    "Stmt",
    "build_program",
    "cache_names",
    "dying",
    "loads",
    "loss_expr",
    "loss_reuse",
    "symbols",
]
