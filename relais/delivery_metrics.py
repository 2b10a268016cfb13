"""Metrics every sink reports, labelled by destination (DMP, MSSANTE, NOTIFY).

* ``relais_deliveries_total{destination,outcome}`` — final outcomes (DELIVERED,
  DUPLICATE, REJECTED) and transient failures (RETRYING);
* ``relais_documents_delivered_total{destination,sector,type_code}`` — what the Ségur
  transparency view counts;
* ``relais_delivery_latency_seconds{destination}`` — from the producer's hand-over
  (``submitted_at``) to the destination's acceptance;
* ``relais_delivery_retries_total{destination}`` — tries that will be repeated;
* ``relais_delivery_ledger_entries{destination}`` — entries of the delivery ledger
  this process holds;
* ``relais_delivery_oldest_pending_age_seconds{destination}`` — age of the oldest
  request waiting for a retry (0 when none): the "stuck destination" signal.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

from relais.metrics import REGISTRY

DELIVERIES = Counter(
    "relais_deliveries_total",
    "Delivery outcomes by destination (DELIVERED, DUPLICATE, RETRYING, REJECTED).",
    ["destination", "outcome"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "relais_delivery_latency_seconds",
    "Producer hand-over (submitted_at) to acceptance by the destination, in seconds.",
    ["destination"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400),
    registry=REGISTRY,
)
RETRIES = Counter(
    "relais_delivery_retries_total",
    "Delivery tries that failed transiently and will be repeated.",
    ["destination"],
    registry=REGISTRY,
)
LEDGER_ENTRIES = Gauge(
    "relais_delivery_ledger_entries",
    "Delivery ledger entries held by this process (its partitions).",
    ["destination"],
    registry=REGISTRY,
)
OLDEST_PENDING = Gauge(
    "relais_delivery_oldest_pending_age_seconds",
    "Age (since submitted_at) of the oldest request waiting for a retry; 0 when none.",
    ["destination"],
    registry=REGISTRY,
)
DOCUMENTS = Counter(
    "relais_documents_delivered_total",
    "Documents accepted by a destination, by sector and LOINC document type (the Ségur "
    "transparency figures: documents made available per sector).",
    ["destination", "sector", "type_code"],
    registry=REGISTRY,
)
OUTCOMES = ("DELIVERED", "DUPLICATE", "RETRYING", "REJECTED")


class DeliveryMetrics:
    """The delivery metrics of one destination, with its series exported from the start."""

    def __init__(self, destination: str) -> None:
        self.destination = destination
        for outcome in OUTCOMES:
            DELIVERIES.labels(destination, outcome).inc(0)
        RETRIES.labels(destination).inc(0)
        LEDGER_ENTRIES.labels(destination).set(0)
        OLDEST_PENDING.labels(destination).set(0)
        self.pending: dict[str, datetime] = {}  # request id -> submitted_at, while retrying

    def outcome(
        self,
        outcome: str,
        *,
        submitted_at: datetime,
        now: datetime,
        sector: str = "OTHER",
        type_code: str = "",
    ) -> None:
        DELIVERIES.labels(self.destination, outcome).inc()
        if outcome == "DELIVERED":
            DOCUMENTS.labels(self.destination, sector, type_code).inc()
        if outcome in {"DELIVERED", "DUPLICATE"}:
            LATENCY.labels(self.destination).observe(max(0.0, (now - submitted_at).total_seconds()))

    def retrying(self, request_id: str, submitted_at: datetime) -> None:
        DELIVERIES.labels(self.destination, "RETRYING").inc()
        RETRIES.labels(self.destination).inc()
        self.pending.setdefault(request_id, submitted_at)

    def settled(self, request_id: str) -> None:
        self.pending.pop(request_id, None)

    def refresh(self, now: datetime, ledger_entries: int) -> None:
        LEDGER_ENTRIES.labels(self.destination).set(ledger_entries)
        oldest = min(self.pending.values(), default=None)
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        OLDEST_PENDING.labels(self.destination).set(max(0.0, age))
