"""The declarative catalogue of every topic on the bus.

One list, read by ``relais topics``, the workers and the tests. Names follow
``<prefix>.<domain>.<what>.v<major>``; the prefix lets tests and demos run on
isolated topic sets on one broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True)
class TopicSpec:
    """A topic as Relais needs it to exist on the broker."""

    suffix: str
    partitions: int  # the default; RELAIS_PARTITIONS sets every topic's (relais.topic_admin)
    purpose: str
    configs: dict[str, str] = field(default_factory=dict)

    def name(self, prefix: str) -> str:
        return f"{prefix}.{self.suffix}"


#: Partitions of every topic unless RELAIS_PARTITIONS (``KafkaSettings.partitions``) says
#: otherwise: as many processes of one stage or sink as partitions share its work. All topics
#: have the one count: Faust tables need their changelogs and their sources to match, and a
#: ledger entry lives in the partition number of its request.
DEFAULT_PARTITIONS: Final = 12

_WEEK_MS: Final = str(7 * 24 * 3600 * 1000)
_MONTH_MS: Final = str(31 * 24 * 3600 * 1000)
_DATA: Final = {"retention.ms": _WEEK_MS, "max.message.bytes": str(16 << 20)}
_KEEP: Final = {"retention.ms": _MONTH_MS, "max.message.bytes": str(16 << 20)}

SUBMITTED: Final = TopicSpec(
    "documents.submitted.v1", DEFAULT_PARTITIONS, "documents accepted from producers", _DATA
)
TEST_DOCUMENTS: Final = TopicSpec(
    "documents.test.v1",
    DEFAULT_PARTITIONS,
    "test messages (MSH-11 T/D) a producer sent: checked like the others, delivered nowhere",
    _DATA,
)
DOCUMENT_IDS: Final = TopicSpec(
    "documents.ids.v1",
    DEFAULT_PARTITIONS,
    "document ids the door accepted, with their content digest (compacted, by id)",
    {
        "cleanup.policy": "compact",
        "retention.ms": str(366 * 24 * 3600 * 1000),
        "max.message.bytes": str(1 << 20),
    },
)
QUALIFIED: Final = TopicSpec(
    "documents.qualified.v1", DEFAULT_PARTITIONS, "documents whose INS is qualified", _DATA
)
READY: Final = TopicSpec(
    "documents.ready.v1", DEFAULT_PARTITIONS, "transcoded, validated documents", _DATA
)
DELIVERY_DMP: Final = TopicSpec(
    "deliveries.dmp.v1", DEFAULT_PARTITIONS, "DMP filing requests", _DATA
)
DELIVERY_MSSANTE: Final = TopicSpec(
    "deliveries.mssante.v1", DEFAULT_PARTITIONS, "MSSanté mail requests", _DATA
)
DELIVERY_NOTIFY: Final = TopicSpec(
    "deliveries.notify.v1", DEFAULT_PARTITIONS, "patient notification requests", _DATA
)
DELIVERY_STATUS: Final = TopicSpec(
    "deliveries.status.v1", DEFAULT_PARTITIONS, "outcome of every delivery", _KEEP
)
IDENTITY_PENDING: Final = TopicSpec(
    "identity.pending.v1",
    DEFAULT_PARTITIONS,
    "documents held until their identity is qualified",
    _KEEP,
)
IDENTITY_EVENTS: Final = TopicSpec(
    "identity.events.v1", DEFAULT_PARTITIONS, "patient identity updates and merges (ADT)", _KEEP
)
IDENTITY_ALERTS: Final = TopicSpec(
    "identity.alerts.v1",
    DEFAULT_PARTITIONS,
    "identitovigilance alerts: contradictions blocked for a human",
    _KEEP,
)
IDENTITY_COMMANDS: Final = TopicSpec(
    "identity.commands.v1",
    # as many as documents.submitted: a patient's commands meet its state in one place
    DEFAULT_PARTITIONS,
    "identitovigilance operators' release/reject/unblock, and hold expiries",
    _KEEP,
)
MSSANTE_INBOUND: Final = TopicSpec(
    "mssante.inbound.v1", DEFAULT_PARTITIONS, "documents received by mail", _DATA
)
DELIVERY_LEDGER: Final = TopicSpec(
    "deliveries.ledger.v1",
    DEFAULT_PARTITIONS,  # as many as the delivery topics: entry partition = request partition
    "what each sink already did per request: retries never deliver twice",
    {"cleanup.policy": "compact", "retention.ms": _MONTH_MS, "max.message.bytes": str(1 << 20)},
)
DMP_VISIBILITY: Final = TopicSpec(
    "deliveries.visibility.v1",
    DEFAULT_PARTITIONS,  # as many as deliveries.dmp: a lift lives in its request's partition
    "embargoed DMP documents waiting for their visibility update (TD3.3b), by request id",
    {"cleanup.policy": "compact", "retention.ms": _MONTH_MS, "max.message.bytes": str(1 << 20)},
)
IDENTITY_CONSENT: Final = TopicSpec(
    "identity.consent.v1",
    DEFAULT_PARTITIONS,  # keyed by patient key, as deliveries.dmp: the DMP sink reads its own
    "each patient's latest DMP status and word on feeding it (PAM FR ZFA; compacted, by "
    "patient key): the DMP sink checks it when it files",
    # compact only: the latest word of each patient is kept however old (retention.ms
    # applies to the delete policy, not here)
    {"cleanup.policy": "compact", "retention.ms": _MONTH_MS, "max.message.bytes": str(1 << 20)},
)
DELIVERY_HELD: Final = TopicSpec(
    "deliveries.held.v1",
    DEFAULT_PARTITIONS,  # as many as deliveries.mssante: a hold lives in its request's partition
    "patients' MSSanté copies held until their release date (compacted, by request id)",
    {"cleanup.policy": "compact", "retention.ms": _MONTH_MS, "max.message.bytes": str(16 << 20)},
)
BUSINESS_ACKS: Final = TopicSpec(
    "acks.business.v1",
    DEFAULT_PARTITIONS,
    "HL7 business acknowledgements (ZAM) for the producers",
    _KEEP,
)
DEADLETTER: Final = TopicSpec(
    "deadletter.v1", DEFAULT_PARTITIONS, "records a stage could not process", _KEEP
)
AUDIT: Final = TopicSpec("audit.v1", DEFAULT_PARTITIONS, "who/what/when for every document", _KEEP)
# The notifier's ledger: one entry per notification request, keyed by request id, in the
# same partition number as the request (so as many partitions as DELIVERY_NOTIFY).
NOTIFY_LEDGER: Final = TopicSpec(
    "notify.ledger.v1",
    DELIVERY_NOTIFY.partitions,
    "patient notifications: scheduled, sent, cancelled (compacted, by request id)",
    {"cleanup.policy": "compact", "retention.ms": _MONTH_MS, "max.message.bytes": str(1 << 20)},
)

ALL_TOPICS: Final[tuple[TopicSpec, ...]] = (
    SUBMITTED,
    TEST_DOCUMENTS,
    DOCUMENT_IDS,
    QUALIFIED,
    READY,
    DELIVERY_DMP,
    DELIVERY_MSSANTE,
    DELIVERY_NOTIFY,
    DELIVERY_STATUS,
    IDENTITY_PENDING,
    IDENTITY_EVENTS,
    IDENTITY_ALERTS,
    IDENTITY_COMMANDS,
    IDENTITY_CONSENT,
    MSSANTE_INBOUND,
    DELIVERY_LEDGER,
    DMP_VISIBILITY,
    DELIVERY_HELD,
    BUSINESS_ACKS,
    DEADLETTER,
    AUDIT,
    NOTIFY_LEDGER,
)
