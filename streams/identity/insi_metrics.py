"""Prometheus metrics of INSi calls, as an observer :class:`HttpInsiClient` calls.

On :data:`relais.metrics.REGISTRY`. Labels carry the operation and an outcome
code only, never patient data.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from relais.metrics import REGISTRY
from streams.identity.circuit_breaker import CircuitState
from streams.identity.insi import NARROWINGS, VERIFY_OUTCOMES
from streams.identity.insi_client import OPERATIONS, OUTCOMES

INSI_CALL_SECONDS = Histogram(
    "relais_insi_call_seconds",
    "Duration of one INSi HTTP exchange (each attempt), in seconds.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
INSI_CALLS = Counter(
    "relais_insi_calls_total",
    "INSi attempts by operation (search, verify) and outcome "
    "(ok, none, several, unavailable, rejected, circuit-open).",
    ["operation", "outcome"],
    registry=REGISTRY,
)
INSI_NARROWINGS = Counter(
    "relais_insi_narrowings_total",
    "Récupérations asked again after INSi found several identities (CR 02), by what "
    "was added: first-names (every birth first name), birthplace (the COG).",
    ["operation", "narrowing"],
    registry=REGISTRY,
)
INSI_VERIFICATIONS = Counter(
    "relais_insi_verifications_total",
    "Verifications of a held INS by outcome: agree, unknown (CR 01), several (CR 02 "
    "after narrowing), disagree (INSi's identity differs from the held INS or traits).",
    ["outcome"],
    registry=REGISTRY,
)
INSI_CIRCUIT_STATE = Gauge(
    "relais_insi_circuit_state",
    "State of the INSi circuit breaker: 0 closed, 1 half-open, 2 open.",
    registry=REGISTRY,
)
STATE_VALUES: Final = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


class PrometheusInsiObserver:
    """The INSi observer: counts, times, narrowings, verifications and the breaker's state."""

    def __init__(self) -> None:
        # Export zeros from the start so rates and alerts see every series.
        for operation in OPERATIONS:
            for outcome in OUTCOMES:
                INSI_CALLS.labels(operation, outcome).inc(0)
            for narrowing in NARROWINGS:
                INSI_NARROWINGS.labels(operation, narrowing).inc(0)
        for verified in VERIFY_OUTCOMES.values():
            INSI_VERIFICATIONS.labels(verified).inc(0)
        INSI_CIRCUIT_STATE.set(0)

    def call(self, operation: str, outcome: str, seconds: float | None) -> None:
        INSI_CALLS.labels(operation, outcome).inc()
        if seconds is not None:
            INSI_CALL_SECONDS.labels(operation).observe(seconds)

    def narrowed(self, operation: str, narrowing: str) -> None:
        INSI_NARROWINGS.labels(operation, narrowing).inc()

    def verified(self, outcome: str) -> None:
        INSI_VERIFICATIONS.labels(outcome).inc()

    def circuit(self, state: CircuitState) -> None:
        INSI_CIRCUIT_STATE.set(STATE_VALUES[state])
