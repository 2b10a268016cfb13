"""ops.dlq.replay: the replay plan, the memory of replays, and what came of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ops.dlq.letters import LetterView
from ops.dlq.replay import Sent, outcomes_of, plan, replay_audit, replays_of, settled
from relais.contracts import Codec, Record

CODEC = Codec()
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TOPICS = ["t.documents.submitted.v1", "t.deliveries.dmp.v1"]


def view(dl_id: str = "dl-1", **overrides: Any) -> LetterView:
    fields: dict[str, Any] = {
        "dead_letter_id": dl_id,
        "stage": "identity",
        "reason_code": "undecryptable-field",
        "reason": "key unknown",
        "occurred_at": NOW,
        "source_topic": "t.documents.submitted.v1",
        "source_partition": 3,
        "source_offset": 17,
        "original_size": 5,
        "original_sha256": "00",
        "event_id": "ev-1",
        "document_unique_id": "1.2.3.4",
        "key": b"pk",
        "original": b"bytes",
    } | overrides
    return LetterView(**fields)


def test_plan_sends_to_the_source_topic_and_partition() -> None:
    [p] = plan([view()], {}, topics=TOPICS)
    assert (p.topic, p.partition, p.skip) == ("t.documents.submitted.v1", 3, None)


def test_plan_refuses_what_came_from_no_topic_or_cannot_be_opened() -> None:
    mllp, sealed = plan(
        [
            view("a", source_topic="mllp", source_partition=None),
            view("b", original=None, problem="key 'k2' is not in the keyring"),
        ],
        {},
        topics=TOPICS,
    )
    assert mllp.topic is None
    assert mllp.skip is not None
    assert "ask the sender to send it again" in mllp.skip
    assert sealed.skip is not None
    assert "key 'k2' is not in the keyring" in sealed.skip


def audit_of(v: LetterView, sent: Sent, nth: int, by: str = "alice") -> Record:
    record = replay_audit(v, sent, by=by, nth=nth, now=NOW + timedelta(minutes=nth))
    return CODEC.decode(CODEC.encode("AuditEvent", record), expected="AuditEvent")[1]


def test_replays_are_remembered_through_the_audit_and_refused_twice_unless_again() -> None:
    v = view()
    sent = Sent("dl-1", "ev-1", "t.documents.submitted.v1", 3, 99)
    first, second = audit_of(v, sent, 1), audit_of(v, sent, 2, by="bob")
    assert first["action"] == "REPLAYED"
    assert first["component"] == "dlq"
    assert first["event_id"] == "ev-1"
    assert first["document_unique_id"] == "1.2.3.4"
    assert first["audit_id"] != second["audit_id"]  # each replay is its own event
    other = {**first, "component": "route", "action": "ROUTED"}
    replays = replays_of([second, other, first])
    assert [r.by for r in replays["dl-1"]] == ["alice", "bob"]  # oldest first
    assert replays["dl-1"][0].offset == 99
    assert replays["dl-1"][0].line() == (
        "2026-03-02 10:01:00Z by alice: to t.documents.submitted.v1 partition 3 offset 99"
    )

    [refused] = plan([v], replays, topics=TOPICS)
    assert refused.skip is not None
    assert refused.skip.startswith("already replayed 2 time(s), last 2026-03-02 10:02:00Z by bob")
    [again] = plan([v], replays, topics=TOPICS, again=True)
    assert again.skip is None


def test_a_letter_without_event_id_is_remembered_by_its_id() -> None:
    v = view(event_id=None)
    audit = audit_of(v, Sent("dl-1", None, "t.documents.submitted.v1", 3, 5), 1)
    assert audit["event_id"] == "dl-1"
    assert list(replays_of([audit])) == ["dl-1"]


def status(event_id: str, outcome: str, detail: str | None = None) -> Record:
    return {"event_id": event_id, "destination": "DMP", "outcome": outcome, "detail": detail}


def test_outcomes_say_what_became_of_each_replayed_record() -> None:
    sent = Sent("dl-1", "ev-1", "t.documents.submitted.v1", 3, 99)
    later: list[tuple[str, Record]] = [
        ("DeliveryStatus", status("ev-other", "DELIVERED")),
        ("DeliveryStatus", status("ev-1", "RETRYING")),
    ]
    assert [o.text for o in outcomes_of(sent, later)] == ["DMP retrying"]
    assert not settled([sent], later)
    later.append(("DeliveryStatus", status("ev-1", "DELIVERED")))
    assert settled([sent], later)
    assert not any(o.failed for o in outcomes_of(sent, later))
    done = status("ev-1", "DELIVERED", "already done (delivery ledger): not sent again")
    assert outcomes_of(sent, [("DeliveryStatus", done)])[0].text == (
        "DMP delivered (already done before: not sent again)"
    )
    held = {"event_id": "ev-1", "reason_code": "identity-not-qualified"}
    assert outcomes_of(sent, [("IdentityHeld", held)])[0].text == (
        "held by identity: identity-not-qualified"
    )
    duplicate = {"event_id": "ev-1", "action": "DUPLICATE_IGNORED", "outcome": "duplicate-of:e0"}
    assert outcomes_of(sent, [("AuditEvent", duplicate)])[0].text.startswith("ignored as a dup")


def test_dead_lettered_again_is_found_by_place_or_event() -> None:
    sent = Sent("dl-1", None, "t.documents.submitted.v1", 3, 99)
    here = {
        "event_id": None,
        "stage": "identity",
        "reason_code": "undecryptable-field",
        "source_topic": "t.documents.submitted.v1",
        "source_partition": 3,
        "source_offset": 99,
    }
    elsewhere = {**here, "source_offset": 98}
    assert outcomes_of(sent, [("DeadLetter", elsewhere)]) == []
    [again] = outcomes_of(sent, [("DeadLetter", here)])
    assert again.failed
    assert again.text == "dead-lettered again by identity: undecryptable-field"
    downstream = {
        **elsewhere,
        "event_id": "ev-1",
        "stage": "dmp-sink",
        "reason_code": "dmp-rejected",
    }
    with_event = Sent("dl-1", "ev-1", "t.documents.submitted.v1", 3, 99)
    assert outcomes_of(with_event, [("DeadLetter", downstream)])[0].failed
    rejected = outcomes_of(with_event, [("DeliveryStatus", status("ev-1", "REJECTED"))])
    assert rejected[0].failed
