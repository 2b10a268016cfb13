"""Latency of a replay per stage and end to end, in HDR histograms (pure).

Stages are read from each document's audit trail: RECEIVED (the producer
library put it on the bus) -> IDENTITY_DECIDED -> TRANSCODED -> ROUTED ->
DELIVERED (the DMP accepted it). A stage's latency is the time between its
audit event and the previous one: the stage's own work *and* the time the
record waited in its input topic. ``entry`` is measured by the sender: message
sent -> ACK (MLLP) or ``submit_*`` returned (library).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from hdrh.histogram import HdrHistogram

#: (stage, audit action that ends it, audit action that starts it)
STAGES: Final = (
    ("identity", "IDENTITY_DECIDED", "RECEIVED"),
    ("transcode+validate", "TRANSCODED", "IDENTITY_DECIDED"),
    ("route", "ROUTED", "TRANSCODED"),
    ("deliver (DMP)", "DELIVERED", "ROUTED"),
    ("end to end", "DELIVERED", "RECEIVED"),
)
MAX_MS: Final = 3_600_000  # one hour: anything slower is clamped and flagged


@dataclass(frozen=True)
class Percentiles:
    name: str
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def histogram() -> HdrHistogram:
    """Milliseconds from 1 ms to an hour, 3 significant digits."""
    return HdrHistogram(1, MAX_MS, 3)


def record_ms(h: HdrHistogram, ms: float) -> None:
    h.record_value(int(min(max(ms, 1.0), MAX_MS)))


def percentiles(name: str, h: HdrHistogram) -> Percentiles:
    count = int(h.get_total_count())
    if count == 0:
        return Percentiles(name, 0, 0.0, 0.0, 0.0, 0.0)
    return Percentiles(
        name,
        count,
        float(h.get_value_at_percentile(50)),
        float(h.get_value_at_percentile(95)),
        float(h.get_value_at_percentile(99)),
        float(h.get_max_value()),
    )


def stage_histograms(
    stamps: Mapping[str, Mapping[str, float]], events: Iterable[str]
) -> dict[str, HdrHistogram]:
    """One histogram per stage over the given events (those delivered at the DMP)."""
    out = {name: histogram() for name, _, _ in STAGES}
    for event in events:
        times = stamps.get(event, {})
        for name, end, start in STAGES:
            if end in times and start in times:
                record_ms(out[name], 1000.0 * (times[end] - times[start]))
    return out


def of_values(name: str, values_ms: Iterable[float]) -> Percentiles:
    h = histogram()
    for v in values_ms:
        record_ms(h, v)
    return percentiles(name, h)


def per_window(
    points: Iterable[tuple[float, float]], window_s: float
) -> list[tuple[float, float, float]]:
    """(window start s, p50 ms, p99 ms) of (time s, latency ms) points, window by window."""
    windows: dict[int, HdrHistogram] = {}
    for t, ms in points:
        record_ms(windows.setdefault(int(t // window_s), histogram()), ms)
    return [
        (k * window_s, float(h.get_value_at_percentile(50)), float(h.get_value_at_percentile(99)))
        for k, h in sorted(windows.items())
    ]
