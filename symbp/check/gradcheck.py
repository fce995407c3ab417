"""Check a generated module's gradients against central finite differences in float64."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from symbp.frontend.spec import Arch

TOLERANCE = 1e-6
STEP = 1e-6
HVP_TOLERANCE = 1e-4  # v.Hv against central differences of g.v at a step of 1e-6


@dataclass(frozen=True)
class GradRow:
    """One parameter's comparison."""

    name: str
    shape: tuple[int, ...]
    checked: int  # entries compared
    max_abs: float
    max_rel: float  # max |g - fd| over the entries, relative to max |fd| of the parameter

    @property
    def ok(self) -> bool:
        return self.max_rel <= TOLERANCE


def import_path(path: Path) -> ModuleType:
    """Import a generated module from its file, under a unique name."""
    name = f"symbp_generated_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def targets(arch: Arch, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random targets that suit the loss: probabilities, binary-ish, or real values."""
    unit_axis = len(shape) - 1 if arch.layout == "row" else 0
    if arch.loss.kind == "cross_entropy":
        raw = np.exp(rng.standard_normal(shape))
        return raw / raw.sum(axis=unit_axis, keepdims=True)
    if arch.loss.kind in ("bce", "expr"):
        return rng.uniform(0.05, 0.95, shape)
    return rng.standard_normal(shape)


def random_problem(module: ModuleType, arch: Arch, seed: int, n: int) -> tuple[dict, Any, Any]:
    """Parameters moved off their initial values, and a random batch."""
    rng = np.random.default_rng(seed)
    params = module.init_params(seed)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
    d, k = arch.layer_sizes[0], arch.layer_sizes[-1]
    row = arch.layout == "row"
    if arch.positions:  # sequences (n, T, d) with targets (n, T, k)
        shape_in, shape_out = arch.layer_shapes[0], arch.layer_shapes[-1]
        Y = targets(arch, rng, (n, *shape_out))
        if arch.vocab:  # token ids, integers in [0, vocab)
            return params, rng.integers(0, arch.vocab, (n, *shape_in)), Y
        return params, rng.standard_normal((n, *shape_in)), Y
    X = rng.standard_normal((n, d) if row else (d, n))
    Y = targets(arch, rng, (n, k) if row else (k, n))
    return params, X, Y


def _entries(shape: tuple[int, ...], limit: int, rng: np.random.Generator) -> list[tuple]:
    every = list(np.ndindex(shape))
    if len(every) <= limit:
        return every
    picks = rng.choice(len(every), size=limit, replace=False)
    return [every[i] for i in sorted(picks)]


def central_difference(
    module: ModuleType, params: dict, X: Any, Y: Any, key: str, idx: tuple
) -> float:
    """(L(p + h e) - L(p - h e)) / 2h for one entry."""
    plus = {k: v.copy() for k, v in params.items()}
    minus = {k: v.copy() for k, v in params.items()}
    plus[key][idx] += STEP
    minus[key][idx] -= STEP
    return (module.loss(plus, X, Y) - module.loss(minus, X, Y)) / (2 * STEP)


def check_module(
    module: ModuleType, arch: Arch, seed: int = 0, n: int = 7, limit: int = 40
) -> list[GradRow]:
    """Compare loss_and_grads with central differences, entry by entry."""
    params, X, Y = random_problem(module, arch, seed, n)
    value, grads = module.loss_and_grads(params, X, Y)
    # Central differences carry rounding noise of about eps * |L| / STEP; gradients far
    # below that are judged against this floor instead of against themselves.
    floor = 1e-3 * max(1.0, abs(value))
    rng = np.random.default_rng(seed + 1)
    rows = []
    for key in params:
        entries = _entries(params[key].shape, limit, rng)
        fd = np.array([central_difference(module, params, X, Y, key, i) for i in entries])
        got = np.array([grads[key][i] for i in entries])
        err = np.abs(got - fd)
        scale = max(float(np.max(np.abs(fd))), floor)
        rows.append(
            GradRow(
                key, params[key].shape, len(entries), float(err.max()), float(err.max() / scale)
            )
        )
    return rows


def workspace_problems(module: ModuleType, arch: Arch, seed: int = 0, n: int = 7) -> list[str]:
    """What differs when loss_and_grads runs with make_workspace(n) instead of allocating.

    Two batches go through one workspace in turn; each result must equal, bit for bit, the
    allocating call's, and the gradients must be the workspace's own arrays.
    """
    workspace = module.make_workspace(n)
    problems = []
    arrays = [(k, b) for k, b in workspace.items() if isinstance(b, np.ndarray)]
    for i, (key, one) in enumerate(arrays):
        problems += [
            f"workspace buffers {key} and {other} overlap"
            for other, two in arrays[i + 1 :]
            if np.shares_memory(one, two)
        ]
    for s in (seed + 7, seed):
        params, X, Y = random_problem(module, arch, s, n)
        # Parameters in the module's dtype: float64 ones would make the allocating call
        # compute in float64, while the workspace keeps the module's dtype.
        params = {k: v.astype(module.DTYPE) for k, v in params.items()}
        value, grads = module.loss_and_grads(params, X, Y)
        got, into = module.loss_and_grads(params, X, Y, workspace)
        if got != value and not (np.isnan(got) and np.isnan(value)):
            problems.append(f"seed {s}: loss {got!r} with a workspace, {value!r} without")
        for key in params:
            if not np.array_equal(into[key], grads[key], equal_nan=True):
                problems.append(f"seed {s}: {key} differs with a workspace")
            if not any(np.shares_memory(into[key], b) for _, b in arrays):
                problems.append(f"seed {s}: {key} was allocated, not written into the workspace")
    other = dict(workspace, network=("another network",))
    try:
        module.loss_and_grads(*random_problem(module, arch, seed, n), other)
        problems.append("a workspace made for another network was accepted")
    except module.WorkspaceError as err:
        if err.batch != n:
            problems.append(f"the other-network error names the wrong batch: {err}")
    try:
        module.loss_and_grads(*random_problem(module, arch, seed, n + 1), workspace)
        problems.append(f"a batch of {n + 1} samples was accepted by make_workspace({n})")
    except module.WorkspaceError as err:
        if err.batch != n + 1:
            problems.append(f"the batch size error names the wrong batch: {err}")
    return problems


@dataclass(frozen=True)
class Taylor:
    """Log-log slopes of the Taylor remainders along a random unit direction."""

    first: float  # |L(p + hv) - L(p) - h g.v| ~ h^2: slope ~2
    second: float  # ... - h^2/2 v.Hv ~ h^3: slope ~3
    floor: bool  # the second remainder hit rounding level (slope not measurable)
    flat: bool = False  # even the first remainder is at rounding level (L is flat here)
    largest_step: float = 0.05  # the steps were largest_step / 2**k, k = 0..5
    # With steps so small that the h^3 remainder is below rounding (networks with many
    # kinks), v.Hv is compared instead with central differences of g.v: relative error.
    hvp_error: float | None = None

    @property
    def ok(self) -> bool:
        # A remainder of order h^3 after both terms also proves g.v: an error e in it
        # would leave e*h behind. The first slope decides only when the second is at
        # rounding level, or when the curvature term is what is wrong.
        if self.flat:
            return True
        if self.hvp_error is not None and self.hvp_error > HVP_TOLERANCE:
            return False
        if self.floor:
            return self.first > 1.8
        return self.second > 2.7


def _slope(hs: np.ndarray, remainders: list[float]) -> float:
    """The remainder's order in h: the median slope between neighbouring steps, over the
    smaller half of the steps (far from the largest steps, where terms of different orders
    can cancel, and a single near-zero remainder cannot skew a median)."""
    r = np.log(np.maximum(remainders, 1e-300))
    slopes = np.diff(r) / np.diff(np.log(hs))
    return float(np.median(slopes[len(slopes) // 2 - 1 :]))


def taylor_test(module: ModuleType, arch: Arch, seed: int = 0, n: int = 7) -> Taylor:
    """Devito-style Taylor test of loss_and_grads (first order) and hvp (second order)."""
    params, X, Y = random_problem(module, arch, seed, n)
    rng = np.random.default_rng(seed + 2)
    v = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    norm = np.sqrt(sum(float(np.sum(x * x)) for x in v.values()))
    v = {k: x / norm for k, x in v.items()}
    base, grads = module.loss_and_grads(params, X, Y)
    g_v = sum(float(np.sum(grads[k] * v[k])) for k in v)
    hv = module.hvp(params, X, Y, v)
    v_h_v = sum(float(np.sum(hv[k] * v[k])) for k in v)
    level = 1e-12 * max(1.0, abs(base))

    def remainders(largest: float) -> Taylor:
        hs = largest * 0.5 ** np.arange(6)
        r1, r2 = [], []
        for h in hs:
            value = module.loss({k: params[k] + h * v[k] for k in v}, X, Y)
            r1.append(abs(value - base - h * g_v))
            r2.append(abs(value - base - h * g_v - 0.5 * h * h * v_h_v))
        first, second = _slope(hs, r1), _slope(hs, r2)
        return Taylor(first, second, max(r2) < level, max(r1) < level, largest)

    # A loss with kinks (ReLU, |u|) is smooth only between them: when the larger steps
    # cross one, the expansion does not hold there, so smaller steps are tried. A wrong
    # gradient or hvp fails at every scale (its error leaves a term of order h).
    # The more units, the more kinks a step crosses (a CNN has one per ReLU entry): the
    # smallest scale still leaves the first-order remainder well above rounding, but not
    # the second, so there v.Hv is checked against central differences of g.v instead.
    first_try = remainders(0.05)
    for largest in (0.002, 1e-5):
        if first_try.ok:
            return first_try
        again = remainders(largest)
        if largest < 1e-4:
            again = dataclasses.replace(again, hvp_error=_hvp_error(module, params, X, Y, v))
        if again.ok:
            return again
    return first_try


def _hvp_error(module: ModuleType, params: dict, X: Any, Y: Any, v: dict) -> float:
    """|v.Hv - (g(p + h v) - g(p - h v)).v / 2h| relative to |v.Hv|, h = STEP."""
    hv = module.hvp(params, X, Y, v)
    v_h_v = sum(float(np.sum(hv[k] * v[k])) for k in v)
    plus = module.loss_and_grads({k: params[k] + STEP * v[k] for k in v}, X, Y)[1]
    minus = module.loss_and_grads({k: params[k] - STEP * v[k] for k in v}, X, Y)[1]
    fd = sum(float(np.sum((plus[k] - minus[k]) * v[k])) for k in v) / (2 * STEP)
    return abs(v_h_v - fd) / max(abs(v_h_v), 1e-8)


def gradcheck(
    arch: Arch, seed: int = 0, n: int = 7, limit: int = 40
) -> tuple[list[GradRow], Taylor, list[str]]:
    """Generate `arch` in float64 into a temporary folder; check every gradient, the slopes
    and the workspace path (what differs with make_workspace: nothing, when correct)."""
    from symbp.pipeline import generate, write_files

    arch64 = dataclasses.replace(arch, dtype="float64")
    result = generate(arch64)
    with tempfile.TemporaryDirectory(prefix="symbp-gradcheck-") as folder:
        write_files(result.files, folder)
        module = import_path(Path(folder) / f"{arch64.name}.py")
        return (
            check_module(module, arch64, seed, n, limit),
            taylor_test(module, arch64, seed, n),
            workspace_problems(module, arch64, seed, n),
        )


def format_table(rows: list[GradRow]) -> str:
    """A plain-text table of the comparison."""
    lines = [
        f"{'parameter':<10} {'shape':<12} {'checked':>7} "
        f"{'max abs err':>12} {'max rel err':>12}  result"
    ]
    for r in rows:
        shape = "x".join(str(s) for s in r.shape)
        verdict = "ok" if r.ok else "FAIL"
        lines.append(
            f"{r.name:<10} {shape:<12} {r.checked:>7} "
            f"{r.max_abs:>12.3e} {r.max_rel:>12.3e}  {verdict}"
        )
    return "\n".join(lines)
