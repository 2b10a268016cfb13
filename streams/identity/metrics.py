"""Identity-stage metrics: decisions by status and reason, holds, alerts."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from relais.metrics import REGISTRY
from streams.identity.processor import Observed

DECISIONS = Counter(
    "relais_identity_decisions_total",
    "Identity decisions, by outcome (qualify, hold, block, release), status and reason code.",
    ["outcome", "status", "reason"],
    registry=REGISTRY,
)
HELD = Gauge(
    "relais_identity_held_documents",
    "Documents held for their identity, in this worker's partitions.",
    registry=REGISTRY,
)
HOLD_SECONDS = Histogram(
    "relais_identity_hold_seconds",
    "How long a released document was held, in seconds.",
    buckets=(1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600),
    registry=REGISTRY,
)
ALERTS = Counter(
    "relais_identity_alerts_total",
    "Identitovigilance alerts raised, by reason code.",
    ["reason"],
    registry=REGISTRY,
)


class IdentityMetrics:
    def __init__(self) -> None:
        HELD.set(0)

    def observe(self, observed: Observed) -> None:
        for verdict in observed.verdicts:
            reason = verdict.reason_code or "none"
            DECISIONS.labels(verdict.kind, verdict.status.value, reason).inc()
            if verdict.alert:
                ALERTS.labels(reason).inc()
        for seconds in observed.released_after_s:
            HOLD_SECONDS.observe(seconds)

    def held(self, count: int) -> None:
        HELD.set(count)
