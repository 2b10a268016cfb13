"""The document index with several writers and awkward records (SQLite; the PostgreSQL
half is tests/integration/test_index_postgres.py): positions never go back, a writer
without the keyring does not undo what one with it learnt, the first audit of an id is
kept whatever the batches, a status said twice is two steps as in ``relais trace``, an
ignored duplicate is ``duplicate``, dead letters keep whether their original was readable,
and a database that cannot be used is one IndexStoreError naming RELAIS_INDEX_URL."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ops.index import metrics
from ops.index.model import DestinationStats, LetterSearch, SenderStats
from ops.index.rows import Read, rows_of_all
from ops.index.store import IndexStore, IndexStoreError
from ops.trace.journey import journey
from relais.audit_records import delivery
from tests.unit.index_samples import T0, at, letter, qualified, received, status, step

E, U = "ev-x", "1.2.250.99"
A, S, D = "t.audit.v1", "t.deliveries.status.v1", "t.deadletter.v1"


def new_store(tmp_path: Path, name: str) -> IndexStore:
    found = IndexStore(f"sqlite:///{tmp_path / name}")
    found.create()
    return found


def test_positions_never_go_back(tmp_path: Path) -> None:
    store = new_store(tmp_path, "p")
    store.apply(rows_of_all([]), {(A, 0): 700})  # relais index run commits
    store.apply(rows_of_all([]), {(A, 0): 600, (A, 1): 5})  # a catch-up begun earlier commits
    assert store.positions() == {(A, 0): 700, (A, 1): 5}


def _identity_letter() -> tuple[object, object]:
    """The identity stage's dead letter as a reader with the keyring sees it (its sealed
    original names the event) and as one without it does."""
    opened = letter("dl-1", E, U, at(2), stage="identity")
    sealed = dataclasses.replace(opened, event_id=None, document_unique_id=None, facility=None,
                                 sector=None, record_type=None, problem="no keyring given")  # fmt: skip
    return opened, sealed


def test_a_writer_without_the_keyring_does_not_undo_what_the_keyring_told(
    tmp_path: Path,
) -> None:
    base = [
        Read("AuditEvent", received(E, U, sender="L", msh10="M", when=at(0)), b"pk", A, 0, 0),
        Read("AuditEvent", qualified(E, U, at(1)), b"pk", A, 0, 1),
    ]
    opened, sealed = _identity_letter()
    rebuilt = new_store(tmp_path, "rebuilt")
    rebuilt.apply(rows_of_all([*base, Read("DeadLetter", opened, None, D, 0, 0)]), {})  # type: ignore[arg-type]
    for order in ((sealed, opened), (opened, sealed)):
        store = new_store(tmp_path, f"{order[0] is sealed}")
        store.apply(rows_of_all(base), {(A, 0): 2})
        for view in order:
            store.apply(rows_of_all([Read("DeadLetter", view, None, D, 0, 0)]), {(D, 0): 1})  # type: ignore[arg-type]
        found = store.document(E)
        assert found is not None
        assert found.status == "dead-lettered"
        assert store.journey(E) == rebuilt.journey(E)
        [row] = store.letters(LetterSearch())
        assert (row.view.facility, row.view.event_id, row.readable) == ("LABO", E, True)


def _failed_twice() -> list[dict[str, object]]:
    """Two DELIVERY_FAILED audits of one request: the same derived audit id."""
    first = delivery(status(E, U, "DMP", "DELIVERY_FAILED", at(10)), component="dmp-sink")
    second = delivery(status(E, U, "DMP", "DELIVERY_FAILED", at(20)), component="dmp-sink")
    assert first["audit_id"] == second["audit_id"]
    return [received(E, U, sender="L", msh10="M", when=at(0)), first, second]


def test_the_first_audit_of_an_id_is_kept_whatever_the_batches(tmp_path: Path) -> None:
    audits = _failed_twice()
    reads = [Read("AuditEvent", r, b"pk", A, 0, i) for i, r in enumerate(audits)]
    one = new_store(tmp_path, "one")
    one.apply(rows_of_all(reads), {(A, 0): 3})
    each = new_store(tmp_path, "each")
    for read in reads:
        each.apply(rows_of_all([read]), {(A, 0): read.offset + 1})
    told = journey(E, audits=audits)
    assert one.journey(E) == each.journey(E) == told
    assert [s.at for s in told.steps] == [at(0), at(10)]


def test_a_status_said_twice_at_two_times_is_two_steps_as_trace_tells(tmp_path: Path) -> None:
    first = received(E, U, sender="L", msh10="M", when=at(0))
    again = [status(E, U, "DMP", "RETRYING", at(10)), status(E, U, "DMP", "RETRYING", at(50))]
    store = new_store(tmp_path, "s")
    reads = [Read("AuditEvent", first, b"pk", A, 0, 0)]
    reads += [Read("DeliveryStatus", x, b"pk", S, 0, i) for i, x in enumerate(again)]
    store.apply(rows_of_all(reads), {})
    store.apply(rows_of_all(reads), {})  # read twice: still one row each
    assert store.journey(E) == journey(E, audits=[first], statuses=again)
    assert [s.at for s in store.journey(E).steps] == [at(0), at(10), at(50)]


def test_an_ignored_duplicate_is_a_duplicate_and_counted_as_one(tmp_path: Path) -> None:
    store = new_store(tmp_path, "d")
    original = [
        received("ev-1", U, sender="L", msh10="M", when=at(0)),
        step("ev-1", U, "route", "ROUTED", "DMP", at(2)),
    ]
    duplicate = [
        received("ev-2", U, sender="L", msh10="M", when=at(5)),
        step("ev-2", U, "dedupe", "DUPLICATE_IGNORED", "duplicate-of:ev-1", at(6)),
    ]
    reads = [Read("AuditEvent", r, b"pk", A, 0, i) for i, r in enumerate(original + duplicate)]
    store.apply(rows_of_all(reads), {(A, 0): 4})
    later = store.document("ev-2")
    assert later is not None
    assert later.status == "duplicate"
    found = store.document(U)  # the newer event is the duplicate: the original is preferred
    assert found is not None
    assert (found.event_id, found.status) == ("ev-1", "in-progress")
    [sender] = store.senders(T0)
    assert (sender.received, sender.duplicates) == (2, 1)


def test_letters_until_is_inclusive_and_readable_is_kept(tmp_path: Path) -> None:
    store = new_store(tmp_path, "l")
    _, sealed = _identity_letter()
    store.apply(rows_of_all([Read("DeadLetter", sealed, None, D, 0, 0)]), {})  # type: ignore[arg-type]
    [row] = store.letters(LetterSearch(until=at(2)))
    assert row.readable is False
    assert store.letters(LetterSearch(since=at(2), until=at(2))) == [row]


def test_text_loses_its_nul_characters(tmp_path: Path) -> None:
    store = new_store(tmp_path, "n")
    door = letter("dl-nul", None, None, at(0), stage="door", facility="CLI\x00NIQUE")
    store.apply(rows_of_all([Read("DeadLetter", door, None, D, 0, 0)]), {})
    [row] = store.letters(LetterSearch())
    assert row.view.facility == "CLINIQUE"


def test_an_unusable_database_is_one_error_naming_the_setting(tmp_path: Path) -> None:
    store = IndexStore(f"sqlite:///{tmp_path / 'missing' / 'index.sqlite3'}")
    for ask in (store.create, store.state, store.positions, lambda: store.document(E)):
        with pytest.raises(IndexStoreError, match="RELAIS_INDEX_URL"):
            ask()


def _sender(name: str, received: int) -> SenderStats:
    return SenderStats(name, received, {}, 0, received, 0, None)


def test_gauges_are_replaced_without_a_gap_and_labels_are_sanitised() -> None:
    dmp = DestinationStats("DMP", 1, {}, 0, 0, None)
    metrics.publish_stats([_sender("LABO", 3), _sender("BAD\nNAME" + "X" * 100, 1)], [dmp])
    labels = {s.labels["facility"] for s in metrics.SENDER_DOCUMENTS.collect()[0].samples}
    assert labels == {"LABO", ("BAD?NAME" + "X" * 100)[: metrics.FACILITY_MAX]}
    metrics.publish_stats([_sender("LABO", 4)], [dmp])
    samples = metrics.SENDER_DOCUMENTS.collect()[0].samples
    assert {s.labels["facility"] for s in samples} == {"LABO"}
    assert metrics.SENDER_DOCUMENTS.labels("LABO", "received")._value.get() == 4
