"""How much CPU other processes took while a measurement ran (Linux /proc only).

The machine has few cores and NumPy's BLAS uses all of them: a busy neighbour can
multiply BLAS-bound times several-fold, so every section reports this figure.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


def _machine_busy() -> int | None:
    """Clock ticks all CPUs spent busy since boot (everything but idle and iowait)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return sum(ticks) - ticks[3] - ticks[4]


def _own_busy() -> int:
    """Clock ticks this process (all its threads) and its waited-for children spent on a CPU."""
    t = os.times()
    seconds = t.user + t.system + t.children_user + t.children_system
    return round(seconds * os.sysconf("SC_CLK_TCK"))


@dataclass
class Watch:
    """Started by watch(); others() reads the average CPUs used by other processes since."""

    start: float
    machine: int | None
    own: int

    def others(self) -> float | None:
        machine = _machine_busy()
        if machine is None or self.machine is None:
            return None
        elapsed = time.monotonic() - self.start
        foreign = (machine - self.machine) - (_own_busy() - self.own)
        return max(foreign, 0) / os.sysconf("SC_CLK_TCK") / max(elapsed, 1e-9)


def watch() -> Watch:
    return Watch(time.monotonic(), _machine_busy(), _own_busy())


def line(w: Watch) -> str:
    """A report line: other processes' average CPU use, flagged when it can skew timings."""
    others = w.others()
    if others is None:
        return "- other processes' CPU use: unknown (no /proc/stat)"
    verdict = "quiet" if others < 0.1 else "**BUSY: timings are unreliable, rerun**"
    return f"- other processes used {others:.2f} CPUs on average meanwhile ({verdict})"
