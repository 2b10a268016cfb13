"""Prometheus metrics of the document index's feeder (``relais index run``): how far it
has read, and what each sender and destination did in the last 24 hours.

The per-sender gauges are labelled by facility (MSH-4), never by patient: at most
:data:`MAX_FACILITIES` facilities, the rest counted under ``other``. They are recomputed
from the index every RELAIS_INDEX_STATS_INTERVAL_S (:func:`publish_stats`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

from ops.index.model import DestinationStats, SenderStats
from relais.metrics import REGISTRY

MAX_FACILITIES = 500
OTHER = "other"

RECORDS = Counter(
    "relais_index_records_total",
    "Records the document index read, by topic (undecodable ones included).",
    ["topic"],
    registry=REGISTRY,
)
UNDECODABLE = Counter(
    "relais_index_undecodable_records_total",
    "Records the document index skipped because they do not decode, by topic.",
    ["topic"],
    registry=REGISTRY,
)
REFUSED = Counter(
    "relais_index_refused_records_total",
    "Records the document index skipped because its database refused their rows, by topic.",
    ["topic"],
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "relais_index_batch_seconds",
    "Time to write one batch of rows and positions into the index, in seconds.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
LAG = Gauge(
    "relais_index_lag_records",
    "Records on a topic the document index has not read yet (end offset - position).",
    ["topic"],
    registry=REGISTRY,
)
LAST_INDEXED = Gauge(
    "relais_index_last_indexed_timestamp_seconds",
    "When the document index last wrote a batch (Unix time, seconds).",
    registry=REGISTRY,
)
SENDER_DOCUMENTS = Gauge(
    "relais_sender_documents",
    "Documents of a sender (MSH-4) received in the last 24 hours, by where they stand: "
    "received (all), refused, held, delivered, dead_lettered, duplicate (ignored, also "
    "counted as received).",
    ["facility", "status"],
    registry=REGISTRY,
)
SENDER_REFUSALS = Gauge(
    "relais_sender_refusals",
    "A sender's documents refused in the last 24 hours, at the door or later, by reason code.",
    ["facility", "reason"],
    registry=REGISTRY,
)
SENDER_LAST_SEEN = Gauge(
    "relais_sender_last_seen_timestamp_seconds",
    "When a sender's latest document was received (Unix time, seconds).",
    ["facility"],
    registry=REGISTRY,
)
DESTINATION_DOCUMENTS = Gauge(
    "relais_destination_documents",
    "Documents received in the last 24 hours by a destination's latest word: delivered, "
    "refused, waiting, dead_lettered.",
    ["destination", "outcome"],
    registry=REGISTRY,
)


FACILITY_MAX = 64  # characters of a facility label (MSH-4 is what a sender wrote)


def facility_label(sender: str) -> str:
    """A sender's facility as a label: printable characters only, at most
    :data:`FACILITY_MAX` of them (``?`` for what is not printable)."""
    printable = "".join(c if c.isprintable() else "?" for c in sender)
    return printable[:FACILITY_MAX] or "?"


def _bounded(found: Sequence[SenderStats]) -> dict[str, list[SenderStats]]:
    """The senders by label: the :data:`MAX_FACILITIES` busiest by name, the rest ``other``."""
    busiest = sorted(found, key=lambda s: (-(s.received + sum(s.refused.values())), s.sender))
    labels: dict[str, list[SenderStats]] = {}
    for i, s in enumerate(busiest):
        labels.setdefault(facility_label(s.sender) if i < MAX_FACILITIES else OTHER, []).append(s)
    return labels


Series = dict[Gauge, dict[tuple[str, ...], float]]
_PUBLISHED: dict[Gauge, set[tuple[str, ...]]] = {}  # the series publish_stats last set


def _sender_series(senders: Sequence[SenderStats], found: Series) -> None:
    for label, group in _bounded(senders).items():
        counts = {
            "received": sum(s.received for s in group),
            "refused": sum(sum(s.refused.values()) for s in group),
            "held": sum(s.held for s in group),
            "delivered": sum(s.delivered for s in group),
            "dead_lettered": sum(s.dead_lettered for s in group),
            "duplicate": sum(s.duplicates for s in group),
        }
        for status, n in counts.items():
            found[SENDER_DOCUMENTS][(label, status)] = n
        for s in group:
            for reason, n in s.refused.items():
                key = (label, reason)
                found[SENDER_REFUSALS][key] = found[SENDER_REFUSALS].get(key, 0) + n
        seen = [s.last_seen.timestamp() for s in group if s.last_seen is not None]
        if seen:
            found[SENDER_LAST_SEEN][(label,)] = max(seen)


def publish_stats(senders: Sequence[SenderStats], destinations: Sequence[DestinationStats]) -> None:
    """Replace the per-sender and per-destination gauges with these numbers: the new values
    are set first, then the series that vanished are removed (a scrape never sees them
    empty)."""
    found: Series = {
        g: {} for g in (SENDER_DOCUMENTS, SENDER_REFUSALS, SENDER_LAST_SEEN, DESTINATION_DOCUMENTS)
    }
    _sender_series(senders, found)
    for d in destinations:
        outcomes = {"delivered": d.delivered, "refused": sum(d.refused.values())}
        outcomes |= {"waiting": d.waiting, "dead_lettered": d.dead_lettered}
        for outcome, n in outcomes.items():
            found[DESTINATION_DOCUMENTS][(d.destination, outcome)] = n
    for gauge, values in found.items():
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        for labels in set(_PUBLISHED.get(gauge, ())) - set(values):
            with contextlib.suppress(KeyError):  # cleared since
                gauge.remove(*labels)
        _PUBLISHED[gauge] = set(values)
