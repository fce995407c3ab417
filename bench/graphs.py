#!/usr/bin/env python
"""Benchmark symbp's generated code for graph architectures against PyTorch eager (and JAX).

    python bench/graphs.py [--repeat N] [--configs R1,R2] [--quick] [--threads N] [--settle S]
                           [--profile]

The configs are residual MLPs (float32, row layout, cross-entropy on a softmax, mean):

- R1: a stem (dense, relu) then blocks of dense -> layernorm (relu) -> dense -> add of the
  block's input, then a dense softmax output;
- R2: the same with batchnorm (training mode, batch statistics) instead of layernorm. The
  dense layer before each batchnorm has no bias: the batch mean would cancel it, and its
  gradient would be exactly zero, so it could not be compared meaningfully.

Each config's YAML file is written into a temporary folder and generated with symbp, in
float32 for the timings and in float64 for the correctness guard. The PyTorch (and JAX)
references read the same YAML mapping themselves and share no code with the generator.
Before timing, the loss and every gradient are compared against PyTorch in float64
(to FLOAT64_RTOL of each gradient's largest entry) and, for the timed float32 module,
against PyTorch (and JAX) in float32; any disagreement aborts with exit status 1.
Then symbp (without and with a workspace), PyTorch eager and JAX are timed round-robin in
this one process (as bench.timing does, with an idle pause before each sample: see
settled_round_robin) and reported as medians and ratios to PyTorch. Last, the
wall time of `python -m symbp.cli generate` on a deep dense net and a deep residual net.

The float32 comparison is norm-wise (||g - ref|| / ||ref|| per gradient, FLOAT32_RTOL =
1e-2) rather than entrywise: with 1024-wide relu layers and 256 samples, float32 rounding
flips the sign of a pre-activation that sits within rounding of zero every so often
(about 1 in 10^6 units), and the flipped unit changes whole rows of the gradients (batch
norm couples all samples). Measured at seed 0: one flipped unit in the batch-norm net
moves dW14 of symbp by 5e-2 of its largest entry (3e-3 norm-wise) from the float64 truth,
and PyTorch's own float32 gradients of the layer-norm net are off by up to 2e-2 entrywise;
away from the kinks both agree with float64 to about 1e-6. Formula errors are the
float64 check's job, where no unit is that close to its kink.

Threads: PyTorch gets as many as NumPy's BLAS has (all cores by default). --threads N sets
both to N and pins the process to N CPUs before jax is imported (XLA sizes its pool by
the CPUs it may use). On a two-core machine where another process keeps one core busy,
two-thread BLAS calls wait for the descheduled thread (a 256x1024x1024 product took 32 ms
on two threads against 6 ms on one): --threads 1 then measures the code, not the scheduler.

--profile adds, per config, the statements of the generated loss_and_grads that take the
most time (a line tracer in this process; the figures include its small per-line cost).

Without PyTorch and JAX (pip install torch==2.13.0 here) the script still runs, times
symbp alone and says it checked nothing. Exit status: 0 on success, 1 when a check fails
(or a generation fails), 2 on bad arguments. Importable: main(argv) returns the exit status.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import datetime  # noqa: E402
import linecache  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bench import blas, genscale, interference, report  # noqa: E402
from bench.timing import Step, Timing, calibrate, summarize  # noqa: E402

Params = dict[str, np.ndarray]
Result = tuple[float, Params]

SYMBP, SYMBP_WS = "symbp", "symbp + workspace"
TORCH, JAX = "PyTorch eager", "JAX jit(value_and_grad)"
FLOAT64_RTOL = 1e-8  # max |g - ref| relative to max |ref|, per gradient and for the loss
FLOAT32_RTOL = 1e-2  # ||g - ref|| relative to ||ref||, per gradient (and for the loss)
GOAL = 1.15  # the goal: symbp at most 1.15x PyTorch eager
GEN_GOALS = {"dense": 3.0, "residual": 5.0}  # seconds, `symbp generate` wall time
SEED = 0
EPS = 1e-5  # the schema's default eps of layernorm and batchnorm


@dataclass(frozen=True)
class Config:
    """One graph benchmark: the normalisation used in each residual block."""

    key: str
    norm: str  # layernorm | batchnorm
    title: str


CONFIGS: dict[str, Config] = {
    "R1": Config("R1", "layernorm", "residual MLP with layer norm"),
    "R2": Config("R2", "batchnorm", "residual MLP with batch norm"),
}


@dataclass(frozen=True)
class Settings:
    """Sizes and how long to measure."""

    quick: bool
    repeat: int
    target: float  # seconds per timing sample (short calls are batched up to it)
    settle: float  # seconds of idle before each sample (thread pools stop spinning)
    width: int  # input and hidden width
    batch: int
    blocks: int
    classes: int
    profile: bool
    threads: int | None  # NumPy BLAS and PyTorch threads; None: the BLAS's default


# --- the architectures -------------------------------------------------------------------


def residual_doc(name: str, norm: str, width: int, blocks: int, classes: int, dtype: str) -> dict:
    """Stem (dense relu), `blocks` x [dense, norm relu, dense, add block input], softmax."""
    layers: list[dict[str, Any]] = [{"units": width, "activation": "relu", "name": "stem"}]
    previous = "stem"
    for k in range(1, blocks + 1):
        first: dict[str, Any] = {"units": width}
        if norm == "batchnorm":
            first["bias"] = False
        layers += [
            first,
            {"type": norm, "activation": "relu"},
            {"units": width},
            {"type": "add", "from": previous, "name": f"block{k}"},
        ]
        previous = f"block{k}"
    layers.append({"units": classes, "activation": "softmax"})
    return {
        "name": name,
        "layout": "row",
        "dtype": dtype,
        "input": width,
        "layers": layers,
        "loss": "cross_entropy",
        "reduction": "mean",
    }


def deep_dense_doc(depth: int, width: int = 8) -> dict:
    """`depth` tanh layers of `width` units, then a sigmoid output with bce, column layout."""
    layers = [{"units": width, "activation": "tanh"} for _ in range(depth)]
    layers.append({"units": 1, "activation": "sigmoid"})
    return {
        "name": f"dense_{depth}x{width}",
        "layout": "column",
        "dtype": "float32",
        "input": width,
        "layers": layers,
        "loss": "bce",
        "reduction": "mean",
    }


def write_doc(doc: dict, folder: Path) -> Path:
    """The mapping as <name>.yaml in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def build_module(doc: dict, folder: Path) -> ModuleType:
    """Generate the mapping's module with symbp.generate into folder/<name>/ and import it."""
    import symbp
    from symbp.check.gradcheck import import_path

    target = folder / doc["name"]
    path = write_doc(doc, target)
    symbp.write_files(symbp.generate(path).files, target)
    return import_path(target / f"{doc['name']}.py")


def perturbed(params: Params, seed: int) -> Params:
    """init_params with small random biases, shifts and scales (gamma 1, b 0 hide mistakes)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in params.items():
        value = value.copy()
        if value.ndim == 1:
            noise = 0.1 * rng.standard_normal(value.shape)
            value += noise.astype(value.dtype)
        out[key] = value
    return out


def random_batch(doc: dict, batch: int, seed: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """X (batch, input) standard normal, Y one-hot (batch, classes) of random labels."""
    rng = np.random.default_rng(seed)
    X: np.ndarray = rng.standard_normal((batch, doc["input"])).astype(dtype)
    classes = doc["layers"][-1]["units"]
    Y: np.ndarray = np.eye(classes, dtype=dtype)[rng.integers(0, classes, batch)]
    return X, Y


# --- the references ----------------------------------------------------------------------


@dataclass
class Framework:
    """A framework contender: a timed step and a one-off evaluation for the correctness guard."""

    name: str
    version: str
    step: Callable[[], None]
    check: Callable[[], Result]


def _layers(doc: dict) -> list[tuple[int, str, dict]]:
    """(index l, kind, layer) for every layer; params of layer l are W<l>, b<l>, gamma<l>, ..."""
    return [(i, layer.get("type", "dense"), layer) for i, layer in enumerate(doc["layers"], 1)]


def _check_output(doc: dict) -> None:
    last = doc["layers"][-1]
    if last.get("activation") != "softmax" or doc["loss"] != "cross_entropy":
        raise ValueError("the references expect a softmax output with cross_entropy")


def torch_contender(doc: dict, params: Params, X: np.ndarray, Y: np.ndarray) -> Framework | None:
    """PyTorch eager with torch.nn.functional; F.cross_entropy on the logits, class indices."""
    try:
        import torch
    except ImportError:
        return None
    _check_output(doc)
    F = torch.nn.functional
    tp = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in params.items()}
    x = torch.from_numpy(X)
    labels = torch.from_numpy(np.argmax(Y, axis=1))
    layers = _layers(doc)

    def logits() -> Any:
        outputs = {"input": x}
        h = x
        for i, kind, layer in layers:
            if kind == "dense":
                z = F.linear(h, tp[f"W{i}"], tp.get(f"b{i}"))
            elif kind == "layernorm":
                eps = layer.get("eps", EPS)
                z = F.layer_norm(h, (h.shape[1],), tp[f"gamma{i}"], tp[f"beta{i}"], eps)
            elif kind == "batchnorm":
                w, b, eps = tp[f"gamma{i}"], tp[f"beta{i}"], layer.get("eps", EPS)
                z = F.batch_norm(h, None, None, weight=w, bias=b, training=True, eps=eps)
            elif kind == "add":
                z = h + outputs[layer["from"]]
            else:
                raise ValueError(f"torch: unknown layer type {kind}")
            activation = layer.get("activation", "identity")
            if activation not in ("relu", "identity", "softmax"):
                raise ValueError(f"torch: activation {activation} is not supported here")
            h = torch.relu(z) if activation == "relu" else z
            if "name" in layer:
                outputs[layer["name"]] = h
        return h  # the softmax is inside F.cross_entropy

    def run() -> Any:
        for p in tp.values():
            p.grad = None
        value = F.cross_entropy(logits(), labels, reduction="mean")
        value.backward()
        return value

    def step() -> None:
        run()

    def check() -> Result:
        value = run()
        grads = {k: p.grad for k, p in tp.items()}
        missing = [k for k, g in grads.items() if g is None]
        if missing:
            raise RuntimeError(f"torch: no gradient for {missing}")
        return float(value.detach()), {
            k: g.numpy().copy() for k, g in grads.items() if g is not None
        }

    return Framework(TORCH, torch.__version__, step, check)


def _jax_loss_fn(jax: Any, doc: dict) -> Callable:
    """loss(params, x, y) in jax.numpy: the same network, written out by hand."""
    jnp = jax.numpy
    layers = _layers(doc)

    def normalize(h: Any, axis: int, gamma: Any, beta: Any, eps: float) -> Any:
        mu = jnp.mean(h, axis=axis, keepdims=True)
        var = jnp.mean((h - mu) ** 2, axis=axis, keepdims=True)
        return (h - mu) / jnp.sqrt(var + eps) * gamma + beta

    def loss(p: dict, x: Any, y: Any) -> Any:
        outputs = {"input": x}
        h = x
        for i, kind, layer in layers:
            eps = layer.get("eps", EPS)
            if kind == "dense":
                z = h @ p[f"W{i}"].T + (p[f"b{i}"] if f"b{i}" in p else 0)
            elif kind == "layernorm":
                z = normalize(h, 1, p[f"gamma{i}"], p[f"beta{i}"], eps)
            elif kind == "batchnorm":
                z = normalize(h, 0, p[f"gamma{i}"], p[f"beta{i}"], eps)
            elif kind == "add":
                z = h + outputs[layer["from"]]
            else:
                raise ValueError(f"jax: unknown layer type {kind}")
            h = jax.nn.relu(z) if layer.get("activation") == "relu" else z
            if "name" in layer:
                outputs[layer["name"]] = h
        return -(y * jax.nn.log_softmax(h, axis=1)).sum() / x.shape[0]

    return loss


def jax_contender(doc: dict, params: Params, X: np.ndarray, Y: np.ndarray) -> Framework | None:
    """jax.jit(jax.value_and_grad(loss)), waited for with block_until_ready (float32 only)."""
    try:
        import jax
    except ImportError:
        return None
    _check_output(doc)
    value_and_grad = jax.jit(jax.value_and_grad(_jax_loss_fn(jax, doc)))
    jp = {k: jax.device_put(v) for k, v in params.items()}
    x, y = jax.device_put(X), jax.device_put(Y)

    def step() -> None:
        jax.block_until_ready(value_and_grad(jp, x, y))

    def check() -> Result:
        value, grads = jax.block_until_ready(value_and_grad(jp, x, y))
        return float(value), {k: np.asarray(g) for k, g in grads.items()}

    return Framework(JAX, jax.__version__, step, check)


def versions() -> dict[str, str | None]:
    """The framework versions, None for those that cannot be imported."""
    found: dict[str, str | None] = {}
    for name, module in ((TORCH, "torch"), (JAX, "jax")):
        try:
            found[name] = __import__(module).__version__
        except ImportError:
            found[name] = None
    return found


# --- threads -----------------------------------------------------------------------------


_LIMITS: list[Any] = []  # threadpoolctl limits kept alive for the whole run


def blas_threads() -> int | None:
    """Threads of NumPy's BLAS (threadpoolctl), None when unknown."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    return counts[0] if counts else None


def pin(threads: int) -> str:
    """Restrict this thread, and every thread started after it, to `threads` CPUs.

    XLA sizes its thread pool by the CPUs this process may use and ignores its thread
    flags; pinning before jax is imported is what keeps JAX to the same number of cores.
    """
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    allowed = sorted(os.sched_getaffinity(0))
    if threads >= len(allowed):
        return f"CPUs {allowed} (all allowed)"
    os.sched_setaffinity(0, allowed[:threads])
    return f"pinned to CPU {allowed[:threads]} (sched_setaffinity, before jax is imported)"


def set_threads(threads: int | None) -> str:
    """NumPy's BLAS, PyTorch and JAX on the same number of threads; a report line.

    threads None keeps NumPy's BLAS as it is (all cores), gives PyTorch as many and JAX its
    default (all cores). Otherwise the process is pinned to that many CPUs first (see pin).
    """
    where = "all CPUs"
    if threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return "threads: cannot set NumPy's BLAS threads (threadpoolctl is not installed)"
        where = pin(threads)
        if "jax" in sys.modules:
            where += "; JAX was already imported, its pool may use more CPUs"
        _LIMITS.append(threadpool_limits(limits=threads, user_api="blas"))
    count = blas_threads()
    try:
        import torch
    except ImportError:
        return f"threads: NumPy BLAS {count or 'unknown'}; PyTorch not installed; {where}"
    if count is not None:
        torch.set_num_threads(count)
    return (
        f"threads: NumPy BLAS {count if count is not None else 'unknown'}, PyTorch intra-op "
        f"{torch.get_num_threads()} (torch.set_num_threads to match), JAX its default pool; "
        f"{where}"
    )


# --- the correctness guard ---------------------------------------------------------------


def _errors(got: Result, ref: Result) -> dict[str, tuple[float, float]]:
    """Per gradient: (largest |g - ref| / largest |ref|, ||g - ref|| / ||ref||), in float64."""
    errors = {}
    for key in sorted(ref[1]):
        have = np.asarray(got[1][key], dtype=np.float64)
        want = np.asarray(ref[1][key], dtype=np.float64)
        diff = have - want
        entry = float(np.max(np.abs(diff))) / max(float(np.max(np.abs(want))), 1e-30)
        norm = float(np.linalg.norm(diff)) / max(float(np.linalg.norm(want)), 1e-30)
        errors[key] = (entry, norm)
    return errors


def compare(label: str, got: Result, ref: Result, rtol: float, normwise: bool) -> list[str]:
    """Disagreements of got with ref: the loss, then every gradient, entrywise (relative to
    the largest entry) or, with normwise, in the Frobenius norm."""
    problems = []
    if abs(got[0] - ref[0]) > rtol * max(abs(ref[0]), 1e-30):
        problems.append(f"{label}: loss {got[0]!r} vs {ref[0]!r} (tolerance {rtol:.0e})")
    if set(got[1]) != set(ref[1]):
        return problems + [f"{label}: gradient keys {sorted(got[1])} vs {sorted(ref[1])}"]
    for key in sorted(ref[1]):
        have, want = np.shape(got[1][key]), np.shape(ref[1][key])
        if have != want:
            problems.append(f"{label}: {key} shape {have} vs {want}")
    if problems:
        return problems
    metric = "norm-wise" if normwise else "entrywise"
    for key, (entry, norm) in _errors(got, ref).items():
        err = norm if normwise else entry
        if not err <= rtol:
            problems.append(
                f"{label}: {key} {metric} relative error {err:.2e} (tolerance {rtol:.0e})"
            )
    return problems


def worst(got: Result, ref: Result) -> str:
    """The largest relative errors over the loss and the gradients (for the report)."""
    loss = abs(got[0] - ref[0]) / max(abs(ref[0]), 1e-30)
    errors = _errors(got, ref).values()
    entry = max(e for e, _ in errors)
    norm = max(n for _, n in errors)
    return f"loss {loss:.1e}, gradients entrywise {entry:.1e}, norm-wise {norm:.1e}"


@dataclass
class Case:
    """One config ready to time: its float32 module, parameters, data and contenders."""

    config: Config
    doc: dict
    module: ModuleType
    params: Params
    X: np.ndarray
    Y: np.ndarray
    frameworks: list[Framework]


def prepare(config: Config, settings: Settings, folder: Path) -> tuple[Case, list[str], str]:
    """Generate both dtypes, check them against the references; (case, problems, summary)."""
    name = f"{config.key.lower()}_{config.norm}"
    shape = (settings.width, settings.blocks, settings.classes)
    doc32 = residual_doc(name, config.norm, *shape, "float32")
    doc64 = residual_doc(f"{name}_f64", config.norm, *shape, "float64")
    problems: list[str] = []
    summary = []

    # float64: symbp against PyTorch in float64 on the same float64 parameters and data
    module64 = build_module(doc64, folder)
    params64 = perturbed(module64.init_params(SEED), SEED + 1)
    X64, Y64 = random_batch(doc64, settings.batch, SEED + 2, np.float64)
    mine64 = module64.loss_and_grads(params64, X64, Y64)
    torch64 = torch_contender(doc64, params64, X64, Y64)
    if torch64 is not None:
        ref64 = torch64.check()
        problems += compare("float64 symbp vs PyTorch", mine64, ref64, FLOAT64_RTOL, False)
        summary.append(f"float64 vs PyTorch: {worst(mine64, ref64)}")

    # float32: the timed module, against PyTorch float32, itself with a workspace, and JAX
    module = build_module(doc32, folder)
    params = perturbed(module.init_params(SEED), SEED + 1)
    X, Y = random_batch(doc32, settings.batch, SEED + 2, np.float32)
    mine = module.loss_and_grads(params, X, Y)
    problems += [
        f"float32 symbp: gradient {k} is {g.dtype}"
        for k, g in mine[1].items()
        if g.dtype != np.float32
    ]
    workspace = module.make_workspace(settings.batch)
    with_ws = module.loss_and_grads(params, X, Y, workspace)
    problems += compare("float32 symbp + workspace vs symbp", with_ws, mine, 1e-6, False)
    fws = [
        fw
        for fw in (torch_contender(doc32, params, X, Y), jax_contender(doc32, params, X, Y))
        if fw is not None
    ]
    for fw in fws:
        ref = fw.check()
        problems += compare(f"float32 symbp vs {fw.name}", mine, ref, FLOAT32_RTOL, True)
        summary.append(f"float32 vs {fw.name}: {worst(mine, ref)}")
    text = (
        f"Correctness guard passed (largest relative errors): {'; '.join(summary)}. "
        f"Tolerances: float64 {FLOAT64_RTOL:.0e} entrywise, float32 {FLOAT32_RTOL:.0e} "
        f"norm-wise (relu kinks, see the docstring)."
    )
    if not fws:
        text = (
            "**Not checked against a framework** (neither PyTorch nor JAX is installed); "
            "only symbp with a workspace against symbp without one."
        )
    return Case(config, doc32, module, params, X, Y, fws), problems, text


# --- timing ------------------------------------------------------------------------------


def steps(case: Case, batch: int) -> dict[str, Step]:
    """Every timed call of a config: symbp without and with a workspace, then the frameworks."""
    module, params, X, Y = case.module, case.params, case.X, case.Y
    workspace = module.make_workspace(batch)
    table: dict[str, Step] = {
        SYMBP: lambda: module.loss_and_grads(params, X, Y),
        SYMBP_WS: lambda: module.loss_and_grads(params, X, Y, workspace),
    }
    for fw in case.frameworks:
        table[fw.name] = fw.step
    return table


def settled_round_robin(table: dict[str, Step], settings: Settings) -> dict[str, Timing]:
    """bench.timing.round_robin with an idle pause before every sample.

    After a call, OpenBLAS's worker threads keep spinning (for about 0.1 s by default),
    and so, more briefly, do PyTorch's OpenMP and XLA's threads. On two cores the next
    contender then shares a core with a spinning neighbour: measured here, a PyTorch step
    right after a symbp step took 161 ms against 88-106 ms alone (97 ms after a 0.3 s
    pause). The pause lets every contender start from idle pools, as in its own process.
    """
    inner = {name: calibrate(step, settings.target) for name, step in table.items()}
    samples: dict[str, list[float]] = {name: [] for name in table}
    names = list(table)
    for r in range(settings.repeat):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(settings.settle)
            start = time.perf_counter()
            for _ in range(inner[name]):
                table[name]()
            samples[name].append((time.perf_counter() - start) / inner[name])
    return {name: summarize(values) for name, values in samples.items()}


def describe(case: Case, settings: Settings) -> str:
    w, c = settings.width, settings.classes
    return (
        f"{case.config.title}: {w} -> stem {w} relu -> {settings.blocks} x "
        f"[dense {w}, {case.config.norm} relu, dense {w}, add] -> {c} softmax, "
        f"batch {settings.batch}, float32, row layout"
    )


@dataclass
class Measured:
    """One config's timings."""

    key: str
    text: str
    times: dict[str, Timing]


def cell(times: dict[str, Timing], name: str, installed: bool) -> str:
    """'ms (ratio to PyTorch)' for a contender, or why it has no figure."""
    if name not in times:
        return "-" if installed else "not installed"
    t = times[name].median
    if name == TORCH or TORCH not in times:
        return report.ms(t)
    return f"{report.ms(t)} ({t / times[TORCH].median:.2f}x)"


def results_table(rows: list[Measured], found: dict[str, str | None]) -> str:
    """One row per config: symbp, symbp + workspace, PyTorch, JAX."""
    names = [SYMBP, SYMBP_WS, TORCH, JAX]
    installed = {SYMBP: True, SYMBP_WS: True, TORCH: found[TORCH] is not None}
    installed[JAX] = found[JAX] is not None
    headers = ["config"] + [f"{n} ms" + ("" if n == TORCH else " (/ PyTorch)") for n in names]
    body = [[m.key] + [cell(m.times, n, installed[n]) for n in names] for m in rows]
    return report.table(headers, body)


def goal_line(m: Measured) -> str:
    if TORCH not in m.times:
        return f"- {m.key}: no PyTorch figure, the {GOAL}x goal cannot be judged"
    torch_t = m.times[TORCH].median
    parts = []
    for name in (SYMBP, SYMBP_WS):
        r = m.times[name].median / torch_t
        parts.append(f"{name} {r:.2f}x ({'met' if r <= GOAL else 'NOT met'})")
    return f"- {m.key}, goal symbp <= {GOAL}x PyTorch eager: {'; '.join(parts)}"


# --- statement profile -------------------------------------------------------------------


def line_profile(func: Callable, call: Callable[[], object], calls: int) -> dict[int, float]:
    """Seconds per call spent on each line of func (calls into other functions included)."""
    code = func.__code__
    totals: dict[int, float] = defaultdict(float)
    state: list[Any] = [None, 0.0]  # current line, when it started

    def local(frame: Any, event: str, arg: Any) -> Any:
        now = time.perf_counter()
        if state[0] is not None:
            totals[state[0]] += now - state[1]
        state[0] = frame.f_lineno if event == "line" else None
        state[1] = time.perf_counter()
        return local

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code is code else None

    call()  # warm-up
    sys.settrace(tracer)
    try:
        for _ in range(calls):
            call()
    finally:
        sys.settrace(None)
    return {line: t / calls for line, t in totals.items()}


def _is_product(statement: str) -> bool:
    return "matmul" in statement or "@" in statement


def _profile_table(per_line: dict[int, float], source: dict[int, str], lines: list[int]) -> str:
    total = sum(per_line.values())
    rows = []
    for line in lines:
        text = source[line] if len(source[line]) <= 100 else source[line][:97] + "..."
        t = per_line[line]
        rows.append([str(line), report.ms(t), f"{t / total:.1%}", f"`{text}`"])
    return report.table(["line", "ms per call", "share", "statement"], rows)


def profile_section(case: Case, settings: Settings, top: int = 8) -> str:
    """The generated loss_and_grads' costliest statements (with a workspace): the products
    against everything else, then the costliest of each."""
    func = case.module.loss_and_grads
    workspace = case.module.make_workspace(settings.batch)
    calls = 3 if settings.quick else 10
    per_line = line_profile(func, lambda: func(case.params, case.X, case.Y, workspace), calls)
    total = sum(per_line.values())
    path = func.__code__.co_filename
    source = {line: linecache.getline(path, line).strip() for line in per_line}
    ranked = sorted(per_line, key=lambda line: -per_line[line])
    products = [line for line in ranked if _is_product(source[line])]
    others = [line for line in ranked if not _is_product(source[line])]
    share = sum(per_line[line] for line in products) / total
    return (
        f"Statement profile of the generated `loss_and_grads` with a workspace "
        f"({case.config.key}; line tracer, {calls} calls, {report.ms(total)} ms per call "
        f"traced): {len(products)} product statements (`matmul`/`@`) take {share:.0%}, "
        f"the other {len(others)} statements {1 - share:.0%}. The costliest products:\n\n"
        f"{_profile_table(per_line, source, products[: top // 2])}\n\n"
        f"The costliest other statements:\n\n{_profile_table(per_line, source, others[:top])}\n"
    )


# --- generation time ---------------------------------------------------------------------


def time_generate_cli(path: Path, repeat: int) -> float:
    """Median wall seconds of `python -m symbp.cli generate FILE -o DIR` in a fresh process."""
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="symbp-graphs-cli-") as out:
            command = [sys.executable, "-m", "symbp.cli", "generate", str(path), "-o", out]
            start = time.perf_counter()
            done = subprocess.run(command, env=genscale.child_env(), capture_output=True, text=True)
            runs.append(time.perf_counter() - start)
        if done.returncode != 0:
            tail = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise genscale.CliError(f"`{' '.join(command)}` exited {done.returncode}: {tail}")
    return statistics.median(runs)


def generation_section(settings: Settings, folder: Path) -> tuple[str, bool]:
    """CLI wall time for a deep dense net and a deep residual net; (markdown, ok)."""
    meanwhile = interference.watch()
    depth, blocks = (10, 5) if settings.quick else (100, 50)
    repeat = 1 if settings.quick else 3
    dense_text = f"{depth} dense tanh layers (width 8) + sigmoid output, bce, column"
    residual_text = (
        f"stem + {blocks} residual blocks (dense, layernorm relu, dense, add; width 16) "
        "+ softmax output, row"
    )
    cases = [
        ("dense", dense_text, deep_dense_doc(depth)),
        (
            "residual",
            residual_text,
            residual_doc(f"res_{blocks}x16", "layernorm", 16, blocks, 4, "float32"),
        ),
    ]
    rows, ok = [], True
    for kind, text, doc in cases:
        layers = len(doc["layers"])
        try:
            seconds = time_generate_cli(write_doc(doc, folder / "gen"), repeat)
        except genscale.CliError as exc:
            rows.append([text, str(layers), "FAILED", str(exc)[:200]])
            ok = False
            continue
        goal = GEN_GOALS[kind]
        verdict = f"<= {goal:.0f} s: {'met' if seconds <= goal else 'NOT met'}"
        if settings.quick:
            verdict = f"(goal {goal:.0f} s is for the full size)"
        rows.append([text, str(layers), f"{seconds:.2f}", verdict])
    table = report.table(["network", "layers", "wall s (median)", "goal"], rows)
    command = "`python -m symbp.cli generate FILE -o DIR`"
    return (
        f"## Generation time ({command}, fresh process, start-up included, "
        f"median of {repeat})\n\n{table}\n\n{interference.line(meanwhile)}\n",
        ok,
    )


# --- the run -----------------------------------------------------------------------------


def bench_config(config: Config, settings: Settings, folder: Path) -> Measured | None:
    """Check, time and report one config; None when the check fails."""
    meanwhile = interference.watch()
    case, problems, checked = prepare(config, settings, folder)
    print(f"## {config.key}: {describe(case, settings)}\n", flush=True)
    if problems:
        print("**ABORTED: symbp disagrees with the references**\n")
        print("\n".join(f"- {p}" for p in problems) + "\n", flush=True)
        return None
    print(checked + "\n", flush=True)
    times = settled_round_robin(steps(case, settings.batch), settings)
    rows = []
    for name, t in times.items():
        ratio = f"{t.median / times[TORCH].median:.2f}x" if TORCH in times else "-"
        rows.append([name, report.ms(t.median), ratio, f"{t.spread:.0%}"])
    print(report.table(["contender", "median ms", "vs PyTorch", "IQR/median"], rows) + "\n")
    print(interference.line(meanwhile) + "\n", flush=True)
    if settings.profile:
        print(profile_section(case, settings), flush=True)
    return Measured(config.key, describe(case, settings), times)


def header(
    settings: Settings, argv: Sequence[str], found: dict[str, str | None], threads_line: str
) -> str:
    from bench.run import load_line, source_line

    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    mode = "quick" if settings.quick else "full"
    frameworks = ", ".join(f"{k} {v or 'not installed'}" for k, v in found.items())
    return "\n".join(
        [
            "# symbp graph benchmark",
            "",
            f"- date: {now}; mode: {mode}; repeats: {settings.repeat}; "
            f"idle {settings.settle:g} s before each sample",
            f"- command: `{' '.join(['python bench/graphs.py', *argv])}`",
            f"- {source_line()}",
            f"- Python {platform.python_version()}, NumPy {np.__version__}, {platform.machine()}",
            f"- {frameworks}",
            f"- {blas.kernel_line()}",
            f"- {blas.env_line()}",
            f"- {threads_line}",
            f"- {load_line()}",
            "",
        ]
    )


def parse(argv: Sequence[str]) -> tuple[Settings, list[Config]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 64, batch 64, few repeats")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, e.g. R1")
    parser.add_argument("--repeat", type=int, help="timing rounds per config (median taken)")
    parser.add_argument("--profile", action="store_true", help="statement profile of symbp")
    parser.add_argument(
        "--settle", type=float, help="idle seconds before each sample (default 0.25; quick 0)"
    )
    parser.add_argument(
        "--threads", type=int, help="NumPy BLAS and PyTorch threads (default: BLAS's own count)"
    )
    args = parser.parse_args(list(argv))
    keys = [k.strip().upper() for k in args.configs.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CONFIGS]
    if unknown or not keys:
        names = ", ".join(unknown) or "(none)"
        parser.error(f"unknown config(s) {names}; choose from {', '.join(CONFIGS)}")
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 15)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    width, batch, target = (64, 64, 0.002) if args.quick else (1024, 256, 0.01)
    settle = args.settle if args.settle is not None else (0.0 if args.quick else 0.25)
    if settle < 0:
        parser.error("--settle must not be negative")
    settings = Settings(
        args.quick, repeat, target, settle, width, batch, 4, 10, args.profile, args.threads
    )
    return settings, [CONFIGS[k] for k in keys]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    settings, configs = parse(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="symbp-graphs-") as tmp:
        # first, while this process has no thread pools running and is not pinned: the
        # children then start on every CPU, and nothing multithreaded is forked
        generation, generated = generation_section(settings, Path(tmp))
        threads_line = set_threads(settings.threads)  # before jax is imported
        found = versions()
        print(header(settings, argv, found, threads_line), flush=True)
        measured: list[Measured] = []
        ok = True
        for config in configs:
            result = bench_config(config, settings, Path(tmp))
            ok = ok and result is not None
            if result is not None:
                measured.append(result)
    if measured:
        print("## Summary (median ms per gradient step; ratio to PyTorch eager, same process)\n")
        print(results_table(measured, found) + "\n")
        print("\n".join(goal_line(m) for m in measured) + "\n")
    print(generation)
    pools = blas.thread_pools()
    print("Thread pools at the end: " + ("; ".join(pools) if pools else "unknown"))
    print(f"\nTotal benchmark time: {time.perf_counter() - start:.1f} s")
    return 0 if ok and generated else 1


if __name__ == "__main__":
    sys.exit(main())
