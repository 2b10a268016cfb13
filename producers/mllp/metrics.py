"""Prometheus metrics of the MLLP gateway, as the gateway's observer.

The gateway only knows the :class:`~producers.mllp.gateway.GatewayObserver`
protocol; this module is one implementation, on the shared registry of
``relais.metrics`` so one ``/metrics`` endpoint serves stages and gateway.
Labels are closed sets (outcomes, ACK codes, reason codes): a value outside
them is reported as ``other`` so a misbehaving peer cannot grow the series.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from relais.metrics import REGISTRY

OUTCOMES: Final = frozenset(
    {
        "eof",
        "reset",
        "idle-timeout",
        "slow-frame",
        "oversized",
        "tls-error",
        "too-many",
        "too-many-from-peer",
        "handler-error",
        "shutdown",
    }
)
ACK_CODES: Final = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
REJECTIONS: Final = frozenset({"oversized", "truncated", "slow-frame", "junk", "peer-not-bound"})

CONNECTIONS_OPEN = Gauge(
    "relais_mllp_connections_open",
    "MLLP connections currently open.",
    registry=REGISTRY,
)
CONNECTIONS = Counter(
    "relais_mllp_connections_total",
    "MLLP connections closed, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
MESSAGES = Counter(
    "relais_mllp_messages_total",
    "MLLP messages answered, by MSA-1 acknowledgement code.",
    ["ack_code"],
    registry=REGISTRY,
)
FRAME_REJECTIONS = Counter(
    "relais_mllp_frame_rejections_total",
    "MLLP frames or bytes refused before reaching the handler, by reason (peer-not-bound: "
    "MSH-4 is not a facility the client certificate may send for, answered AR).",
    ["reason"],
    registry=REGISTRY,
)
ACK_SECONDS = Histogram(
    "relais_mllp_ack_seconds",
    "Time from a message fully received to its ACK written, in seconds.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
MESSAGE_BYTES = Histogram(
    "relais_mllp_message_bytes",
    "Size of the MLLP messages received (payload, without framing), in bytes.",
    buckets=tuple(float(1 << n) for n in range(10, 25, 2)),  # 1 KiB .. 16 MiB
    registry=REGISTRY,
)


def _known(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else "other"


class PrometheusGatewayObserver:
    """Reports the gateway's events on the shared Prometheus registry."""

    def __init__(self) -> None:
        # Export zeros from the start so rates and alerts see the series.
        for outcome in sorted(OUTCOMES):
            CONNECTIONS.labels(outcome).inc(0)
        for code in ("AA", "AE", "AR"):
            MESSAGES.labels(code).inc(0)
        for reason in sorted(REJECTIONS):
            FRAME_REJECTIONS.labels(reason).inc(0)

    def connection_opened(self) -> None:
        CONNECTIONS_OPEN.inc()

    def connection_closed(self, reason: str) -> None:
        CONNECTIONS_OPEN.dec()
        CONNECTIONS.labels(_known(reason, OUTCOMES)).inc()

    def frame_received(self, size: int) -> None:
        MESSAGE_BYTES.observe(size)

    def ack_sent(self, code: str, seconds: float) -> None:
        MESSAGES.labels(_known(code, ACK_CODES)).inc()
        ACK_SECONDS.observe(seconds)

    def frame_rejected(self, reason: str) -> None:
        FRAME_REJECTIONS.labels(_known(reason, REJECTIONS)).inc()


MESSAGES_ACCEPTED = Counter(
    "relais_producer_messages_accepted_total",
    "HL7 messages accepted onto the bus, by sector, message type and sender (MSH-4; 'other' "
    "past the first 200 senders of the process).",
    ["sector", "message_type", "sender"],
    registry=REGISTRY,
)
MESSAGES_REFUSED = Counter(
    "relais_producer_messages_refused_total",
    "HL7 messages refused (AE: bad message, AR: bus unavailable), by code, reason and "
    "sender (MSH-4 of a sender with an accepted message, else 'other'; 'unreadable').",
    ["ack_code", "reason", "sender"],
    registry=REGISTRY,
)
DOCUMENTS_ACCEPTED = Counter(
    "relais_producer_documents_accepted_total",
    "Documents accepted onto the bus, by sector and sender (MSH-4; 'other' past the first "
    "200 senders of the process).",
    ["sector", "sender"],
    registry=REGISTRY,
)


_MAX_SENDERS = 200


class PrometheusIngestObserver:
    """Counts what :class:`producers.ingest.Ingest` accepts and refuses."""

    def __init__(self) -> None:
        self._senders: set[str] = set()

    def accepted(
        self, sector: str, message_type: str, documents: int, sender: str | None = None
    ) -> None:
        if sender and len(self._senders) < _MAX_SENDERS:  # a sender Relais accepted from
            self._senders.add(_printable(sender))
        label = self._sender(sender)
        MESSAGES_ACCEPTED.labels(sector, message_type, label).inc()
        DOCUMENTS_ACCEPTED.labels(sector, label).inc(documents)

    def refused(self, code: str, reason: str, sender: str | None = None) -> None:
        # reason is "<0357 code>-<location>", e.g. "101-PID-3": a closed, data-free set.
        MESSAGES_REFUSED.labels(code, reason, self._sender(sender)).inc()

    def _sender(self, sender: str | None) -> str:
        """MSH-4 as a label for senders that had a message accepted ('other' for the rest):
        unauthenticated junk cannot fill the label set."""
        if not sender:
            return "unreadable"
        label = _printable(sender)
        return label if label in self._senders else "other"


def _printable(sender: str) -> str:
    return "".join(c for c in sender[:40] if c.isprintable())
