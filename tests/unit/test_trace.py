"""ops.trace.journey and relais.audit_records: one document's journey, from what components wrote."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ops.demo.samples import DOMINIQUE, LAB, sample
from ops.dlq.letters import LetterView
from ops.trace.journey import journey, journey_lines
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.audit import audit_event
from relais.audit_records import acknowledged, delivery, identity_decided, received
from relais.contracts import Codec, Record
from relais.keyring import Keyring
from relais.topics import AUDIT, QUALIFIED
from streams.identity.shell import decision_audits
from streams.stage import Output

KEYRING = Keyring.generate("k-trace")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CODEC = Codec()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def wire(record_type: str, record: Record) -> Record:
    """Through the codec, as a reader of the topic gets it."""
    return CODEC.decode(CODEC.encode(record_type, record), expected=record_type)[1]


def submitted() -> Record:
    [record] = submissions(
        parse_message(sample(LAB, DOMINIQUE, 3)), sector="LAB", keyring=KEYRING, now=T0
    )
    return record


def status(doc: Record, outcome: str, seconds: float, detail: str | None = None) -> Record:
    return wire(
        "DeliveryStatus",
        {
            "event_id": doc["event_id"],
            "request_id": "req-dmp-1",
            "destination": "DMP",
            "document_unique_id": doc["document"]["unique_id"],
            "outcome": outcome,
            "code": None,
            "detail": detail,
            "attempt": 1,
            "at": at(seconds),
            "submitted_at": T0,
        },
    )


def ack(doc: Record, seconds: float) -> Record:
    return wire(
        "BusinessAck",
        {
            "ack_id": "ack-1",
            "event_id": doc["event_id"],
            "request_id": "req-dmp-1",
            "kind": "Z01",
            "accepted": True,
            "facility": "LABO-X",
            "application": "SGL",
            "original_control_id": "MSG-1",
            "message": b"MSH|...",
            "at": at(seconds),
        },
    )


def qualified(doc: Record) -> Record:
    return {
        **{
            k: doc[k]
            for k in (
                "event_id",
                "submitted_at",
                "sector",
                "source",
                "patient",
                "document",
                "hints",
            )
        },
        "qualified_at": at(1),
        "identity_status": "QUAL",
        "identity_attributes": [],
    }


def test_audit_records_encode_and_say_who_without_patient_data() -> None:
    doc = submitted()
    got = wire("AuditEvent", received(doc))
    assert got["action"] == "RECEIVED"
    assert got["component"] == "producer"
    assert got["document_unique_id"] == doc["document"]["unique_id"]
    assert doc["source"]["facility"] in got["detail"]
    assert doc["source"]["message_control_id"] in got["detail"]
    assert "sector LAB" in got["detail"]
    text = json.dumps(got, default=str)
    assert DOMINIQUE.family not in text
    assert DOMINIQUE.ins not in text
    assert doc["patient"]["patient_key"] not in text

    decided = identity_decided("IdentityQualified", qualified(doc), at(1))
    assert decided is not None
    assert wire("AuditEvent", decided)["outcome"] == "qualified:QUAL"
    held = {**qualified(doc), "reason_code": "identity-not-qualified", "identity_status": "PROV"}
    held_audit = identity_decided("IdentityHeld", held, at(1))
    assert held_audit is not None
    assert held_audit["outcome"] == "held:identity-not-qualified"
    assert held_audit["audit_id"] != decided["audit_id"]  # held, then released: two events
    assert identity_decided("IdentityUpdate", {}, at(1)) is None

    delivered = wire("AuditEvent", delivery(status(doc, "DELIVERED", 3), component="dmp-sink"))
    assert (delivered["action"], delivered["outcome"]) == ("DELIVERED", "DMP:DELIVERED")
    assert delivered["at"] == at(3)
    failed = delivery(status(doc, "REJECTED", 3), component="dmp-sink")
    assert failed["action"] == "DELIVERY_FAILED"
    acked = wire(
        "AuditEvent", acknowledged(ack(doc, 3), component="dmp-sink", document_unique_id="u")
    )
    assert (acked["action"], acked["outcome"]) == ("ACKNOWLEDGED", "ZAM^Z01:accepted")


def test_the_identity_stage_audits_each_decision_it_outputs() -> None:
    doc = submitted()
    outputs = [Output(QUALIFIED, "IdentityQualified", qualified(doc), b"k")]
    [audit] = decision_audits(outputs, at(1))
    assert (audit.topic, audit.record_type, audit.key) == (AUDIT, "AuditEvent", b"k")
    assert audit.record["action"] == "IDENTITY_DECIDED"
    assert decision_audits([Output(AUDIT, "AuditEvent", {}, None)], at(1)) == []


def audit(doc: Record, component: str, action: str, outcome: str, seconds: float) -> Record:
    return wire(
        "AuditEvent",
        audit_event(
            event_id=doc["event_id"],
            component=component,
            action=action,
            outcome=outcome,
            now=at(seconds),
            document_unique_id=doc["document"]["unique_id"],
            detail="why",
        ),
    )


def letter(event_id: str | None, seconds: float, **fields: Any) -> LetterView:
    values: dict[str, Any] = {
        "dead_letter_id": "dl-0123456789",
        "stage": "transcode",
        "reason_code": "cda-not-well-formed",
        "reason": "line 1: not XML",
        "occurred_at": at(seconds),
        "source_topic": "t.documents.qualified.v1",
        "source_partition": 0,
        "source_offset": 5,
        "original_size": 10,
        "original_sha256": "00",
        "event_id": event_id,
    } | fields
    return LetterView(**values)


def test_the_journey_is_in_time_order_across_branches_and_says_each_thing_once() -> None:
    doc = submitted()
    resend = {**doc, "event_id": "ev-resend"}
    delivered = status(doc, "DELIVERED", 4)
    audits = [
        audit(doc, "route", "ROUTED", "DMP", 3),
        wire("AuditEvent", received(doc)),
        wire("AuditEvent", identity_decided("IdentityQualified", qualified(doc), at(1)) or {}),
        audit(doc, "transcode", "TRANSCODED", "CR-BIO N3", 2),
        wire("AuditEvent", delivery(delivered, component="dmp-sink")),
        wire("AuditEvent", delivery(delivered, component="dmp-sink")),  # a replayed step
        wire(
            "AuditEvent", acknowledged(ack(doc, 4), component="dmp-sink", document_unique_id=None)
        ),
        audit(resend, "dedupe", "DUPLICATE_IGNORED", f"duplicate-of:{doc['event_id']}", 6),
        audit(
            {**doc, "event_id": "ev-other", "document": {"unique_id": "other"}},
            "route",
            "ROUTED",
            "DMP",
            3,
        ),
    ]
    again = status(doc, "DELIVERED", 7, "already done (delivery ledger): not sent again")
    found = journey(
        doc["document"]["unique_id"],
        audits=audits,
        statuses=[delivered, again],
        acks=[ack(doc, 4)],
        letters=[letter(None, 5), letter("ev-other", 5, dead_letter_id="dl-other")],
    )
    assert [(s.component, s.action) for s in found.steps] == [
        ("producer", "RECEIVED"),
        ("identity", "IDENTITY_DECIDED"),
        ("transcode", "TRANSCODED"),
        ("route", "ROUTED"),
        ("dmp-sink", "DELIVERED"),  # its status at the same instant is not repeated
        ("dmp-sink", "ACKNOWLEDGED"),  # nor the ack on acks.business
        ("dedupe", "DUPLICATE_IGNORED"),  # a resend of the same document: its story too
        ("dmp delivery", "DELIVERED"),  # the later "already done" report
    ]
    assert found.event_ids == tuple(sorted([doc["event_id"], "ev-resend"]))
    assert found.unique_ids == (doc["document"]["unique_id"],)
    assert [s.branch for s in found.steps][4:6] == ["DMP", "DMP"]
    assert found.destinations() == {"DMP": "DELIVERED"}

    by_event = journey(doc["event_id"], audits=audits, letters=[letter(doc["event_id"], 5)])
    assert by_event.steps[-2].action == "DEAD_LETTERED"
    assert by_event.steps[-2].outcome == "cda-not-well-formed"
    assert "relais dlq show dl-01234" in (by_event.steps[-2].detail or "")


def test_journey_lines_and_json() -> None:
    doc = submitted()
    audits = [wire("AuditEvent", received(doc)), audit(doc, "route", "ROUTED", "DMP,NOTIFY", 3)]
    found = journey(doc["event_id"], audits=audits, statuses=[status(doc, "REJECTED", 4)])
    lines = journey_lines(found)
    assert lines[0] == f"journey of {doc['event_id']} (event {doc['event_id']})"
    assert lines[1] == f"document {doc['document']['unique_id']}"
    assert lines[3].startswith("2026-03-02 10:00:00.000Z  document  producer")
    assert "RECEIVED" in lines[3]
    assert lines[4].strip().startswith("from ")
    assert lines[-2:] == ["DMP: REJECTED", "NOTIFY: routed, no outcome yet"]
    text = "\n".join(lines)
    assert DOMINIQUE.family not in text
    assert doc["patient"]["patient_key"] not in text
    data = json.loads(json.dumps(found.to_json()))
    assert data["destinations"] == {"DMP": "REJECTED", "NOTIFY": "routed, no outcome yet"}
    assert data["steps"][0]["at"] == "2026-03-02T10:00:00+00:00"
    assert journey("nothing", audits=audits).steps == ()


def test_a_sink_s_dead_letter_is_on_its_destination_s_branch() -> None:
    for stage, branch in (
        ("dmp-sink", "DMP"),
        ("mss-sender", "MSSANTE"),
        ("notify-sink", "NOTIFY"),
    ):
        [step] = journey("ev-9", audits=[], letters=[letter("ev-9", 1, stage=stage)]).steps
        assert step.branch == branch
    [step] = journey("ev-9", audits=[], letters=[letter("ev-9", 1)]).steps
    assert step.branch == "document"
