"""Records of a few documents' journeys, as the index reads them (shared by the index tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ops.dlq.letters import LetterView
from ops.index.rows import Read
from relais.audit import AuditFacts, audit_event
from relais.audit_records import delivery, identity_decided
from relais.contracts import Record

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def received(event_id: str, unique_id: str, *, sender: str, msh10: str, when: datetime) -> Record:
    return audit_event(
        event_id=event_id,
        component="producer",
        action="RECEIVED",
        outcome="accepted",
        now=when,
        document_unique_id=unique_id,
        detail=f"from {sender} MSH-10 {msh10}",
        facts=AuditFacts(
            facility=sender, application="LAB", message_control_id=msh10, type_code="11502-2"
        ),
    )


def step(event_id: str, unique_id: str | None, component: str, action: str, outcome: str,
         when: datetime) -> Record:  # fmt: skip
    return audit_event(
        event_id=event_id,
        component=component,
        action=action,
        outcome=outcome,
        now=when,
        document_unique_id=unique_id,
    )


def qualified(event_id: str, unique_id: str, when: datetime, *, held: bool = False) -> Record:
    record: Record
    if held:
        record = {"event_id": event_id, "reason_code": "ins-unqualified",
                  "identity_status": "PROV", "document_unique_id": unique_id}  # fmt: skip
        found = identity_decided("IdentityHeld", record, when)
    else:
        record = {"event_id": event_id, "identity_status": "QUAL", "identity_attributes": [],
                  "document_unique_id": unique_id}  # fmt: skip
        found = identity_decided("IdentityQualified", record, when)
    assert found is not None
    return found


def status(event_id: str, unique_id: str, destination: str, outcome: str, when: datetime,
           *, code: str | None = None, attempt: int = 1) -> Record:  # fmt: skip
    return {
        "event_id": event_id,
        "request_id": f"req-{event_id}-{destination}",
        "destination": destination,
        "document_unique_id": unique_id,
        "outcome": outcome,
        "code": code,
        "detail": None,
        "attempt": attempt,
        "at": when,
        "submitted_at": when,
    }


def ack(event_id: str, when: datetime) -> Record:
    return {
        "ack_id": f"ack-{event_id}",
        "event_id": event_id,
        "request_id": f"req-{event_id}-DMP",
        "kind": "Z01",
        "accepted": True,
        "facility": "LABO",
        "application": "LAB",
        "original_control_id": "M1",
        "message": b"",
        "at": when,
    }


def letter(dead_letter_id: str, event_id: str | None, unique_id: str | None, when: datetime,
           *, stage: str = "transcode", reason: str = "cda-not-well-formed",
           facility: str | None = "LABO") -> LetterView:  # fmt: skip
    return LetterView(
        dead_letter_id=dead_letter_id,
        stage=stage,
        reason_code=reason,
        reason="the CDA is not well-formed XML",
        occurred_at=when,
        source_topic="t.documents.qualified.v1",
        source_partition=3,
        source_offset=17,
        original_size=123,
        original_sha256="ab" * 32,
        event_id=event_id,
        record_type="IdentityQualified" if event_id else None,
        sector="LAB",
        document_unique_id=unique_id,
        facility=facility,
    )


def replayed(event_id: str, dead_letter_id: str, when: datetime) -> Record:
    return audit_event(
        event_id=event_id,
        component="dlq",
        action="REPLAYED",
        outcome="sent-back",
        now=when,
        detail=f"dead-letter {dead_letter_id}\nsent back to t.documents.qualified.v1 "
        "partition 3 offset 40\nby alice",
    )


def journeys() -> dict[str, list[tuple[str, object]]]:
    """Five documents: delivered (with an ack), held, refused by the DMP, dead-lettered,
    dead-lettered then replayed and delivered; and a refusal at the door."""
    e = {n: f"ev-{n}" for n in ("ok", "held", "refused", "dead", "replayed")}
    u = {n: f"1.2.250.{i}" for i, n in enumerate(e)}
    found: dict[str, list[tuple[str, object]]] = {}
    for i, (n, event_id) in enumerate(e.items()):
        sender = "LABO" if n != "refused" else "CHU"
        found[n] = [("AuditEvent", received(event_id, u[n], sender=sender, msh10=f"M{i}",
                                            when=at(i * 60)))]  # fmt: skip
    ok, r = e["ok"], u["ok"]
    found["ok"] += [
        ("AuditEvent", qualified(ok, r, at(1))),
        ("AuditEvent", step(ok, r, "transcode", "TRANSCODED", "cda", at(2))),
        ("AuditEvent", step(ok, r, "route", "ROUTED", "DMP", at(3))),
        ("DeliveryStatus", status(ok, r, "DMP", "DELIVERED", at(4))),
        ("AuditEvent", delivery(status(ok, r, "DMP", "DELIVERED", at(4)), component="dmp-sink")),
        ("BusinessAck", ack(ok, at(5))),
    ]
    found["held"] += [("AuditEvent", qualified(e["held"], u["held"], at(61), held=True))]
    ev, r = e["refused"], u["refused"]
    found["refused"] += [
        ("AuditEvent", qualified(ev, r, at(121))),
        ("AuditEvent", step(ev, r, "route", "ROUTED", "DMP", at(123))),
        ("DeliveryStatus", status(ev, r, "DMP", "REJECTED", at(124), code="DMPERR-42")),
    ]
    ev, r = e["dead"], u["dead"]
    found["dead"] += [
        ("AuditEvent", qualified(ev, r, at(181))),
        ("DeadLetter", letter("dl-dead-0001", ev, r, at(182))),
    ]
    ev, r = e["replayed"], u["replayed"]
    found["replayed"] += [
        ("AuditEvent", qualified(ev, r, at(241))),
        ("DeadLetter", letter("dl-repl-0002", ev, r, at(242))),
        ("AuditEvent", replayed(ev, "dl-repl-0002", at(250))),
        ("AuditEvent", step(ev, r, "transcode", "TRANSCODED", "cda", at(251))),
        ("AuditEvent", step(ev, r, "route", "ROUTED", "DMP", at(252))),
        ("DeliveryStatus", status(ev, r, "DMP", "DELIVERED", at(253))),
    ]
    found["door"] = [("DeadLetter", letter("dl-door-0003", None, None, at(300), stage="door",
                                            reason="hl7-unparsable", facility="CLINIQUE"))]  # fmt: skip
    return found


def reads(
    records: list[tuple[str, object]], *, key: bytes = b"pk-0000", start: int = 0
) -> list[Read]:
    """The records as read from their topics (offsets counted per record type)."""
    topics = {"AuditEvent": "t.audit.v1", "DeliveryStatus": "t.deliveries.status.v1",
              "DeadLetter": "t.deadletter.v1", "BusinessAck": "t.acks.business.v1"}  # fmt: skip
    found = []
    for offset, (record_type, record) in enumerate(records, start=start):
        found.append(Read(record_type, record, key, topics[record_type], 0, offset))  # type: ignore[arg-type]
    return found
