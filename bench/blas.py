"""Which BLAS kernel NumPy runs, via threadpoolctl when it is installed."""

from __future__ import annotations

import os

BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
SPIN_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT")


def _describe(info: dict) -> str:
    parts = [f"{info.get('internal_api', '?')} {info.get('version') or ''}".strip()]
    if info.get("architecture"):
        parts.append(f"kernel {info['architecture']}")
    parts.append(f"{info.get('num_threads', '?')} threads")
    if info.get("threading_layer"):
        parts.append(f"threading {info['threading_layer']}")
    parts.append(str(info.get("prefix", "")))
    return ", ".join(parts)


def thread_pools() -> list[str] | None:
    """One line per native thread pool loaded in this process, None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [f"{info.get('user_api', '?')}: {_describe(info)}" for info in threadpool_info()]


def kernel_line() -> str:
    """NumPy's BLAS and its kernel, or a plain 'unknown'."""
    import numpy  # noqa: F401  (loads its BLAS so threadpoolctl can see it)

    pools = thread_pools()
    if pools is None:
        return "BLAS kernel: unknown (threadpoolctl is not installed)"
    blas = [line for line in pools if line.startswith("blas:")]
    return f"BLAS kernel: {blas[0][len('blas: ') :]}" if blas else "BLAS kernel: unknown"


def env_line() -> str:
    """Whether the OpenBLAS overrides that slow a current NumPy are set for this run."""
    status = [
        f"{name}={os.environ[name]!r}" if name in os.environ else f"{name} unset"
        for name in BLAS_VARS
    ]
    return "Environment: " + ", ".join(status)


def spin_line() -> str:
    """The variables that say how long idle OpenMP and OpenBLAS threads spin (controls)."""
    status = [
        f"{name}={os.environ[name]!r}" if name in os.environ else f"{name} unset"
        for name in SPIN_VARS
    ]
    return "Thread spinning: " + ", ".join(status)
