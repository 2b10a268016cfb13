"""The audit events of a document's journey that components write beside their records.

Who/what/when, never whose: a document is RECEIVED from a sender (facility,
application, MSH-10), its IDENTITY_DECIDED (qualified, held or blocked, by
reason code), each delivery DELIVERED or DELIVERY_FAILED (destination,
request, answer code), each business acknowledgement ACKNOWLEDGED, and each
later outcome told to the sender (or not asked: OTHER). Ids are
derived from what happened, so a replayed step writes the same audit id.
Pure: each component adds the record to the outputs it already produces.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from relais.audit import AuditFacts, audit_event
from relais.contracts import Record
from relais.deadletter import derived_id

_DELIVERED = {"DELIVERED", "DUPLICATE"}


def received(submitted: Record, *, component: str = "producer") -> Record:
    """RECEIVED: a ``DocumentSubmitted`` taken by the bus, and from whom."""
    source, document = submitted["source"], submitted["document"]
    return audit_event(
        event_id=submitted["event_id"],
        component=component,
        action="RECEIVED",
        outcome="accepted",
        now=submitted["submitted_at"],
        document_unique_id=document["unique_id"],
        detail=(
            f"from {source['facility']} ({source['application']}), {source['message_type']} "
            f"MSH-10 {source['message_control_id']}\n"
            f"sector {submitted['sector']}, {document['type_code']} {document['type_label']}, "
            f"{document['action']}, {document['size_bytes']} bytes"
        ),
        facts=AuditFacts(
            facility=source["facility"],
            application=source["application"],
            message_control_id=source["message_control_id"],
            type_code=document["type_code"],
        ),
    )


def identity_decided(record_type: str, record: Record, now: datetime) -> Record | None:
    """IDENTITY_DECIDED for an identity stage output about a document, else None."""
    if record_type == "IdentityQualified":
        status, attributes = record["identity_status"], record["identity_attributes"]
        outcome = f"qualified:{status}"
        detail = f"identity status {status}" + (f", {', '.join(attributes)}" if attributes else "")
    elif record_type == "IdentityHeld":
        outcome = f"held:{record['reason_code']}"
        detail = f"identity status {record['identity_status']}: held until it is qualified"
    elif record_type == "IdentityAlert" and record["document_unique_id"]:
        outcome = f"blocked:{record['reason_code']}"
        detail = "identitovigilance alert: blocked until a human resolves it"
    else:
        return None
    unique_id = record.get("document_unique_id") or record["document"]["unique_id"]
    audit = audit_event(
        event_id=record["event_id"],
        component="identity",
        action="IDENTITY_DECIDED",
        outcome=outcome,
        now=now,
        document_unique_id=unique_id,
        detail=detail,
    )
    return {**audit, "audit_id": derived_id(record["event_id"], "identity", outcome)}


def delivery_detail(status: Record) -> str:
    """What a ``DeliveryStatus`` says besides its outcome: request, attempt, answer code, detail."""
    parts = [f"request {status['request_id']}, attempt {status['attempt']}"]
    if status["code"]:
        parts.append(f"answer code {status['code']}")
    if status["detail"]:
        parts.append(status["detail"])
    return "\n".join(parts)


def ack_outcome(ack: Record) -> str:
    """``ZAM^<kind>:accepted`` or ``:refused``: the outcome of a business acknowledgement."""
    return f"ZAM^{ack['kind']}:{'accepted' if ack['accepted'] else 'refused'}"


def ack_detail(ack: Record) -> str:
    """Whom a business acknowledgement goes to, for which message."""
    return f"to {ack['facility']} ({ack['application']}) for MSH-10 {ack['original_control_id']}"


def delivery(status: Record, *, component: str) -> Record:
    """DELIVERED or DELIVERY_FAILED for a final ``DeliveryStatus`` (same instant)."""
    action = "DELIVERED" if status["outcome"] in _DELIVERED else "DELIVERY_FAILED"
    audit = audit_event(
        event_id=status["event_id"],
        component=component,
        action=action,
        outcome=f"{status['destination']}:{status['outcome']}",
        now=status["at"],
        document_unique_id=status["document_unique_id"],
        detail=delivery_detail(status),
    )
    return {**audit, "audit_id": derived_id(status["request_id"], component, action)}


def acknowledged(ack: Record, *, component: str, document_unique_id: str | None) -> Record:
    """ACKNOWLEDGED: a business acknowledgement (ZAM) produced for the document's sender."""
    audit = audit_event(
        event_id=ack["event_id"],
        component=component,
        action="ACKNOWLEDGED",
        outcome=ack_outcome(ack),
        now=ack["at"],
        document_unique_id=document_unique_id,
        detail=ack_detail(ack),
    )
    return {**audit, "audit_id": ack["ack_id"]}


def sender_told(
    *,
    event_id: str,
    cause: str,
    reason_code: str,
    zams: Sequence[str],
    missed: Sequence[str],
    to: str,
    document_unique_id: str | None,
    now: datetime,
) -> Record:
    """ACKNOWLEDGED (ZAMs N sent) or OTHER (none asked): a later outcome told to the sender.

    ``zams`` are the ZAMs written (``ZAM^Z01 N (DMP)``...), ``missed`` the destinations
    asked for that the document will not reach, ``to`` the sender and its MSH-10;
    ``cause`` (the dead letter, the hold) keys the id.
    """
    audit = audit_event(
        event_id=event_id,
        component="outcomes",
        action="ACKNOWLEDGED" if zams else "OTHER",
        outcome=f"{'sender-told' if zams else 'sender-not-asked'}:{reason_code}",
        now=now,
        document_unique_id=document_unique_id,
        detail=(
            f"not reached: {', '.join(missed) or 'no destination asked'}; to {to}: "
            f"{', '.join(zams) or 'no ZAM asked (ACK_RECEPTION)'}"
        ),
    )
    return {**audit, "audit_id": derived_id(event_id, "outcomes", cause)}


def identity_released(audit: Record) -> bool:
    """Whether an audit event says the identity stage let a document go on (qualified)."""
    return (
        audit.get("component") == "identity"
        and audit.get("action") == "IDENTITY_DECIDED"
        and str(audit.get("outcome", "")).startswith("qualified:")
    )


def consent_changed(
    *,
    event_id: str,
    patient_key: str,
    before: str,
    after: str,
    source: Record,
    trigger: str,
    now: datetime,
) -> Record:
    """CONSENT_CHANGED: the patient's DMP status or word on feeding it (PAM FR ZFA) changed.

    Names the patient by its pseudonymous key only, and the ADT by its event id, sender
    and MSH-10: never the INS or names."""
    audit = audit_event(
        event_id=event_id,
        component="identity",
        action="CONSENT_CHANGED",
        outcome=f"dmp-consent:{after.replace(' ', ',')}",
        now=now,
        detail=(
            f"patient {patient_key}: {before} -> {after}\n"
            f"ADT^{trigger} from {source['facility']} ({source['application']}) "
            f"MSH-10 {source['message_control_id']}"
        ),
    )
    return {**audit, "audit_id": derived_id(event_id, "identity", "dmp-consent")}
