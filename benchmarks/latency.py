"""Latency summaries shared by the benchmarks: exact nearest-rank percentiles.

A benchmark keeps every sample (thousands, often below a millisecond), so its
percentiles are exact; `relais load` (hours of samples, milliseconds and up)
uses HDR histograms instead (ops.load.latency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (no interpolation)."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarise(seconds: Sequence[float]) -> Latency:
    ms = sorted(s * 1000 for s in seconds)
    return Latency(
        len(ms),
        percentile(ms, 50),
        percentile(ms, 90),
        percentile(ms, 99),
        ms[-1],
        sum(ms) / len(ms),
    )
