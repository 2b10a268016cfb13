"""Prometheus metrics of mss_bridge (on the shared :data:`relais.metrics.REGISTRY`).

Labels carry the operator's mail domain, outcome and kind codes, never an address's
local part (for a patient it is the INS) or any document data. Only the async shells
import this module.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
INBOUND_MAILS = Counter(
    "relais_mss_inbound_mails_total",
    "Mails taken from watched mailboxes, by outcome (processed, quarantined, acknowledgement).",
    ["outcome"],
    registry=REGISTRY,
)
INBOUND_DOCUMENTS = Counter(
    "relais_mss_inbound_documents_total",
    "Documents received by mail and published onto the bus.",
    registry=REGISTRY,
)
ACKNOWLEDGEMENTS = Counter(
    "relais_mss_acknowledgements_total",
    "DSNs and MDNs received, by kind (DSN, MDN) and the outcome they report.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
REPLIES_SENT = Counter(
    "relais_mss_replies_sent_total",
    "MDNs and error mails Relais sent back for received mail, by kind.",
    ["kind"],
    registry=REGISTRY,
)
IMAP_CONNECTED = Gauge(
    "relais_mss_imap_connected",
    "1 while the watcher holds a logged-in IMAP connection to the mailbox, else 0.",
    ["mailbox"],
    registry=REGISTRY,
)
IMAP_RECONNECTS = Counter(
    "relais_mss_imap_reconnects_total",
    "IMAP connections lost or refused, after which the watcher reconnects with backoff.",
    ["mailbox"],
    registry=REGISTRY,
)
