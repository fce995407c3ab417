#!/usr/bin/env python
"""Activation sweep: one training step of symbp's generated code against PyTorch eager (and JAX)
for every built-in hidden activation and a custom mish.

    python bench/activations.py [--quick] [--repeat N] [--activations relu,gelu]
                                [--block S] [--settle S] [--threads N] [--profile]

The network is 784-1024-1024-10 (--quick: 64-64-64-10), float32, row layout, the same
activation in both hidden layers, a softmax output with cross_entropy (mean), batch 256
(--quick: 64). Activations: identity, sigmoid, tanh, relu, leaky_relu, elu, softplus,
swish, gelu (the built-ins) and mish, declared as a custom activation
`activations: {mish: "x*tanh(log(1 + exp(x)))"}`.

For each activation the YAML file is generated with symbp (`symbp.generate` +
`symbp.write_files`) in float64 and in float32. The references share no code with symbp:

- PyTorch eager: `F.linear`, the activation (`torch.sigmoid`, `torch.tanh`, `torch.relu`,
  `F.leaky_relu` slope 0.01, `F.elu` alpha 1, `F.softplus` beta 1, `F.silu`, `F.gelu` (the
  exact erf form), mish written as `x * tanh(F.softplus(x))`), then `F.cross_entropy` on
  the logits with class indices; a step is `.grad = None` for every parameter, forward,
  loss, `backward()`;
- JAX: the same function in `jax.numpy` (`jax.nn.gelu(approximate=False)`, ...),
  `jax.jit(jax.value_and_grad(loss))`, each call waited for.

Correctness first: in float64, symbp's loss and every gradient must agree with PyTorch's
(float64) to FLOAT64_RTOL of each gradient's largest entry; in float32, the timed module
with a workspace must agree with itself without one, and with PyTorch and JAX in float32
norm-wise (FLOAT32_RTOL; a relu unit within rounding of its kink may flip). Any
disagreement aborts with exit status 1 before anything is timed.

Then symbp's `loss_and_grads(params, X, Y, workspace)` (the workspace from
`make_workspace(batch)`), PyTorch and JAX are timed in this one process with
bench.timing.blocks: per contender a block of back-to-back calls after an idle pause,
the order rotating every round (so that one contender's spinning thread pools do not
run on the CPU the next one needs); medians over the rounds.

Goals (from the issue): every built-in at most 1.10x PyTorch eager, gelu at most 2x (its
erf written in NumPy alone), the custom mish at most 1.25x. --profile adds, for every
activation slower than 1.10x PyTorch (every goal missed, and gelu's even when met), the
costliest statements of the generated loss_and_grads (a line tracer: figures include
its small per-line cost).

Without PyTorch and JAX the script still runs, times symbp alone and says it checked
nothing. Exit status: 0 on success (goals missed included), 1 when a check fails, 2 on
bad arguments. Importable: main(argv) returns the exit status.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import datetime  # noqa: E402
import linecache  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bench import blas, interference, report  # noqa: E402
from bench.graphs import (  # noqa: E402
    Framework,
    build_module,
    compare,
    line_profile,
    set_threads,
    versions,
    worst,
)
from bench.timing import Step, Timing, blocks  # noqa: E402

Params = dict[str, np.ndarray]
Result = tuple[float, Params]

ACTIVATIONS = (
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "softplus",
    "swish",
    "gelu",
    "mish",
)
CUSTOM = {"mish": "x*tanh(log(1 + exp(x)))"}
GOALS = {"gelu": 2.0, "mish": 1.25}  # symbp / PyTorch eager; every other built-in:
GOAL = 1.10
SYMBP, TORCH, JAX = "symbp + workspace", "PyTorch eager", "JAX jit(value_and_grad)"
FLOAT64_RTOL = 1e-8  # max |g - ref| relative to max |ref|, per gradient and for the loss
FLOAT32_RTOL = 1e-2  # ||g - ref|| relative to ||ref||, per gradient (and for the loss)
SEED = 0


@dataclass(frozen=True)
class Settings:
    """Sizes and how long to measure."""

    quick: bool
    repeat: int
    block: float  # seconds of timed calls per block
    settle: float  # idle seconds before each block
    inputs: int
    width: int
    classes: int
    batch: int
    activations: tuple[str, ...]
    threads: int | None
    profile: bool


def network_doc(activation: str, settings: Settings, dtype: str) -> dict:
    """inputs -> width (activation) -> width (activation) -> classes softmax, cross_entropy."""
    doc: dict[str, Any] = {
        "name": f"act_{activation}_{dtype}",
        "layout": "row",
        "dtype": dtype,
        "input": settings.inputs,
        "layers": [
            {"units": settings.width, "activation": activation},
            {"units": settings.width, "activation": activation},
            {"units": settings.classes, "activation": "softmax"},
        ],
        "loss": "cross_entropy",
        "reduction": "mean",
    }
    if activation in CUSTOM:
        doc["activations"] = {activation: CUSTOM[activation]}
    return doc


def perturbed(params: Params, seed: int) -> Params:
    """init_params with small random biases (zero biases would hide mistakes in db)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in params.items():
        value = value.copy()
        if value.ndim == 1:
            value += (0.1 * rng.standard_normal(value.shape)).astype(value.dtype)
        out[key] = value
    return out


def random_batch(settings: Settings, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """X (batch, inputs) standard normal, Y one-hot (batch, classes) of random labels."""
    rng = np.random.default_rng(SEED + 2)
    X = rng.standard_normal((settings.batch, settings.inputs)).astype(dtype)
    labels = rng.integers(0, settings.classes, settings.batch)
    return X, np.eye(settings.classes, dtype=dtype)[labels]


# --- the references ----------------------------------------------------------------------


def _torch_activation(torch: Any, name: str) -> Callable[[Any], Any]:
    F = torch.nn.functional
    table: dict[str, Callable[[Any], Any]] = {
        "identity": lambda z: z,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
        "elu": lambda z: F.elu(z, alpha=1.0),
        "softplus": lambda z: F.softplus(z, beta=1.0),
        "swish": F.silu,
        "gelu": F.gelu,  # approximate="none": the exact erf form
        "mish": lambda z: z * torch.tanh(F.softplus(z)),
    }
    return table[name]


def torch_contender(
    activation: str, params: Params, X: np.ndarray, Y: np.ndarray
) -> Framework | None:
    """PyTorch eager, torch.nn.functional; F.cross_entropy on the logits, class indices."""
    try:
        import torch
    except ImportError:
        return None
    F = torch.nn.functional
    act = _torch_activation(torch, activation)
    tp = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in params.items()}
    x = torch.from_numpy(X)
    labels = torch.from_numpy(np.argmax(Y, axis=1))

    def run() -> Any:
        for p in tp.values():
            p.grad = None
        h = act(F.linear(x, tp["W1"], tp["b1"]))
        h = act(F.linear(h, tp["W2"], tp["b2"]))
        value = F.cross_entropy(F.linear(h, tp["W3"], tp["b3"]), labels)
        value.backward()
        return value

    def step() -> None:
        run()

    def check() -> Result:
        value = run()
        grads = {}
        for k, p in tp.items():
            if p.grad is None:
                raise RuntimeError(f"torch: no gradient for {k}")
            grads[k] = p.grad.numpy().copy()
        return float(value.detach()), grads

    return Framework(TORCH, torch.__version__, step, check)


def jax_contender(
    activation: str, params: Params, X: np.ndarray, Y: np.ndarray
) -> Framework | None:
    """jax.jit(jax.value_and_grad(loss)), waited for with block_until_ready (float32)."""
    try:
        import jax
    except ImportError:
        return None
    jnp, nn = jax.numpy, jax.nn
    table: dict[str, Callable[[Any], Any]] = {
        "identity": lambda z: z,
        "sigmoid": nn.sigmoid,
        "tanh": jnp.tanh,
        "relu": nn.relu,
        "leaky_relu": lambda z: nn.leaky_relu(z, 0.01),
        "elu": lambda z: nn.elu(z, 1.0),
        "softplus": nn.softplus,
        "swish": nn.silu,
        "gelu": lambda z: nn.gelu(z, approximate=False),
        "mish": lambda z: z * jnp.tanh(nn.softplus(z)),
    }
    act = table[activation]

    def loss(p: dict, x: Any, y: Any) -> Any:
        h = act(x @ p["W1"].T + p["b1"])
        h = act(h @ p["W2"].T + p["b2"])
        z = h @ p["W3"].T + p["b3"]
        return -(y * nn.log_softmax(z, axis=1)).sum() / x.shape[0]

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    jp = {k: jax.device_put(v) for k, v in params.items()}
    x, y = jax.device_put(X), jax.device_put(Y)

    def step() -> None:
        jax.block_until_ready(value_and_grad(jp, x, y))

    def check() -> Result:
        value, grads = jax.block_until_ready(value_and_grad(jp, x, y))
        return float(value), {k: np.asarray(g) for k, g in grads.items()}

    return Framework(JAX, jax.__version__, step, check)


# --- one activation ----------------------------------------------------------------------


@dataclass
class Case:
    """One activation ready to time."""

    activation: str
    module: ModuleType
    params: Params
    X: np.ndarray
    Y: np.ndarray
    workspace: dict
    frameworks: list[Framework]
    checked: str


def prepare(activation: str, settings: Settings, folder: Path) -> tuple[Case, list[str]]:
    """Generate both dtypes and check them against the references; (case, problems)."""
    problems: list[str] = []
    summary: list[str] = []

    module64 = build_module(network_doc(activation, settings, "float64"), folder)
    params64 = perturbed(module64.init_params(SEED), SEED + 1)
    X64, Y64 = random_batch(settings, np.float64)
    torch64 = torch_contender(activation, params64, X64, Y64)
    if torch64 is not None:
        mine64 = module64.loss_and_grads(params64, X64, Y64)
        ref64 = torch64.check()
        problems += compare("float64 symbp vs PyTorch", mine64, ref64, FLOAT64_RTOL, False)
        summary.append(f"float64 vs PyTorch: {worst(mine64, ref64)}")

    module = build_module(network_doc(activation, settings, "float32"), folder)
    params = perturbed(module.init_params(SEED), SEED + 1)
    X, Y = random_batch(settings, np.float32)
    workspace = module.make_workspace(settings.batch)
    mine = module.loss_and_grads(params, X, Y)
    # copies: the gradients returned with a workspace are its arrays, overwritten by the next call
    value, grads = module.loss_and_grads(params, X, Y, workspace)
    with_ws = (value, {k: np.array(g) for k, g in grads.items()})
    problems += [
        f"float32 symbp: gradient {k} is {g.dtype}"
        for k, g in with_ws[1].items()
        if g.dtype != np.float32
    ]
    problems += compare("float32 symbp + workspace vs symbp", with_ws, mine, 1e-6, False)
    built = (
        torch_contender(activation, params, X, Y),
        jax_contender(activation, params, X, Y),
    )
    fws = [fw for fw in built if fw is not None]
    for fw in fws:
        ref = fw.check()
        problems += compare(f"float32 symbp vs {fw.name}", with_ws, ref, FLOAT32_RTOL, True)
        summary.append(f"float32 vs {fw.name}: {worst(with_ws, ref)}")
    if not fws:
        checked = (
            "nothing checked against a reference (neither PyTorch nor JAX is installed); "
            "only symbp with a workspace against symbp without one"
        )
    elif torch64 is None:
        checked = "not checked in float64 (PyTorch is not installed); " + "; ".join(summary)
    else:
        checked = "; ".join(summary)
    return Case(activation, module, params, X, Y, workspace, fws, checked), problems


def steps(case: Case) -> dict[str, Step]:
    module, params, X, Y, ws = case.module, case.params, case.X, case.Y, case.workspace
    table: dict[str, Step] = {SYMBP: lambda: module.loss_and_grads(params, X, Y, ws)}
    for fw in case.frameworks:
        table[fw.name] = fw.step
    return table


@dataclass
class Measured:
    case: Case
    times: dict[str, Timing]
    others: str  # other processes' CPU use meanwhile

    @property
    def ratio(self) -> float | None:
        if TORCH not in self.times:
            return None
        return self.times[SYMBP].median / self.times[TORCH].median


def goal_of(activation: str) -> float:
    return GOALS.get(activation, GOAL)


# --- the statement profile ---------------------------------------------------------------


def profile_section(case: Case, settings: Settings, top: int = 8) -> str:
    """The costliest statements of the generated loss_and_grads (with a workspace)."""
    func = case.module.loss_and_grads
    args = (case.params, case.X, case.Y, case.workspace)
    calls = 3 if settings.quick else 20
    per_line = line_profile(func, lambda: func(*args), calls)
    total = sum(per_line.values())
    path = func.__code__.co_filename
    rows = []
    for line in sorted(per_line, key=lambda k: -per_line[k])[:top]:
        text = linecache.getline(path, line).strip()
        text = text if len(text) <= 110 else text[:107] + "..."
        share = per_line[line] / total
        rows.append([str(line), report.ms(per_line[line]), f"{share:.1%}", f"`{text}`"])
    table = report.table(["line", "ms per call", "share", "statement"], rows)
    return (
        f"### {case.activation}: costliest statements of `loss_and_grads` with a workspace\n\n"
        f"Line tracer, {calls} calls, {report.ms(total)} ms per call traced (products "
        f"included; helpers such as `_erf` are charged to the line that calls them):\n\n"
        f"{table}\n"
    )


# --- the report --------------------------------------------------------------------------


def cell(times: dict[str, Timing], name: str, installed: bool) -> str:
    if name not in times:
        return "-" if installed else "not installed"
    return report.ms(times[name].median)


def results_table(rows: list[Measured], found: dict[str, str | None]) -> str:
    """activation | symbp ms | PyTorch ms | ratio | JAX ms."""
    headers = ["activation", "symbp ms", "PyTorch ms", "ratio", "JAX ms"]
    body = []
    for m in rows:
        ratio = "-" if m.ratio is None else f"{m.ratio:.2f}x"
        body.append(
            [
                m.case.activation,
                cell(m.times, SYMBP, True),
                cell(m.times, TORCH, found[TORCH] is not None),
                ratio,
                cell(m.times, JAX, found[JAX] is not None),
            ]
        )
    return report.table(headers, body)


def detail_table(rows: list[Measured]) -> str:
    """IQR/median of every figure, JAX against PyTorch, other processes' CPU use."""
    headers = ["activation", "symbp IQR", "PyTorch IQR", "JAX IQR", "JAX / PyTorch", "others"]
    body = []
    for m in rows:
        t = m.times
        spreads = [f"{t[n].spread:.0%}" if n in t else "-" for n in (SYMBP, TORCH, JAX)]
        jax_ratio = f"{t[JAX].median / t[TORCH].median:.2f}x" if JAX in t and TORCH in t else "-"
        body.append([m.case.activation, *spreads, jax_ratio, m.others])
    return report.table(headers, body)


def goal_lines(rows: list[Measured]) -> list[str]:
    lines = []
    for m in rows:
        goal = goal_of(m.case.activation)
        if m.ratio is None:
            lines.append(f"- {m.case.activation}: no PyTorch figure, goal <= {goal:.2f}x unjudged")
            continue
        verdict = "met" if m.ratio <= goal else "NOT met"
        lines.append(f"- {m.case.activation}: {m.ratio:.2f}x, goal <= {goal:.2f}x: {verdict}")
    return lines


def missed(m: Measured) -> bool:
    return m.ratio is not None and m.ratio > goal_of(m.case.activation)


def profiled(m: Measured) -> bool:
    """Profiled with --profile: slower than the built-ins' goal (so gelu too, met or not)."""
    return m.ratio is not None and m.ratio > GOAL


def header(settings: Settings, argv: Sequence[str], found: dict[str, str | None], threads: str):
    from bench.run import load_line, source_line

    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    sizes = f"{settings.inputs}-{settings.width}-{settings.width}-{settings.classes}"
    frameworks = ", ".join(f"{k} {v or 'not installed'}" for k, v in found.items())
    return "\n".join(
        [
            "# symbp activation sweep",
            "",
            f"- date: {now}; mode: {'quick' if settings.quick else 'full'}; "
            f"repeats: {settings.repeat}",
            f"- network: {sizes}, batch {settings.batch}, float32, row layout, softmax + "
            "cross_entropy (mean), the activation in both hidden layers",
            f"- timing: blocks of back-to-back calls per contender (~{settings.block * 1000:g} "
            f"ms, at least 2 calls, after one untimed call), idle {settings.settle:g} s before "
            "each block, order rotating every round (bench.timing.blocks)",
            f"- command: `{' '.join(['python bench/activations.py', *argv])}`",
            f"- {source_line()}",
            f"- Python {platform.python_version()}, NumPy {np.__version__}, {platform.machine()}",
            f"- {frameworks}",
            f"- {blas.kernel_line()}",
            f"- {blas.env_line()}",
            f"- {blas.spin_line()}",
            f"- {threads}",
            f"- {load_line()}",
            "",
        ]
    )


def parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 wide, batch 64, few repeats")
    parser.add_argument("--repeat", type=int, help="blocks per contender (median taken)")
    parser.add_argument(
        "--activations", default=",".join(ACTIVATIONS), help="comma-separated subset"
    )
    parser.add_argument("--block", type=float, help="seconds per block (default 0.05; quick 0.005)")
    parser.add_argument("--settle", type=float, help="idle seconds before each block (0.25)")
    parser.add_argument("--threads", type=int, help="NumPy BLAS and PyTorch threads")
    parser.add_argument("--profile", action="store_true", help="profile those above 1.10x")
    args = parser.parse_args(list(argv))
    chosen = tuple(a.strip() for a in args.activations.split(",") if a.strip())
    unknown = [a for a in chosen if a not in ACTIVATIONS]
    if unknown or not chosen:
        names = ", ".join(unknown) or "(none)"
        parser.error(f"unknown activation(s) {names}; choose from {', '.join(ACTIVATIONS)}")
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 15)
    block = args.block if args.block is not None else (0.005 if args.quick else 0.05)
    settle = args.settle if args.settle is not None else (0.02 if args.quick else 0.25)
    if repeat < 1 or block <= 0 or settle < 0:
        parser.error("--repeat must be at least 1, --block positive, --settle not negative")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    inputs, width, batch = (64, 64, 64) if args.quick else (784, 1024, 256)
    return Settings(
        args.quick,
        repeat,
        block,
        settle,
        inputs,
        width,
        10,
        batch,
        chosen,
        args.threads,
        args.profile,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    settings = parse(argv)
    start = time.perf_counter()
    threads = set_threads(settings.threads)  # before jax is imported
    found = versions()
    print(header(settings, argv, found, threads), flush=True)
    measured: list[Measured] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="symbp-activations-") as tmp:
        for activation in settings.activations:
            meanwhile = interference.watch()
            case, problems = prepare(activation, settings, Path(tmp))
            if problems:
                print(f"## {activation}: **ABORTED: symbp disagrees with the references**\n")
                print("\n".join(f"- {p}" for p in problems) + "\n", flush=True)
                failed = True
                continue
            times = blocks(steps(case), settings.repeat, settings.block, settings.settle)
            others = meanwhile.others()
            busy = "" if others is None or others < 0.1 else " (busy)"
            m = Measured(case, times, "?" if others is None else f"{others:.2f}{busy}")
            measured.append(m)
            print(f"- {activation}: {case.checked}", flush=True)
        if measured:
            print("\n## Results (median ms per training step; ratio symbp / PyTorch eager)\n")
            print(results_table(measured, found) + "\n")
            print("\n".join(goal_lines(measured)) + "\n")
            print("Spread of each median (IQR/median), JAX against PyTorch, and the CPUs")
            print("other processes used meanwhile (marked busy above 0.1: rerun):\n")
            print(detail_table(measured) + "\n", flush=True)
            if not any(m.case.frameworks for m in measured):
                print("**Nothing was checked**: neither PyTorch nor JAX is installed.\n")
        if settings.profile:
            for m in measured:
                if profiled(m):
                    print(profile_section(m.case, settings), flush=True)
    pools = blas.thread_pools()
    print("Thread pools at the end: " + ("; ".join(pools) if pools else "unknown"))
    print(f"\nTotal benchmark time: {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
