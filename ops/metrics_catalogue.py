"""The catalogue of every Prometheus metric Relais exposes, from the code itself.

:func:`catalogue` imports every module that declares metrics (they all register on
:data:`relais.metrics.REGISTRY`) and lists each family: name, type, unit, labels,
help. ``relais metrics catalogue`` prints it as Markdown; docs/metrics.md is that
output, and a test keeps the two equal. :func:`convention_problems` checks the
Prometheus naming conventions (base units, ``_total`` counters, ``_seconds`` /
``_bytes``) and that no label could carry patient data.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from prometheus_client.metrics import MetricWrapperBase

from relais.metrics import REGISTRY

#: Every module that declares metrics, with the process(es) that serve them.
MODULES: Final = {
    "relais.metrics": "every worker and sink",
    "relais.delivery_metrics": "dmp-sink, mss-sender, notify-sink",
    "ops.lag_monitor": "monitor",
    "ops.index.metrics": "index run",
    "producers.mllp.metrics": "mllp",
    "producers.mllp.ack_forwarder": "ack-forwarder",
    "streams.identity.metrics": "identity",
    "streams.identity.insi_metrics": "identity",
    "consumers.dmp.metrics": "dmp-sink",
    "consumers.notify.metrics": "notify-sink",
    "consumers.outcomes.metrics": "outcomes",
    "relais.mail.metrics": "mss-sender, mss-watch",
    "mss_bridge.metrics": "mss-sender, mss-watch",
}
#: Label names that could hold patient data: none may exist.
FORBIDDEN_LABELS: Final = frozenset(
    {"ins", "patient", "patient_key", "name", "birth", "address", "email", "phone", "nir", "ipp"}
)
_NOT_BASE_UNIT: Final = re.compile(
    r"_(ms|millis|milliseconds|minutes|hours|days|kb|mb|kilobytes|megabytes)(_|$)"
)


@dataclass(frozen=True)
class MetricDoc:
    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str
    served_by: str


def catalogue() -> list[MetricDoc]:
    """Every metric family, sorted by name."""
    owners: dict[str, str] = {}
    for module, served_by in MODULES.items():
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, MetricWrapperBase):
                owners.setdefault(value._name, served_by)
    docs = []
    for family in REGISTRY.collect():
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
        name = family.name + ("_total" if family.type == "counter" else "")
        docs.append(
            MetricDoc(
                name,
                family.type,
                tuple(sorted(labels or _declared_labels(family.name))),
                family.documentation,
                owners.get(family.name, "every worker and sink"),
            )
        )
    return sorted(docs, key=lambda d: d.name)


def _declared_labels(name: str) -> tuple[str, ...]:
    collector = REGISTRY._names_to_collectors.get(name)
    return tuple(getattr(collector, "_labelnames", ()))


def convention_problems(docs: Sequence[MetricDoc]) -> list[str]:
    """Breaches of the Prometheus naming conventions and of the no-patient-data rule."""
    problems = []
    for doc in docs:
        if not doc.name.startswith("relais_"):
            problems.append(f"{doc.name}: not in the relais_ namespace")
        if doc.kind == "counter" and not doc.name.endswith("_total"):
            problems.append(f"{doc.name}: a counter must end in _total")
        if doc.kind != "counter" and doc.name.endswith("_total"):
            problems.append(f"{doc.name}: only counters end in _total")
        if doc.kind == "histogram" and not doc.name.endswith(("_seconds", "_bytes")):
            problems.append(f"{doc.name}: a histogram measures seconds or bytes")
        if _NOT_BASE_UNIT.search(doc.name):
            problems.append(f"{doc.name}: use base units (seconds, bytes)")
        if leaked := FORBIDDEN_LABELS & set(doc.labels):
            problems.append(f"{doc.name}: label(s) {sorted(leaked)} could carry patient data")
        if not doc.help.strip():
            problems.append(f"{doc.name}: no help text")
    return problems


def markdown(docs: Sequence[MetricDoc]) -> str:
    """docs/metrics.md: the catalogue as a Markdown table."""
    lines = [
        "# Relais metrics catalogue",
        "",
        "Generated from the code by `relais metrics catalogue > docs/metrics.md`; a test keeps",
        "this file and the code equal. Every process serves these on `/metrics` (with",
        "`/healthz` and `/readyz`) at `RELAIS_METRICS_HOST:RELAIS_METRICS_PORT`. Names follow",
        "the Prometheus conventions (base units, `_total` counters, `_seconds`, `_bytes`);",
        "labels never carry patient data — only stages, topics, destinations, outcomes and",
        "reason codes.",
        "",
        "| Metric | Type | Labels | Served by | Meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for doc in docs:
        labels = ", ".join(f"`{label}`" for label in doc.labels) or "—"
        meaning = " ".join(doc.help.split()).replace("|", "\\|")
        lines.append(f"| `{doc.name}` | {doc.kind} | {labels} | {doc.served_by} | {meaning} |")
    return "\n".join(lines) + "\n"
