"""The program's statements printed against the array API standard, for `<name>_xp.py`.

The same statements as the NumPy module's, from the same printer nodes, printed
functionally: every statement makes a new array (x = x * y, never x *= y, and no out=), so
no array the caller passed is changed and the functions trace under jax.jit. There is no
workspace. The namespace `xp` and the computation's `dtype` are local names every function
sets from its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from symbp.backends.array_api import runtime
from symbp.backends.array_api.printer import ArrayApiPrinter
from symbp.backends.numpy.cells import cells_source
from symbp.backends.numpy.emit import (
    Emitter,
    Workspace,
    _init_lines,
    _sizes_text,
    _state_context,
    forward_lines,
    load_lines,
    print_backward,
    r_backward_lines,
    tangent_lines,
)
from symbp.backends.numpy.inline import helper_source, imports_needed
from symbp.backends.numpy.printer import _indicator
from symbp.codegen.program import Program, cache_names, loss_expr, sequence_io, sym
from symbp.derivation.nodes import NodeDerivation
from symbp.errors import DerivationError
from symbp.frontend.spec import Arch
from symbp.ir.bindings import Expr, Family
from symbp.ir.naming import gradient_name

TARGET = "array-api"
T = TypeVar("T")


def check_supported(arch: Arch) -> None:
    """Refuse (DerivationError) a network this target cannot print yet, before any work."""
    if arch.layout != "row":
        raise DerivationError(
            "the array-API target writes row layout only (one sample per row, as PyTorch "
            "and JAX hold a batch), and this file has layout: column",
            fix="set `layout: row` in the file (X then has shape (n, inputs))",
        )


class ArrayApiEmitter(Emitter):
    """The NumPy emitter's passes, each statement printed as one functional assignment."""

    def __post_init__(self) -> None:
        arch = self.p.d.arch
        check_supported(arch)
        names = {"c": "scale", "Y": "Y", "lambda": repr(float(arch.l2))}
        self.printer = ArrayApiPrinter(True, names)
        self.ws = Workspace(True)

    def _z_reused(self, nd: NodeDerivation) -> bool:
        return False  # every z keeps its own name: nothing is overwritten

    def full_like(self, like: str, text: str) -> str:
        return f"xp.full_like({like}, {text})"

    def reshaped(self, text: str, shape: tuple[int, ...]) -> str:
        return f"xp.reshape({text}, {shape})"

    def flat(self, text: str) -> str:
        return f"xp.reshape({text}, (-1,))"

    def update(self, target: str, op: str, text: str) -> str:
        return f"{target} = {target} {op[0]} ({text})"

    def put_step(self, target: str, shape: str, axis: str, index: str, value: str) -> str:
        raise DerivationError(
            "the array-API target does not yet print loops over a sequence's steps",
            fix="generate this network for the NumPy target (leave out --target array-api)",
        )

    def chained(self, target: str, op: str, expr: Expr) -> list[str] | None:
        """One expression: arrays of the namespace may be immutable (JAX), and a jit fuses
        elementwise chains itself."""
        return None

    def multiplied(self, target: str, factor: Expr) -> str:
        """target times a factor: times a 0/1 mask of u > 0 through the runtime's
        _where_positive (one kernel on PyTorch), times any other mask as 0/1 numbers."""
        mask = _indicator(factor)
        if mask is None:
            return self.update(target, "*=", self.code(factor))
        return f"{target} = {self.printer.masked(target, mask)}"

    def assign(self, target: str, expr: Expr, out: str | None = None) -> list[str]:
        return [f"{target} = {self.code(expr)}"]


def _reading_dtype(e: ArrayApiEmitter, make: Callable[[], T]) -> tuple[T, bool]:
    """What make() prints, and whether a line of it reads the local name `dtype`."""
    e.printer.dtype_used = False
    made = make()
    return made, e.printer.dtype_used


def module_context(p: Program) -> dict[str, Any]:
    """What templates/network_xp.py.j2 needs, as plain strings and lists of lines."""
    d, net, eq = p.d, p.net, p.eq
    e = ArrayApiEmitter(p)
    arch = d.arch
    forward, forward_dtype = _reading_dtype(e, lambda: forward_lines(e, ws=False, frees=True))
    forward_loss, loss_dtype = _reading_dtype(
        e, lambda: forward_lines(e, ws=False, last=not d.output.loss_from_logits)
    )
    # loss_and_grads deletes each activation and error term after its last read, so that
    # the library can reuse its memory within the step (fresh pages cost PyTorch on the CPU)
    frees = (Family.FORWARD, Family.BACKWARD)
    backward, backward_dtype = _reading_dtype(
        e, lambda: print_backward(e, p.backward_fused, ws=False, frees=frees)
    )
    backward_plain = print_backward(e, p.backward_plain, ws=False)
    written = {s.target for s in p.backward_plain if s.op != "#"}
    loss, value_dtype = _reading_dtype(e, lambda: e.array_code(loss_expr(p), "Y"))
    eq_loss = (eq or {}).get("eq:loss")
    state, state_dtype = _reading_dtype(e, lambda: _state_context(e))
    tangent = tangent_lines(e)
    r_backward = r_backward_lines(e)
    params = net.graph.parameters
    context = {
        "name": arch.name,
        "target": TARGET,
        "layer_sizes": arch.layer_sizes,
        "layer_shapes": arch.layer_shapes,
        "sizes_text": _sizes_text(arch.layer_sizes),
        "kinds": [nd.node.kind for nd in net.nodes],
        "dtype": arch.dtype,
        "input_shape": arch.input_shape,
        "reduction": arch.reduction,
        "loss_text": arch.loss.kind if arch.loss.kind != "expr" else f"expr: {arch.loss.expr}",
        "l2": repr(float(arch.l2)) if arch.l2 else "",
        "init_lines": _init_lines(e),
        "first": params[0].key,
        "param_loads": [(q.key, q.stored_flat) for q in params],
        "weights": [q.key for q in params if q.decayed],
        "forward": forward,
        "forward_loss": forward_loss,
        "cache": [e.code(sym(name)) for name in cache_names(p)],
        "loss": loss,
        "eq_loss": f", eq. ({eq_loss})" if eq_loss else "",
        "loss_from_logits": d.output.loss_from_logits,
        "backward": backward,
        "backward_plain": backward_plain,
        "backward_loads": load_lines(e, p.backward_plain, "vectors"),
        "deltas": sorted(written),
        "tangent": tangent,
        "tangent_loads": load_lines(e, p.tangent, "tangents"),
        "r_backward": r_backward,
        "r_loads": load_lines(e, p.r_backward, "vectors"),
        "grads": [(q.key, e.shaped(gradient_name(q.key), q)) for q in params],
        "output": net.nodes[-1].node.index,
        **state,
        # whether loss's and loss_and_grads's own lines read the local name dtype
        "loss_dtype": loss_dtype or value_dtype or bool(state.get("forward_eval")),
        "grads_dtype": forward_dtype or backward_dtype or value_dtype or state_dtype,
    }
    # an image input may come as (n, C, H, W): each sample is read as its C*H*W entries
    reader = e.printer.call("_as", "X", "first")
    context["input_line"] = e.printer.call("_rows", reader) if arch.input_shape else reader
    context["targets_line"] = e.printer.call("_as", "Y", "first")
    context["yhat"] = "{}"
    io = sequence_io(p)
    if io is not None:  # a sequence network: (n, T, ...) in and out, n*T rows inside
        context["input_line"] = (
            f"_token_ids(xp, X, first, {io.shape_in})"
            if io.vocab
            else f"_sequence_rows(xp, {reader}, {io.shape_in})"
        )
        context["targets_line"] = (
            f"_sequence_targets(xp, {context['targets_line']}, {io.shape_out}, {io.ids})"
        )
        context["yhat"] = f"_sequences(xp, {{}}, {io.shape_out})"
        e.printer.used.update(
            {"_token_ids" if io.vocab else "_sequence_rows", "_sequence_targets", "_sequences"}
        )
    cells = ""
    if e.printer.cells:  # the recurrent cells' step functions, printed from SymPy
        printer = ArrayApiPrinter(True)
        cells = cells_source(e.printer.cells, printer)
        e.printer.used.update(printer.used)
    helpers = [*e.printer.used, *runtime.TEMPLATE_CALLS]
    context["runtime"] = helper_source(helpers, runtime) + (f"\n\n\n{cells}" if cells else "")
    context["imports"] = imports_needed(helpers, runtime)
    context["helpers"] = sorted(e.printer.used)
    return context
