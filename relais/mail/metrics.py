"""Prometheus metrics of the SMTP client (on the shared :data:`relais.metrics.REGISTRY`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from relais.metrics import REGISTRY

MAILS_SENT = Counter(
    "relais_mss_mails_sent_total",
    "Mails the operator's SMTP server accepted, by recipient operator domain.",
    ["operator"],
    registry=REGISTRY,
)
MAILS_FAILED = Counter(
    "relais_mss_mails_failed_total",
    "Mail sending failures by operator domain and kind (transient: retried; permanent).",
    ["operator", "kind"],
    registry=REGISTRY,
)
SMTP_SECONDS = Histogram(
    "relais_mss_smtp_seconds",
    "Time of one SMTP transaction (connection reuse included), in seconds.",
    ["operator"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
