"""Interleaved timing: every contender once per round, rounds repeated, medians reported.

Round-robin in one process means slow drifts (clock boost, other load) hit every
contender alike, so the ratios between them stay fair. Calls too short to time alone
are batched: each sample is `inner` back-to-back calls divided by `inner`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

Step = Callable[[], object]


def _once(step: Step, inner: int) -> float:
    """Seconds per call over `inner` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(inner):
        step()
    return (time.perf_counter() - start) / inner


def calibrate(step: Step, target: float, warmup: int = 2) -> int:
    """How many calls make one sample last about `target` seconds (after a warm-up)."""
    for _ in range(warmup):
        step()
    single = _once(step, 1)
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


def round_robin(steps: dict[str, Step], repeat: int, target: float) -> dict[str, Timing]:
    """Seconds per call of every step, sampled in rotating round-robin order."""
    inner = {name: calibrate(step, target) for name, step in steps.items()}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(repeat):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_once(steps[name], inner[name]))
    return {name: summarize(values) for name, values in samples.items()}
