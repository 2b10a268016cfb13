"""Which destinations a document will not reach, and what the sender is told (pure).

A document the gateway answered AA for is a promise. When it is dead-lettered
later, or held for identity, each destination the producer asked for
(MetaDMPMSS: DESTDMP — on unless N —, DESTMSSANTEPS, DESTMSSANTEPAT) that it
will not reach gets its business acknowledgement with acceptance N: ZAM^Z01
for the DMP, ZAM^Z02 for each MSSanté destination, when the producer asked for
acknowledgements (ACK_RECEPTION; ACK_LECTURE_MSS also asks for the MSSanté
ones, whose read receipt will never come). Every outcome is also one audit
event, with or without a ZAM. Ids derive from the cause (the dead letter's id,
or the hold), so a replay writes the same records.

What is *not* this module's: a dead letter answered at the door (stage
``mllp``: AE/AR), one whose ZAM its sink already sent (the DMP sink's
refusals), and the ZAM path's own failures (``ack-forwarder``, ``outcomes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final

from consumers.outcomes.reasons import TABLE, Explanation, explain
from domain.metadata_flags import FLAG_DEFAULTS
from producers.hl7.business_ack import BusinessAck, build_business_ack
from relais.audit_records import sender_told
from relais.contracts import Codec, Record
from relais.deadletter import derived_id
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring

#: stages whose dead letters never reach this module's ZAMs (see the module docstring)
NOT_OURS: Final = frozenset({"mllp", "ack-forwarder", "outcomes", "mss-inbound"})
#: (stage, reason) pairs whose ZAM N the stage sent itself
ANSWERED: Final = frozenset({("dmp-sink", "dmp-rejected"), ("dmp-sink", "document-id-reused")})
COMPONENT: Final = "outcomes"


@dataclass(frozen=True)
class Destination:
    """One destination a producer may ask for: its flag, its ZAM, its words."""

    key: str
    flag: str
    kind: str  # Z01 | Z02
    label: str


DMP: Final = Destination("DMP", "DESTDMP", "Z01", "the DMP")
MSS_PS: Final = Destination("MSSANTE-PS", "DESTMSSANTEPS", "Z02", "the professionals' mailboxes")
MSS_PAT: Final = Destination("MSSANTE-PAT", "DESTMSSANTEPAT", "Z02", "the patient's mailbox")
MSS: Final = Destination("MSSANTE", "DESTMSSANTEPS", "Z02", "the MSSante mailbox")
#: the flags that ask for each kind of acknowledgement
ASKED_BY: Final = MappingProxyType(
    {"Z01": ("ACK_RECEPTION",), "Z02": ("ACK_RECEPTION", "ACK_LECTURE_MSS")}
)


@dataclass(frozen=True)
class Sent:
    """What the original record says about the document and its sender (no patient data)."""

    event_id: str
    facility: str
    application: str
    control_id: str
    unique_id: str | None
    flags: Mapping[str, bool]
    #: a delivery request's own destination (DMP, MSSANTE, NOTIFY); None for a document
    request_destination: str | None = None


@dataclass(frozen=True)
class Told:
    """What to write for one outcome: the ZAMs (``BusinessAck``) and the audit event."""

    acks: tuple[Record, ...]
    audit: Record
    reason_code: str
    facility: str


def sent_of(record: Record) -> Sent | None:
    """The sender of a decoded document record (submitted, qualified, ready, held, request)."""
    source = record.get("source")
    if not isinstance(source, Mapping) or "event_id" not in record:
        return None
    hints = record.get("hints")
    flags = hints.get("flags") if isinstance(hints, Mapping) else record.get("flags")
    document = record.get("document") or {}
    destination = record.get("destination")
    return Sent(
        event_id=record["event_id"],
        facility=source["facility"],
        application=source["application"],
        control_id=source["message_control_id"],
        unique_id=document.get("unique_id"),
        flags=dict(flags or {}),
        request_destination=str(destination) if destination is not None else None,
    )


def ours(stage: str, reason_code: str) -> bool:
    """Whether a dead letter of ``stage`` for ``reason_code`` is told to the sender here."""
    return stage not in NOT_OURS and (stage, reason_code) not in ANSWERED


def _asked(flags: Mapping[str, bool], name: str) -> bool:
    return bool(flags.get(name, FLAG_DEFAULTS.get(name, False)))


def unreached(sent: Sent) -> tuple[Destination, ...]:
    """The destinations the producer asked for that this document will not reach."""
    if sent.request_destination == "DMP":
        return (DMP,)
    if sent.request_destination == "MSSANTE":
        return (MSS,)
    if sent.request_destination is not None:  # NOTIFY: the producer asked no ZAM for it
        return ()
    return tuple(d for d in (DMP, MSS_PS, MSS_PAT) if _asked(sent.flags, d.flag))


def wants_ack(sent: Sent, kind: str) -> bool:
    return any(_asked(sent.flags, flag) for flag in ASKED_BY[kind])


def tell(sent: Sent, why: Explanation, *, cause: str, now: datetime) -> Told:
    """The ZAMs N (when asked) and the audit event of one outcome; ``cause`` keys the ids."""
    targets = unreached(sent)
    asked = [d for d in targets if wants_ack(sent, d.kind)]
    acks = tuple(_ack(sent, d, why, cause=cause, now=now) for d in asked)
    audit = sender_told(
        event_id=sent.event_id,
        cause=cause,
        reason_code=why.code,
        zams=[f"ZAM^{d.kind} N ({d.key})" for d in asked],
        missed=[d.key for d in targets],
        to=f"{sent.facility} ({sent.application}) MSH-10 {sent.control_id}",
        document_unique_id=sent.unique_id,
        now=now,
    )
    return Told(acks, audit, why.code, sent.facility)


def _ack(sent: Sent, dest: Destination, why: Explanation, *, cause: str, now: datetime) -> Record:
    ack_id = derived_id(sent.event_id, COMPONENT, cause, dest.key)
    message = build_business_ack(
        BusinessAck(
            kind=dest.kind,
            accepted=False,
            original_control_id=sent.control_id,
            producer_application=sent.application,
            producer_facility=sent.facility,
            error=(why.code, why.label),
            severity=why.severity,
            text=f"{dest.label}: {why.text}",
            error_table=TABLE,
        ),
        control_id=ack_id.replace("-", "")[:20],
        now=now,
    )
    return {
        "ack_id": ack_id,
        "event_id": sent.event_id,
        "request_id": derived_id(sent.event_id, COMPONENT, dest.key),
        "kind": dest.kind,
        "accepted": False,
        "facility": sent.facility,
        "application": sent.application,
        "original_control_id": sent.control_id,
        "message": message,
        "at": now,
    }


def open_original(letter: Record, keyring: Keyring, codec: Codec) -> Record:
    """The dead letter's original record: sealed, bound to the dead letter's id, Avro.

    Raises ``EnvelopeError`` or ``ContractError`` when it cannot be opened or read.
    """
    raw = open_envelope(
        keyring,
        Envelope.from_record(letter["original"]),
        event_id=letter["dead_letter_id"],
        purpose="original",
    )
    return codec.decode(raw)[1]


def after_dead_letter(letter: Record, original: Record, now: datetime) -> Told | None:
    """What the sender is told of a dead letter (None: not ours, or not a document)."""
    if not ours(letter["stage"], letter["reason_code"]):
        return None
    sent = sent_of(original)
    if sent is None:
        return None
    why = explain(
        letter["reason_code"], letter["stage"], letter["dead_letter_id"], letter["reason"]
    )
    return tell(sent, why, cause=f"dead-letter:{letter['dead_letter_id']}", now=now)


def after_hold(held: Record, now: datetime, *, reminder: bool = False) -> Told | None:
    """What the sender is told of an ``IdentityHeld`` (again as a reminder, when still held)."""
    sent = sent_of(held)
    if sent is None:
        return None
    why = explain("identity-still-held" if reminder else "identity-held", "identity")
    why = Explanation(why.code, why.label, f"{why.text} (hold reason {held['reason_code']})", "W")
    return tell(sent, why, cause="hold-reminder" if reminder else "held", now=now)
