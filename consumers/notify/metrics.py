"""Prometheus metrics of the notification sink (on :data:`relais.metrics.REGISTRY`).

Labels carry the channel (mssante, email, sms), outcome codes and partition numbers,
never a patient key, an address or a phone number. Only the async shell imports this.

* ``relais_notify_deliveries_total{channel,outcome}`` — per request: delivered,
  duplicate, rejected (``channel="none"`` when no channel was tried), retrying
  (per failed attempt), cancelled, skipped;
* ``relais_notify_messages_total{channel}`` — messages sent (one may cover several
  documents of one patient);
* ``relais_notify_latency_seconds{channel}`` — from the moment the patient may know
  (``max(submitted_at, end of embargo)``) to the channel's acceptance, in seconds;
* ``relais_notify_retries_total{channel}`` and ``relais_notify_rate_limited_total``;
* ``relais_notify_pending{state}`` (``embargoed``: waiting for its time; ``due``:
  may go now, waits for a channel or the rate limit) and
  ``relais_notify_oldest_pending_age_seconds`` (age of the oldest *due* one: the
  alert), ``relais_notify_ledger_entries`` (entries held for the owned partitions).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from relais.metrics import REGISTRY

DELIVERIES = Counter(
    "relais_notify_deliveries_total",
    "Notification requests by channel and outcome (delivered, duplicate, rejected, "
    "retrying, cancelled, skipped).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
MESSAGES = Counter(
    "relais_notify_messages_total",
    "Notification messages accepted by a channel (one may announce several documents).",
    ["channel"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "relais_notify_latency_seconds",
    "From the time the patient may know (submission or end of embargo) to the channel's "
    "acceptance, in seconds.",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400),
    registry=REGISTRY,
)
RETRIES = Counter(
    "relais_notify_retries_total",
    "Notification messages that failed transiently and will be tried again, by channel.",
    ["channel"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "relais_notify_rate_limited_total",
    "Times a patient's due notifications were held back by the per-patient rate limit.",
    registry=REGISTRY,
)
PENDING = Gauge(
    "relais_notify_pending",
    "Notifications not sent yet: embargoed (not due) or due (waiting to be sent).",
    ["state"],
    registry=REGISTRY,
)
OLDEST_PENDING = Gauge(
    "relais_notify_oldest_pending_age_seconds",
    "Age of the oldest due notification not sent yet, in seconds (0 when none).",
    registry=REGISTRY,
)
LEDGER_ENTRIES = Gauge(
    "relais_notify_ledger_entries",
    "Ledger entries held in memory for the partitions this worker owns.",
    registry=REGISTRY,
)


def started() -> None:
    """Export zeros from the start so dashboards and alerts see every series."""
    for channel in ("mssante", "email", "sms"):
        MESSAGES.labels(channel).inc(0)
        RETRIES.labels(channel).inc(0)
        DELIVERIES.labels(channel, "delivered").inc(0)
    RATE_LIMITED.inc(0)
    for state in ("embargoed", "due"):
        PENDING.labels(state).set(0)


def observe(embargoed: int, due: int, oldest_age_s: float, entries: int) -> None:
    PENDING.labels("embargoed").set(embargoed)
    PENDING.labels("due").set(due)
    OLDEST_PENDING.set(oldest_age_s)
    LEDGER_ENTRIES.set(entries)
