"""The document index in SQLite: idempotent batches, searches, pages, journeys equal to
``relais trace``'s, dead letters and per-sender and per-destination numbers."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ops.dlq.letters import LetterView
from ops.index.model import LetterSearch, Search
from ops.index.rows import Read, rows_of_all
from ops.index.store import IndexStore
from ops.trace.journey import journey
from tests.unit.index_samples import T0, at, journeys, reads

NAMES = ("ok", "held", "refused", "dead", "replayed", "door")


def all_reads() -> list[Read]:
    found: list[Read] = []
    for i, name in enumerate(NAMES):
        found += reads(journeys()[name], key=f"pk-{name}-0123456789".encode(), start=i * 100)
    return found


def answers(store: IndexStore) -> dict[str, object]:
    """Everything the index says about the samples."""
    return {
        "search": store.search(Search()),
        "journeys": {n: store.journey(f"ev-{n}") for n in NAMES},
        "letters": store.letters(LetterSearch()),
        "senders": store.senders(T0 - timedelta(days=1)),
        "destinations": store.destinations(T0 - timedelta(days=1)),
    }


@pytest.fixture
def store(tmp_path: Path) -> IndexStore:
    found = IndexStore(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    found.create()
    found.apply(rows_of_all(all_reads()), {("t.audit.v1", 0): 600})
    return found


def test_applying_a_batch_again_changes_nothing(store: IndexStore) -> None:
    before, state = answers(store), store.state()
    store.apply(rows_of_all(all_reads()), {("t.audit.v1", 0): 600})
    assert answers(store) == before
    assert store.state() == state
    assert (state.documents, state.letters) == (5, 3)


def test_the_reading_order_and_batches_do_not_matter(store: IndexStore, tmp_path: Path) -> None:
    other = IndexStore(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    other.create()
    for read in reversed(all_reads()):  # one record a batch, newest first
        other.apply(rows_of_all([read]), {(read.topic, read.partition): read.offset + 1})
    assert answers(other) == answers(store)


def test_positions_are_written_with_the_rows(store: IndexStore) -> None:
    assert store.positions() == {("t.audit.v1", 0): 600}
    store.apply(rows_of_all([]), {("t.audit.v1", 0): 700, ("t.audit.v1", 1): 3})
    assert store.positions() == {("t.audit.v1", 0): 700, ("t.audit.v1", 1): 3}
    assert store.state().positions == {"t.audit.v1:0": 700, "t.audit.v1:1": 3}


def hits(store: IndexStore, **wanted: object) -> list[str]:
    return [d.event_id for d in store.search(Search(**wanted))]  # type: ignore[arg-type]


def test_each_filter_narrows_the_search(store: IndexStore) -> None:
    everything = ["ev-replayed", "ev-dead", "ev-refused", "ev-held", "ev-ok"]
    assert hits(store) == everything  # newest first
    assert hits(store, sender="CHU") == ["ev-refused"]
    assert hits(store, message_control_id="M3") == ["ev-dead"]
    assert hits(store, document="1.2.250.1") == ["ev-held"]
    assert hits(store, document="ev-held") == ["ev-held"]
    assert hits(store, patient_key="pk-ok-0123456789") == ["ev-ok"]
    assert hits(store, patient_key="pk-ok-01") == ["ev-ok"]  # a prefix of 8
    assert hits(store, patient_key="pk-ok-0") == []  # 7: exact only
    assert hits(store, type_code="11502-2") == everything
    assert hits(store, type_code="18748-4") == []
    assert hits(store, status="delivered") == ["ev-replayed", "ev-ok"]
    assert hits(store, status="held") == ["ev-held"]
    assert hits(store, destination="DMP") == ["ev-replayed", "ev-refused", "ev-ok"]
    assert hits(store, destination="MSSANTE") == []
    assert hits(store, since=at(120), until=at(240)) == ["ev-dead", "ev-refused"]
    assert hits(store, sender="LABO", status="delivered", since=at(1)) == ["ev-replayed"]


def test_pages_follow_each_other_without_gaps(store: IndexStore) -> None:
    seen: list[str] = []
    after: tuple[datetime, str] | None = None
    while True:
        page = store.search(Search(limit=2, after=after))
        if not page:
            break
        seen += [d.event_id for d in page]
        last = page[-1]
        assert last.received_at is not None
        after = (last.received_at, last.event_id)
    assert seen == hits(store)


def test_a_document_by_event_or_unique_id(store: IndexStore) -> None:
    found = store.document("1.2.250.2")
    assert found is not None
    assert found.event_id == "ev-refused"
    assert found.status == "refused"
    assert found.destinations == {"DMP": "REJECTED"}
    assert found.received_at == at(120)
    assert found.last_at == at(124)
    assert store.document("ev-refused") == found
    assert store.document("nothing") is None


def trace_journey(document: str) -> object:
    """What ``relais trace`` computes from the topics for the same records."""
    by_type: dict[str, list[object]] = {}
    for read in all_reads():
        by_type.setdefault(read.record_type, []).append(read.record)
    letters = [v for v in by_type.get("DeadLetter", []) if isinstance(v, LetterView)]
    return journey(
        document,
        audits=by_type.get("AuditEvent", []),  # type: ignore[arg-type]
        statuses=by_type.get("DeliveryStatus", []),  # type: ignore[arg-type]
        letters=letters,
        acks=by_type.get("BusinessAck", []),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("document", ["ev-ok", "1.2.250.0", "ev-replayed", "ev-dead", "ev-held",
                                      "1.2.250.2", "dl-door-0003", "unknown"])  # fmt: skip
def test_the_journey_is_the_one_trace_tells(store: IndexStore, document: str) -> None:
    assert store.journey(document) == trace_journey(document)


def test_a_status_the_audit_already_said_is_told_once(store: IndexStore) -> None:
    story = [(s.component, s.action) for s in store.journey("ev-ok").steps]
    assert story.count(("dmp-sink", "DELIVERED")) == 1
    assert ("dmp delivery", "DELIVERED") not in story


def test_dead_letters_and_their_replays(store: IndexStore) -> None:
    every = store.letters(LetterSearch())
    assert [r.view.dead_letter_id for r in every] == [
        "dl-door-0003",
        "dl-repl-0002",
        "dl-dead-0001",
    ]
    assert {r.view.dead_letter_id: r.replays for r in every}["dl-repl-0002"] == 1
    unreplayed = store.letters(LetterSearch(unreplayed=True))
    assert [r.view.dead_letter_id for r in unreplayed] == ["dl-door-0003", "dl-dead-0001"]
    assert [r.view.dead_letter_id for r in store.letters(LetterSearch(stage="trans"))] == [
        "dl-repl-0002",
        "dl-dead-0001",
    ]
    assert len(store.letters(LetterSearch(reason_code="hl7-unparsable"))) == 1
    assert len(store.letters(LetterSearch(sender="CLINIQUE"))) == 1
    assert len(store.letters(LetterSearch(document="1.2.250.3"))) == 1
    assert len(store.letters(LetterSearch(since=at(250)))) == 1
    assert len(store.letters(LetterSearch(limit=1))) == 1
    one = store.letter("dl-dead-")
    assert one is not None
    assert one.view.event_id == "ev-dead"
    assert one.view.original is None
    assert store.letter("dl-") is None  # too short for a prefix
    assert store.letter("dl-dead-0001") == one


def test_what_each_sender_sent(store: IndexStore) -> None:
    found = {s.sender: s for s in store.senders(T0 - timedelta(hours=1))}
    assert set(found) == {"LABO", "CHU", "CLINIQUE"}
    labo = found["LABO"]
    assert (labo.received, labo.held, labo.delivered, labo.dead_lettered) == (4, 1, 2, 1)
    assert labo.refused == {"cda-not-well-formed": 1}
    assert labo.last_seen == at(240)
    assert found["CHU"].refused == {"DMPERR-42": 1}
    door = found["CLINIQUE"]
    assert (door.received, door.refused, door.last_seen) == (0, {"hl7-unparsable": 1}, at(300))
    assert [s.sender for s in store.senders(at(200))] == ["CLINIQUE", "LABO"]
    assert store.senders(at(0), at(60))[0].received == 1


def test_what_each_destination_did(store: IndexStore) -> None:
    [dmp] = store.destinations(T0 - timedelta(hours=1))
    assert dmp.destination == "DMP"
    assert (dmp.delivered, dmp.refused, dmp.waiting, dmp.dead_lettered) == (
        2,
        {"DMPERR-42": 1},
        0,
        0,
    )
    assert dmp.last_seen == at(253)
    assert store.destinations(at(1000)) == []


def test_drop_and_create_empty_the_index(store: IndexStore) -> None:
    store.drop()
    store.create()
    assert store.search(Search()) == []
    assert store.positions() == {}
    assert store.journey("ev-ok").steps == ()
