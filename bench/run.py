#!/usr/bin/env python
"""Benchmark symbp's generated loss_and_grads against a GEMM floor, textbook NumPy and frameworks.

    python bench/run.py [--quick] [--configs C1,C2] [--repeat N] [--layout row|column]
                        [--method blocks|round-robin] [--block S] [--settle S] [--no-generation]

Contenders are timed in blocks of back-to-back calls, one contender at a time, with an
idle pause before every block and the order rotating every round (bench.timing.blocks:
the thread pools of one contender no longer spin on the CPU the next one needs).
`--method round-robin` is the former interleaved method, kept as a control.

Prints markdown: one table per config, then generation-time scaling. Exit status 0 on
success, 1 when a config's gradients disagree with the references (that config is
skipped), 2 on bad arguments. Importable: main(argv) returns the exit status.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from itertools import pairwise  # noqa: E402
from types import ModuleType  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bench import blas, genscale, interference, memory, report, textbook  # noqa: E402
from bench.floor import gemm_floor  # noqa: E402
from bench.frameworks import Framework, jax_contender, torch_contender  # noqa: E402
from bench.nets import (  # noqa: E402
    CONFIGS,
    Config,
    Net,
    config_doc,
    net_of,
    perturb_biases,
    random_batch,
    to_layout,
    with_layout,
)
from bench.timing import Method, Step, Timing  # noqa: E402

Params = dict[str, np.ndarray]
Result = tuple[float, Params]

FLOOR, TEXTBOOK, SYMBP = "GEMM floor", "textbook NumPy", "symbp generated"
SYMBP_WS = "symbp + make_workspace"
FORWARD, OTHER_LAYOUT = "symbp forward only", "symbp other layout"
GRAD_RTOL = 2e-3  # max |g - ref| relative to max |ref|, per parameter, in float32
LOSS_RTOL = 1e-4
SEED = 0


@dataclass(frozen=True)
class Settings:
    """How long to measure."""

    quick: bool
    repeat: int
    method: Method  # blocks (seconds per block, idle seconds before each) or round-robin
    layout: str
    generation: bool = True  # the generation-time section at the end


@dataclass
class Case:
    """One config ready to run: modules, parameters and data in both layouts."""

    key: str
    net: Net
    module: ModuleType  # generated in the chosen layout
    other: ModuleType  # generated in the other layout
    params: Params
    other_params: Params
    X: np.ndarray
    Y: np.ndarray
    other_X: np.ndarray
    other_Y: np.ndarray


def build_module(doc: dict, folder: Path) -> ModuleType:
    """Generate the mapping's module with symbp.pipeline into folder and import it."""
    from symbp.check.gradcheck import import_path
    from symbp.pipeline import generate, write_files

    target = folder / doc["name"]
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    write_files(generate(path).files, target)
    return import_path(target / f"{doc['name']}.py")


def transposed(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


def prepare(config: Config, settings: Settings, folder: Path) -> Case:
    """Generate both layouts of the config and make its parameters and data."""
    doc, batch = config_doc(config, settings.quick)
    other_layout = "column" if settings.layout == "row" else "row"
    doc = dict(doc, layout=settings.layout)
    module = build_module(doc, folder)
    other = build_module(with_layout(doc, other_layout), folder)
    net = net_of(doc, batch)
    params = perturb_biases(module.init_params(SEED), SEED + 1)
    X, Y = random_batch(net, SEED + 2)
    other_params = to_layout(params, row=other_layout == "row")
    return Case(
        config.key, net, module, other, params, other_params, X, Y, transposed(X), transposed(Y)
    )


def row_data(case: Case) -> tuple[Params, np.ndarray, np.ndarray]:
    """Parameters and data in row layout, as the frameworks take them."""
    if case.net.row:
        return case.params, case.X, case.Y
    return case.other_params, case.other_X, case.other_Y


def frameworks(case: Case) -> list[Framework]:
    """The optional contenders that can be imported."""
    params, X, Y = row_data(case)
    built = [torch_contender(case.net, params, X, Y), jax_contender(case.net, params, X, Y)]
    return [fw for fw in built if fw is not None]


def compare(label: str, got: Result, ref: Result) -> list[str]:
    """Disagreements of got with ref beyond float32 tolerance (biases compared flat)."""
    problems = []
    if abs(got[0] - ref[0]) > LOSS_RTOL * max(abs(ref[0]), 1e-6):
        problems.append(f"{label}: loss {got[0]:.7g} vs {ref[0]:.7g}")
    for key, want in ref[1].items():
        have = np.ravel(got[1][key]).astype(np.float64)
        want = np.ravel(want).astype(np.float64)
        err = float(np.max(np.abs(have - want))) / max(float(np.max(np.abs(want))), 1e-30)
        if have.shape != want.shape or not err <= GRAD_RTOL:
            problems.append(f"{label}: {key} relative error {err:.2e} (tolerance {GRAD_RTOL:.0e})")
    return problems


def dtype_problems(grads: Params, output: np.ndarray) -> list[str]:
    """Arrays symbp returns in another dtype than float32 (an upcast somewhere)."""
    arrays = {**{f"gradient {k}": v for k, v in grads.items()}, "forward output": output}
    return [
        f"symbp: {name} is {np.asarray(a).dtype}, not float32"
        for name, a in arrays.items()
        if np.asarray(a).dtype != np.float32
    ]


def guard(case: Case, fws: list[Framework]) -> list[str]:
    """symbp's gradients against textbook NumPy, the other layout and each framework."""
    mine = case.module.loss_and_grads(case.params, case.X, case.Y)
    problems = dtype_problems(mine[1], case.module.forward(case.params, case.X))
    problems += compare(
        "textbook NumPy", mine, textbook.loss_and_grads(case.net, case.params, case.X, case.Y)
    )
    other = case.other.loss_and_grads(case.other_params, case.other_X, case.other_Y)
    problems += compare("symbp other layout", other, mine)
    workspace = case.module.make_workspace(case.net.batch)
    problems += compare(
        SYMBP_WS, case.module.loss_and_grads(case.params, case.X, case.Y, workspace), mine
    )
    for fw in fws:
        problems += compare(fw.name, fw.check(), mine)
    return problems


def steps(case: Case, fws: list[Framework]) -> dict[str, Step]:
    """Every timed call of a config: contenders first, then symbp's extra measurements."""
    net, module, other, params = case.net, case.module, case.other, case.params
    X, Y = case.X, case.Y
    weights = [params[f"W{i}"] for i in range(1, net.depth + 1)]
    workspace = module.make_workspace(net.batch)
    table: dict[str, Step] = {
        FLOOR: gemm_floor(net, weights, SEED + 3),
        TEXTBOOK: lambda: textbook.loss_and_grads(net, params, X, Y),
        SYMBP: lambda: module.loss_and_grads(params, X, Y),
        SYMBP_WS: lambda: module.loss_and_grads(params, X, Y, workspace),
    }
    for fw in fws:
        table[fw.name] = fw.step
    table[FORWARD] = lambda: module.forward(params, X)
    table[OTHER_LAYOUT] = lambda: other.loss_and_grads(
        case.other_params, case.other_X, case.other_Y
    )
    return table


def floor_flops(net: Net) -> float:
    """Floating-point operations of the 3L - 1 products of one gradient evaluation."""
    pairs = [j * k for j, k in pairwise(net.sizes)]
    return 2.0 * net.batch * (3 * sum(pairs) - pairs[0])


def contender_table(times: dict[str, Timing], names: list[str], flops: float) -> str:
    rows = []
    floor, ours = times[FLOOR].median, times[SYMBP].median
    for name in names:
        t = times[name].median
        ratios = [report.ratio(t / floor), report.ratio(t / ours)]
        rows.append(
            [name, report.ms(t), *ratios, f"{flops / t / 1e9:.1f}", f"{times[name].spread:.0%}"]
        )
    headers = ["contender", "median ms", "vs GEMM floor", "vs symbp", "GFLOP/s", "IQR/median"]
    return report.table(headers, rows)


def memory_lines(case: Case) -> list[str]:
    """Peak traced bytes of one step, symbp and textbook, against the stored activations."""
    net = case.net
    ours = memory.peak_bytes(lambda: case.module.loss_and_grads(case.params, case.X, case.Y))
    book = memory.peak_bytes(lambda: textbook.loss_and_grads(net, case.params, case.X, case.Y))
    workspace = case.module.make_workspace(net.batch)
    held = memory.nbytes({k: v for k, v in workspace.items() if isinstance(v, np.ndarray)})
    into = memory.peak_bytes(
        lambda: case.module.loss_and_grads(case.params, case.X, case.Y, workspace)
    )
    acts = memory.activation_bytes(net.sizes, net.batch)
    grads = memory.nbytes(case.params)
    return [
        f"- peak bytes per `loss_and_grads` step (tracemalloc): symbp {report.size(ours)} "
        f"({ours / acts:.2f}x the stored activations), textbook {report.size(book)} "
        f"({book / acts:.2f}x); with a workspace {report.size(into)} per step, the workspace "
        f"holding {report.size(held)} ({held / acts:.2f}x the stored activations)",
        f"- stored activations A_1..A_L: {report.size(acts)}; "
        f"returned gradients: {report.size(grads)}",
        fault_line(case, workspace),
    ]


def fault_line(case: Case, workspace: dict) -> str:
    """Minor page faults per step: temporaries the allocator maps in afresh every call."""
    ours = memory.page_faults(lambda: case.module.loss_and_grads(case.params, case.X, case.Y))
    into = memory.page_faults(
        lambda: case.module.loss_and_grads(case.params, case.X, case.Y, workspace)
    )
    book = memory.page_faults(
        lambda: textbook.loss_and_grads(case.net, case.params, case.X, case.Y)
    )
    if ours is None or book is None or into is None:
        return "- minor page faults per step: unknown (no resource module)"
    return (
        f"- minor page faults per step (getrusage): symbp {ours:.0f}, with a workspace "
        f"{into:.0f}, textbook {book:.0f}"
    )


def fresh_line(case: Case, settings: Settings) -> str:
    """The NumPy contenders re-timed in a fresh process without the frameworks (bench.fresh)."""
    module_path = Path(case.module.__file__ or "")
    args = [str(module_path), str(module_path.with_suffix(".yaml")), str(case.net.batch)]
    args += [str(settings.repeat), *settings.method.args()]
    command = [sys.executable, "-m", "bench.fresh", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=genscale.child_env())
    if done.returncode != 0:
        tail = " / ".join(done.stderr.strip().splitlines()[-2:])
        return f"- fresh NumPy-only process: FAILED ({tail})"
    result = json.loads(done.stdout)
    t, faults = result["median"], result["faults"]
    faults_text = "unknown" if faults is None else f"{faults:.0f}"
    return (
        f"- in a fresh NumPy-only process (torch/jax never loaded): GEMM floor "
        f"{report.ms(t['floor'])} ms, textbook {report.ms(t['textbook'])} ms, symbp "
        f"{report.ms(t['symbp'])} ms = {t['symbp'] / t['floor']:.2f}x the floor, with a "
        f"workspace {report.ms(t['workspace'])} ms = {t['workspace'] / t['floor']:.2f}x; "
        f"page faults per symbp step {faults_text}"
    )


def summary_lines(case: Case, times: dict[str, Timing]) -> list[str]:
    fwd, both, alt = times[FORWARD], times[SYMBP], times[OTHER_LAYOUT]
    f, b, a = fwd.median, both.median, alt.median
    other = "column" if case.net.row else "row"
    return [
        f"- symbp `forward` {report.ms(f)} ms (IQR {fwd.spread:.0%}), `loss_and_grads` "
        f"{report.ms(b)} ms: loss_and_grads/forward {b / f:.2f}, "
        f"backward/forward {(b - f) / f:.2f}",
        f"- symbp {other} layout (transposed data) {report.ms(a)} ms (IQR {alt.spread:.0%}): "
        f"{other}/{case.net.layout} = {a / b:.2f}",
    ]


def describe(case: Case, config: Config) -> str:
    net = case.net
    sizes = "-".join(str(s) for s in net.sizes)
    acts = ", ".join(dict.fromkeys(net.activations))
    return (
        f"## {case.key}: {net.name} ({config.file})\n\n"
        f"{sizes}, batch {net.batch}, {acts}, {net.loss}, float32, {net.layout} layout"
    )


def bench_config(config: Config, settings: Settings, folder: Path) -> bool:
    """Guard, time and report one config; False when its gradients disagree."""
    meanwhile = interference.watch()
    case = prepare(config, settings, folder)
    fws = frameworks(case)
    print(describe(case, config), flush=True)
    problems = guard(case, fws)
    if problems:
        print("\n**ABORTED: gradients disagree**\n")
        print("\n".join(f"- {p}" for p in problems) + "\n", flush=True)
        return False
    times = settings.method.measure(steps(case, fws), settings.repeat)
    names = [FLOOR, TEXTBOOK, SYMBP, SYMBP_WS] + [fw.name for fw in fws]
    layout = f"symbp {'column' if case.net.row else 'row'} layout"
    checked = [TEXTBOOK, layout, *names[3:]]
    print(f"\nCorrectness guard passed against: {', '.join(checked)}.\n")
    print(contender_table(times, names, floor_flops(case.net)) + "\n")
    lines = summary_lines(case, times) + memory_lines(case) + [fresh_line(case, settings)]
    lines.append(interference.line(meanwhile))
    print("\n".join(lines) + "\n", flush=True)
    return True


def generation_section(settings: Settings, folder: Path) -> bool:
    """Generation time against depth, in-process and through the CLI."""
    meanwhile = interference.watch()
    depths = [10, 100] if settings.quick else [10, 100, 200, 1000]
    repeat = 1 if settings.quick else 3
    timings = genscale.scaling(depths, repeat, folder)
    print(f"## Generation time ({genscale.WIDTH}-wide tanh layers, `symbp.pipeline.generate`)\n")
    headers = ["layers", "total ms", "derive ms", "render ms", "ms per layer"]
    rows = [
        [str(g.depth), *map(report.ms, (g.total, g.derive, g.render, g.total / g.depth))]
        for g in timings
    ]
    print(report.table(headers, rows) + "\n")
    by_depth = {g.depth: g.total for g in timings}
    if 100 in by_depth and 200 in by_depth:
        print(f"- 100 -> 200 layers: {by_depth[200] / by_depth[100]:.2f}x (2.00x is linear)")
    if 10 in by_depth and 1000 in by_depth:
        print(f"- 10 -> 1000 layers: {by_depth[1000] / by_depth[10]:.1f}x (100x is linear)")
    path = genscale.write_doc(genscale.deep_tanh_doc(100), folder)
    try:
        cli = genscale.time_cli(path, repeat)
        startup = genscale.time_import(repeat)
    except genscale.CliError as exc:
        print(f"- **CLI FAILED**: {exc}\n", flush=True)
        return False
    print(f"- CLI `python -m symbp generate`, 100 layers, wall time: {report.ms(cli)} ms")
    print(f"- of which a fresh `import symbp.pipeline`: {report.ms(startup)} ms")
    print(interference.line(meanwhile) + "\n", flush=True)
    return True


def load_line(when: str = "start") -> str:
    """The load average (this process counts too: up to ~2 while it measures)."""
    one, five, _ = os.getloadavg()
    return f"load average at {when}: {one:.2f} (1 min), {five:.2f} (5 min); {os.cpu_count()} CPUs"


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    root = str(Path(__file__).resolve().parent.parent)
    return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True)


def source_line() -> str:
    """Which symbp was measured: the git commit, and whether symbp/ or templates/ differ from it."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        status = _git("status", "--porcelain", "--", "symbp", "templates")
    except OSError:
        return "symbp source: unknown (no git)"
    if commit.returncode != 0:
        return "symbp source: unknown (not a git checkout)"
    dirty = [line[3:] for line in status.stdout.splitlines()]
    changes = f" plus uncommitted changes to {', '.join(dirty)}" if dirty else " (clean)"
    return f"symbp source: commit {commit.stdout.strip()}{changes}"


def header(settings: Settings, argv: Sequence[str]) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    mode = "quick" if settings.quick else "full"
    return "\n".join(
        [
            "# symbp benchmark",
            "",
            f"- date: {now}; mode: {mode}; repeats: {settings.repeat}; layout: {settings.layout}",
            f"- {settings.method.describe()}",
            f"- command: `{' '.join(['python bench/run.py', *argv])}`",
            f"- {source_line()}",
            f"- Python {platform.python_version()}, NumPy {np.__version__}, {platform.machine()}",
            f"- {blas.kernel_line()}",
            f"- {blas.env_line()}",
            f"- {blas.spin_line()}",
            f"- {load_line()}",
            "",
        ]
    )


def thread_pool_lines() -> str:
    pools = blas.thread_pools()
    if pools is None:
        return "Thread pools: unknown (threadpoolctl is not installed)"
    return "Thread pools loaded at the end of the run:\n\n" + "\n".join(f"- {p}" for p in pools)


def parse(argv: Sequence[str]) -> tuple[Settings, list[Config]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, C3 shrunk: < 60 s")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, e.g. C1,C2")
    parser.add_argument("--repeat", type=int, help="timing rounds per config (median taken)")
    parser.add_argument("--layout", choices=["row", "column"], default="row", help="symbp's layout")
    parser.add_argument(
        "--method",
        choices=["blocks", "round-robin"],
        default="blocks",
        help="blocks per contender with a pause (default) or the former round-robin",
    )
    parser.add_argument(
        "--block", type=float, help="seconds of timed calls per block (default 0.05; quick 0.005)"
    )
    parser.add_argument(
        "--settle", type=float, help="idle seconds before each block (default 0.25; quick 0.02)"
    )
    parser.add_argument(
        "--no-generation", action="store_true", help="skip the generation-time section"
    )
    args = parser.parse_args(list(argv))
    keys = [k.strip().upper() for k in args.configs.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CONFIGS]
    if unknown or not keys:
        names = ", ".join(unknown) or "(none)"
        parser.error(f"unknown config(s) {names}; choose from {', '.join(CONFIGS)}")
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 21)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.method == "round-robin":  # the former defaults: samples of 10 ms (2 ms quick)
        block = 0.002 if args.quick else 0.01
    else:
        block = 0.005 if args.quick else 0.05
    block = args.block if args.block is not None else block
    settle = args.settle if args.settle is not None else (0.02 if args.quick else 0.25)
    if block <= 0 or settle < 0:
        parser.error("--block must be positive and --settle not negative")
    method = Method(args.method, block, settle)
    settings = Settings(args.quick, repeat, method, args.layout, not args.no_generation)
    return settings, [CONFIGS[k] for k in keys]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    settings, configs = parse(argv)
    start = time.perf_counter()
    print(header(settings, argv), flush=True)
    ok = True
    with tempfile.TemporaryDirectory(prefix="symbp-bench-") as tmp:
        for config in configs:
            ok = bench_config(config, settings, Path(tmp)) and ok
        if settings.generation:
            ok = generation_section(settings, Path(tmp)) and ok
    print(thread_pool_lines())
    print(f"\n{load_line('end')}")
    print(f"\nTotal benchmark time: {time.perf_counter() - start:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
