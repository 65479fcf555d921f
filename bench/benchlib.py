"""Helpers shared by the benchmark scripts (run as ``python bench/<script>.py``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def calibration_ms() -> float:
    """Best of 5 runs of a fixed pure-Python loop: this VM's CPU speed drifts by up to ~2x
    over minutes (host contention), so every run prints it to make runs comparable."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        sum(i * i for i in range(300_000))
        best = min(best, time.perf_counter() - t)
    return best * 1000


def loadavg() -> str:
    """The 1-minute load average (other processes on the machine skew every figure)."""
    return Path("/proc/loadavg").read_text().split()[0]
