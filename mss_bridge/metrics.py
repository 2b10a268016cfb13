"""Prometheus metrics of mss_bridge (on the shared :data:`relais.metrics.REGISTRY`).

Labels carry the operator's mail domain, outcome and kind codes, never an address's
local part (for a patient it is the INS) or any document data. Only the async shells
import this module.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from relais.metrics import REGISTRY

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
PATIENT_COPIES_HELD = Gauge(
    "relais_mss_patient_copies_held",
    "Patients' MSSanté copies held until their release date (the embargo of the release "
    "policy), on this process's partitions.",
    registry=REGISTRY,
)
