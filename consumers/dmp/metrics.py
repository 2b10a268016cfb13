"""Prometheus metrics of the DMP sink's national-service exchanges (the shared registry).

Labels carry the DMP's answer codes and outcomes, never a patient id. Only the async
shells (:mod:`consumers.dmp.sink`, :mod:`consumers.dmp.visibility_lifts`) import this module.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from relais.metrics import REGISTRY

STATUS_CHECKS = Counter(
    "relais_dmp_status_checks_total",
    "TD0.2 answers before a patient's filing, by answer: open, the DMP's code when the error "
    "table knows it (DMPClosed, DMPNotFound, DMPPatientOpposition, DMPAccessDenied...), else "
    "other. Answers from the cache are not counted.",
    ["answer"],
    registry=REGISTRY,
)
VISIBILITY_PENDING = Gauge(
    "relais_dmp_visibility_lifts_pending",
    "Documents filed invisible to the patient under an embargo whose TD3.3b the DMP has not "
    "confirmed yet, on this process's partitions.",
    registry=REGISTRY,
)
VISIBILITY_UPDATES = Counter(
    "relais_dmp_visibility_updates_total",
    "TD3.3b patient-visibility updates answered by the DMP, by outcome (DELIVERED, REJECTED).",
    ["outcome"],
    registry=REGISTRY,
)
