"""Prometheus metrics of the stages, as an observer the shells call.

Cores never import this module; shells call :class:`StageMetrics` around each
record. Names follow Prometheus conventions (base units, ``_total``,
``_seconds``); labels never carry patient data, only stage, topic and reason codes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS_IN = Counter(
    "relais_stage_records_in_total",
    "Records a stage read from its input topic.",
    ["stage"],
    registry=REGISTRY,
)
RECORDS_OUT = Counter(
    "relais_stage_records_out_total",
    "Records a stage wrote, by destination topic.",
    ["stage", "topic"],
    registry=REGISTRY,
)
RECORDS_FAILED = Counter(
    "relais_stage_records_failed_total",
    "Records a stage could not process, by reason code.",
    ["stage", "reason"],
    registry=REGISTRY,
)
DEADLETTERS = Counter(
    "relais_deadletters_total",
    "Dead letters written, by stage and reason code.",
    ["stage", "reason"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "relais_stage_processing_seconds",
    "Time a stage spent on one record, decode to output, in seconds.",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
ASSIGNED_PARTITIONS = Gauge(
    "relais_consumer_assigned_partitions",
    "Partitions this process holds in its consumer group once ready (0: joining, "
    "rebalancing, or idle with more processes than partitions).",
    ["group"],
    registry=REGISTRY,
)
STAGE_EVENTS = Counter(
    "relais_stage_events_total",
    "Notable outcomes a stage reports besides in/out/failed, e.g. duplicate.",
    ["stage", "event"],
    registry=REGISTRY,
)
PATIENT_KEYS = Counter(
    "relais_patient_keys_total",
    "Patients' data keys, by outcome: created (at intake), missing (a key id the key store "
    "answers it does not have and never erased: dead letter patient-key-missing), "
    "unavailable (the key store down or not there: retried), dead-letter-shared-key (a dead "
    "letter sealed under the shared key because the patient's key could not be had).",
    ["outcome"],
    registry=REGISTRY,
)
for _outcome in ("created", "missing", "unavailable", "dead-letter-shared-key"):
    PATIENT_KEYS.labels(_outcome).inc(0)


class StageMetrics:
    """The metrics of one stage, pre-bound to its label."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._in = RECORDS_IN.labels(stage)
        self._seconds = PROCESSING_SECONDS.labels(stage)
        # Export zeros from the start so rates and alerts see the series.
        self._in.inc(0)
        RECORDS_FAILED.labels(stage, "none").inc(0)

    def received(self) -> None:
        self._in.inc()

    def emitted(self, topic: str) -> None:
        RECORDS_OUT.labels(self.stage, topic).inc()

    def noted(self, event: str) -> None:
        STAGE_EVENTS.labels(self.stage, event).inc()

    def failed(self, reason: str, *, dead_lettered: bool) -> None:
        RECORDS_FAILED.labels(self.stage, reason).inc()
        if dead_lettered:
            DEADLETTERS.labels(self.stage, reason).inc()

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._seconds.observe(time.perf_counter() - start)
