"""Prometheus metrics of the outcomes sink (on :data:`relais.metrics.REGISTRY`).

* ``relais_sender_outcomes_total{reason,facility,zam}`` — later outcomes told to
  a sender (MSH-4 facility, never a patient): ``zam="sent"`` when ZAMs N went,
  ``"not-asked"`` when the producer asked none (audit only);
* ``relais_sender_outcomes_skipped_total{reason}`` — dead letters that are not
  told here: ``door`` (answered AE/AR), ``answered`` (their sink sent the ZAM),
  ``not-a-document``, ``unreadable-original``;
* ``relais_outcomes_holds_waiting`` — held documents waiting for their reminder.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from relais.metrics import REGISTRY

OUTCOMES = Counter(
    "relais_sender_outcomes_total",
    "Later outcomes (dead letter, hold) told to the sender, by reason, sender facility and "
    "whether ZAMs were sent.",
    ["reason", "facility", "zam"],
    registry=REGISTRY,
)
SKIPPED = Counter(
    "relais_sender_outcomes_skipped_total",
    "Dead letters not told to a sender by the outcomes sink, by why.",
    ["reason"],
    registry=REGISTRY,
)
WAITING = Gauge(
    "relais_outcomes_holds_waiting",
    "Documents held for identity waiting for their reminder ZAM.",
    registry=REGISTRY,
)
