"""The rows the document index keeps of each record, and a document's status whatever the
order its steps were read in."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from ops.dlq.letters import LetterView
from ops.index.model import STATUSES
from ops.index.rows import Read, Rows, refusal_of, rows_of, rows_of_all, status_of
from ops.trace.journey import Step
from tests.unit.index_samples import at, journeys, letter, qualified, reads, status

EXPECTED = {
    "ok": "delivered",
    "held": "held",
    "refused": "refused",
    "dead": "dead-lettered",
    "replayed": "delivered",
}


def steps_of(name: str) -> list[Step]:
    return [r.step for r in rows_of_all(reads(journeys()[name])).steps]


def test_a_received_audit_says_who_sent_what_and_the_patient_key() -> None:
    [first] = reads(journeys()["ok"][:1], key=b"pk-ab12cd34ef")
    found = rows_of(first)
    [facts] = found.documents
    assert (facts.event_id, facts.unique_id) == ("ev-ok", "1.2.250.0")
    assert (facts.sender, facts.application, facts.message_control_id) == ("LABO", "LAB", "M0")
    assert (facts.type_code, facts.patient_key) == ("11502-2", "pk-ab12cd34ef")
    assert facts.received_at == at(0)
    [row] = found.steps
    assert row.step_id == first.record["audit_id"]  # type: ignore[index]
    assert (row.step.action, row.step.source, row.offset) == ("RECEIVED", "audit", 0)


def test_step_ids_are_derived_so_a_record_read_twice_is_one_row() -> None:
    once = rows_of_all(reads(journeys()["ok"]))
    twice = rows_of_all(reads(journeys()["ok"]))
    assert [r.step_id for r in once.steps] == [r.step_id for r in twice.steps]
    ids = {r.step_id for r in once.steps}
    assert len(ids) == len(once.steps)
    assert f"status:req-ev-ok-DMP:1:DELIVERED:{int(at(4).timestamp() * 1000)}" in ids
    assert "ack:ack-ev-ok" in ids


def test_a_dead_letter_keeps_its_place_on_the_topic_and_no_original() -> None:
    view = replace(letter("dl-1", "ev-9", "1.2.9", at(5)), original=b"sealed", key=b"pk")
    found = rows_of(Read("DeadLetter", view, b"pk", "t.deadletter.v1", 4, 88))
    [kept] = found.letters
    assert (kept.partition, kept.offset) == (4, 88)
    assert kept.view.original is None
    assert kept.view.key is None
    [row] = found.steps
    assert (row.step_id, row.event_id, row.unique_id) == ("letter:dl-1", "ev-9", "1.2.9")
    assert row.step.action == "DEAD_LETTERED"
    assert found.documents[0].event_id == "ev-9"


def test_a_door_refusal_names_no_document() -> None:
    [door] = reads(journeys()["door"])
    found = rows_of(door)
    assert found.documents == []
    assert found.steps[0].event_id is None
    assert found.letters[0].view.facility == "CLINIQUE"


def test_a_replay_names_the_dead_letter_it_sent_back() -> None:
    found = rows_of_all(reads(journeys()["replayed"]))
    [link] = found.replays
    assert link.dead_letter_id == "dl-repl-0002"
    assert link.step_id in {r.step_id for r in found.steps if r.step.action == "REPLAYED"}


def test_records_the_index_does_not_read_give_no_rows() -> None:
    found = rows_of(Read("IdentityUpdate", {"event_id": "x"}, None, "t.x", 0, 0))
    assert len(found) == 0
    assert isinstance(found, Rows)


def test_each_sample_has_its_status() -> None:
    for name, expected in EXPECTED.items():
        assert status_of(steps_of(name)) == expected, name
    assert status_of([]) == "received"


def test_statuses_along_the_way() -> None:
    received = steps_of("ok")[:1]
    assert status_of(received) == "received"
    routed = steps_of("ok")[:4]
    assert status_of(routed) == "in-progress"
    retrying = [Step(at(9), "DMP", "dmp delivery", "RETRYING", "DMP:RETRYING", "ev-ok", "status")]
    assert status_of([*routed, *retrying]) == "in-progress"
    nowhere = [*received, Step(at(3), "document", "route", "ROUTED", "no-destination",
                               "ev-ok", "audit")]  # fmt: skip
    assert status_of(nowhere) == "delivered"


def test_held_until_qualified_and_blocked() -> None:
    held = rows_of_all(reads([("AuditEvent", qualified("e", "u", at(1), held=True))])).steps
    assert status_of([r.step for r in held]) == "held"
    later = rows_of_all(reads([("AuditEvent", qualified("e", "u", at(9)))])).steps
    assert status_of([r.step for r in [*held, *later]]) == "received"
    blocked = Step(at(2), "document", "identity", "IDENTITY_DECIDED", "blocked:ins-conflict",
                   "e", "audit")  # fmt: skip
    assert status_of([blocked]) == "blocked"


def test_a_dead_letter_on_a_branch_then_a_delivery_there_is_delivered() -> None:
    routed = steps_of("ok")[:4]
    dead = Step(at(5), "DMP", "dmp-sink", "DEAD_LETTERED", "dmp-timeout", "ev-ok", "dead-letter")
    assert status_of([*routed, dead]) == "dead-lettered"
    assert refusal_of([*routed, dead]) == "dmp-timeout"
    later = rows_of_all(
        reads([("DeliveryStatus", status("ev-ok", "u", "DMP", "DELIVERED", at(9)))])
    )
    assert status_of([*routed, dead, *(r.step for r in later.steps)]) == "delivered"


def test_a_refusal_says_the_destination_answer_code() -> None:
    assert refusal_of(steps_of("refused")) == "DMPERR-42"
    assert refusal_of(steps_of("ok")) is None


def test_a_sender_told_after_a_dead_letter_does_not_undo_it() -> None:
    told = Step(at(300), "document", "outcomes", "ACKNOWLEDGED", "sender-told:cda", "ev-dead",
                "audit")  # fmt: skip
    assert status_of([*steps_of("dead"), told]) == "dead-lettered"


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(EXPECTED)), data=st.data())
def test_the_status_does_not_depend_on_the_reading_order(name: str, data: st.DataObject) -> None:
    steps = steps_of(name)
    shuffled = data.draw(st.permutations(steps))
    again = data.draw(st.lists(st.sampled_from(steps), max_size=3))  # some read twice
    found = status_of([*shuffled, *again])
    assert found == EXPECTED[name]
    assert found in STATUSES
    assert refusal_of(shuffled) == refusal_of(steps)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_prefix_of_a_journey_has_one_of_the_statuses(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(EXPECTED)))
    steps = steps_of(name)
    cut = data.draw(st.integers(0, len(steps)))
    part = steps[:cut]
    assert status_of(part) in STATUSES
    assert status_of(data.draw(st.permutations(part))) == status_of(part)


def test_letters_as_views_are_steps() -> None:
    view: LetterView = letter("dl-x", None, None, at(1), stage="door")
    assert rows_of(Read("DeadLetter", view, None, "t", 0, 0)).steps[0].step.event_id == "dl-x"


def test_per_sender_gauges_have_a_bounded_number_of_facilities() -> None:
    from ops.index import metrics  # noqa: PLC0415
    from ops.index.model import DestinationStats, SenderStats  # noqa: PLC0415

    many = [
        SenderStats(
            f"FAC{i:04d}",
            received=1000 - i,
            refused={"hl7-invalid": 1},
            held=0,
            delivered=1000 - i,
            dead_lettered=0,
            last_seen=at(i),
        )
        for i in range(metrics.MAX_FACILITIES + 3)
    ]
    dmp = DestinationStats("DMP", delivered=5, refused={"REJECTED": 2}, waiting=1,
                           dead_lettered=0, last_seen=at(9))  # fmt: skip
    metrics.publish_stats(many, [dmp])
    received = {
        s.labels["facility"]: s.value
        for s in next(iter(metrics.SENDER_DOCUMENTS.collect())).samples
        if s.labels["status"] == "received"
    }
    assert len(received) == metrics.MAX_FACILITIES + 1
    assert received["FAC0000"] == 1000
    assert received[metrics.OTHER] == sum(
        1000 - i for i in range(metrics.MAX_FACILITIES, len(many))
    )
    refusals = metrics.SENDER_REFUSALS.labels(metrics.OTHER, "hl7-invalid")
    assert refusals._value.get() == 3
    assert metrics.DESTINATION_DOCUMENTS.labels("DMP", "refused")._value.get() == 2
    metrics.publish_stats(many[:1], [])  # facilities gone from the window are gone
    assert len(next(iter(metrics.SENDER_LAST_SEEN.collect())).samples) == 1
