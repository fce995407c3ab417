"""Timing in blocks: each contender runs a block of back-to-back calls, alone, after a pause.

    blocks(steps, repeat, block, settle)  # the benchmarks' method
    round_robin(steps, repeat, target)    # the former method, kept as a control

Why blocks. OpenBLAS's worker threads keep spinning for about 0.1 s after a product
(OPENBLAS_THREAD_TIMEOUT, 2^28 cycles by default), and so do PyTorch's OpenMP threads
after a parallel region (libgomp's OMP_WAIT_POLICY) and, more briefly, XLA's. On a
two-core machine, whichever contender runs next shares a core with a spinning
neighbour it does not own. Interleaving single samples round-robin therefore charged
each contender for its predecessor's spinning: PyTorch eager, whose predecessors used
OpenBLAS, measured 215 ms on C3 against 145-148 ms in blocks and 153 ms alone in its own
process (GEMM floor 129-131 ms); see bench/RESULTS.md.

So every sample is one block: an idle pause of `settle` seconds (every pool stops
spinning and sleeps), one untimed call (wakes this contender's own pools and caches),
then `calls` timed calls back to back, as a training loop makes them; the sample is their
mean. The contenders take turns block by block, the order rotating every round, so slow
drifts (clock boost, other load) still hit every contender alike; the figure reported is
the median over the rounds and the interquartile range shows how stable it is.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

Step = Callable[[], object]

MIN_CALLS = 2  # timed calls per block, however long a call is


def per_call(step: Step, inner: int) -> float:
    """Seconds per call over `inner` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(inner):
        step()
    return (time.perf_counter() - start) / inner


def calibrate(step: Step, target: float, warmup: int = 2) -> int:
    """How many calls make one sample last about `target` seconds (after a warm-up)."""
    for _ in range(warmup):
        step()
    single = per_call(step, 1)
    return max(1, math.ceil(target / max(single, 1e-9)))


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median of the samples and their interquartile range."""

    median: float
    iqr: float

    @property
    def spread(self) -> float:
        """The interquartile range relative to the median (noise indicator)."""
        return self.iqr / self.median if self.median > 0 else 0.0


def summarize(samples: list[float]) -> Timing:
    """Median and interquartile range of a list of samples."""
    if len(samples) < 2:
        return Timing(samples[0], 0.0)
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return Timing(statistics.median(samples), q3 - q1)


def _rotations(names: list[str], repeat: int) -> list[list[str]]:
    """The order of every round: the list rotated by one more place each round."""
    return [names[r % len(names) :] + names[: r % len(names)] for r in range(repeat)]


def blocks(steps: dict[str, Step], repeat: int, block: float, settle: float) -> dict[str, Timing]:
    """Seconds per call of every step, one sample per block (see the module docstring).

    block: seconds of timed calls per block (at least MIN_CALLS calls); settle: idle
    seconds before each block. `repeat` rounds, each giving every step one block.
    """
    calls = {name: max(MIN_CALLS, calibrate(step, block)) for name, step in steps.items()}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for order in _rotations(list(steps), repeat):
        for name in order:
            step = steps[name]
            time.sleep(settle)
            step()  # untimed: wakes the pools this contender uses
            samples[name].append(per_call(step, calls[name]))
    return {name: summarize(values) for name, values in samples.items()}


def round_robin(steps: dict[str, Step], repeat: int, target: float) -> dict[str, Timing]:
    """The former method: every step sampled once per round, no pause, rotating order.

    Each sample is as many back-to-back calls as last about `target` seconds (one call
    when a call is longer), so a long call starts while the previous contender's threads
    still spin. Kept as the control that shows the effect blocks avoid.
    """
    inner = {name: calibrate(step, target) for name, step in steps.items()}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for order in _rotations(list(steps), repeat):
        for name in order:
            samples[name].append(per_call(steps[name], inner[name]))
    return {name: summarize(values) for name, values in samples.items()}


@dataclass(frozen=True)
class Method:
    """How to time: 'blocks' (block seconds per block, settle seconds idle before each)
    or 'round-robin' (the former method: samples of about `block` seconds, no pause)."""

    kind: str
    block: float
    settle: float

    def measure(self, steps: dict[str, Step], repeat: int) -> dict[str, Timing]:
        if self.kind == "round-robin":
            return round_robin(steps, repeat, self.block)
        return blocks(steps, repeat, self.block, self.settle)

    def describe(self) -> str:
        """One line for a report's header."""
        if self.kind == "round-robin":
            return (
                f"timing: round-robin (former method), samples of ~{self.block * 1000:g} ms, "
                "no pause between contenders"
            )
        return (
            f"timing: blocks of back-to-back calls per contender (~{self.block * 1000:g} ms, "
            f"at least {MIN_CALLS} calls, after one untimed call), idle {self.settle:g} s "
            "before each block, order rotating every round"
        )

    def args(self) -> list[str]:
        """Command-line arguments that select this method (for a child process)."""
        return [self.kind, str(self.block), str(self.settle)]
