"""The document index's writers on a real PostgreSQL server: ``relais index run`` and a
command catching the index up write at the same time without losing a document's state or
deadlocking; values of any length are stored; a record the database refuses is skipped,
not retried forever; a server that does not answer is one IndexStoreError."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from ops.index import queries
from ops.index import store as store_module
from ops.index.feeder import Feeder, _Batch
from ops.index.rows import Read, rows_of_all
from ops.index.store import IndexStore, IndexStoreError
from relais.contracts import Codec
from relais.settings import Settings
from tests.integration.postgres import create_database
from tests.unit.index_samples import ack, at, letter, qualified, received, status, step

E, U = "ev-x", "1.2.250.99"
A, S, K, D = "t.audit.v1", "t.deliveries.status.v1", "t.acks.business.v1", "t.deadletter.v1"


@pytest.fixture
def paused_reads() -> Iterator[tuple[threading.Event, threading.Event]]:
    """A writer named ``cli`` pauses after reading a document's steps until the second
    event is set (3 s at most): another writer may commit in between, if it can."""
    selected, other_done = threading.Event(), threading.Event()
    real = queries.steps_of_events

    def paused(conn: Any, ids: Any) -> dict[str, list[Any]]:
        found = real(conn, ids)
        if threading.current_thread().name == "cli":
            selected.set()
            other_done.wait(3)
        return found

    queries.steps_of_events = paused  # type: ignore[assignment]
    try:
        yield selected, other_done
    finally:
        queries.steps_of_events = real  # type: ignore[assignment]


def test_two_writers_do_not_lose_a_document_state(
    index_store: IndexStore, paused_reads: tuple[threading.Event, threading.Event]
) -> None:
    store, (selected, runner_done) = index_store, paused_reads
    base = [
        Read("AuditEvent", received(E, U, sender="LABO", msh10="M9", when=at(0)), b"pk", A, 0, 0),
        Read("AuditEvent", qualified(E, U, at(1)), b"pk", A, 0, 1),
        Read("AuditEvent", step(E, U, "route", "ROUTED", "DMP", at(3)), b"pk", A, 0, 2),
    ]
    store.apply(rows_of_all(base), {(A, 0): 3})
    cli = rows_of_all([Read("BusinessAck", ack(E, at(5)), b"pk", K, 0, 0)])
    runner = rows_of_all([Read("DeliveryStatus", status(E, U, "DMP", "DELIVERED", at(4)),
                               b"pk", S, 0, 0)])  # fmt: skip

    def run_runner() -> None:
        selected.wait(3)  # the catch-up read E's steps (or waits for the lock)...
        store.apply(runner, {(S, 0): 1})
        runner_done.set()

    threads = [
        threading.Thread(target=store.apply, args=(cli, {(K, 0): 1}), name="cli"),
        threading.Thread(target=run_runner, name="runner"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = store.document(E)
    assert found is not None
    assert (found.status, found.destinations) == ("delivered", {"DMP": "DELIVERED"})


def test_two_writers_of_the_same_rows_in_other_orders_do_not_deadlock(
    index_store: IndexStore,
) -> None:
    errors: list[str] = []
    for round_ in range(3):
        records = [
            received(f"ev-{round_}-{i}", f"1.2.{round_}.{i}", sender="L", msh10="M", when=at(i))
            for i in range(1500)
        ]
        reads = [Read("AuditEvent", r, b"pk", A, 0, i) for i, r in enumerate(records)]

        def write(batch: list[Read]) -> None:
            try:
                index_store.apply(rows_of_all(batch), {(A, 0): 1500})
            except OperationalError as exc:
                errors.append(type(exc.orig).__name__)

        threads = [threading.Thread(target=write, args=(r,)) for r in (reads, reads[::-1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert index_store.state().documents == 4500


def test_values_of_any_length_and_nul_characters_are_stored(index_store: IndexStore) -> None:
    recipients = ["DMP", "MSSANTE:patient", *(f"MSSANTE:ps-{i:012x}" for i in range(8)), "NOTIFY"]
    routed = ",".join(recipients)
    assert len(routed) > 200
    reads = [
        Read("AuditEvent", received(E, U, sender="L\x00X", msh10="M", when=at(0)), b"pk", A, 0, 0),
        Read("AuditEvent", step(E, U, "route", "ROUTED", routed, at(1)), b"pk", A, 0, 1),
        Read("DeadLetter", letter("dl-1", None, None, at(2), stage="door", facility="X" * 250),
             None, D, 0, 0),
    ]  # fmt: skip
    index_store.apply(rows_of_all(reads), {(A, 0): 2, (D, 0): 1})
    found = index_store.document(E)
    assert found is not None
    assert found.sender == "LX"
    assert index_store.journey(E).steps[-1].outcome == routed
    assert [s.sender for s in index_store.senders(at(-1))] == ["LX", "X" * 250]


def _record(codec: Codec, offset: int, audit: dict[str, Any]) -> ConsumerRecord[bytes, bytes]:
    value = codec.encode("AuditEvent", audit)
    return ConsumerRecord(A, 0, offset, 0, 0, b"pk", value, None, 2, len(value), ())


def test_a_record_the_database_refuses_is_skipped_and_the_rest_written(
    index_store: IndexStore,
) -> None:
    with index_store.engine.begin() as conn:  # a refusal the database makes for this record only
        conn.execute(text("ALTER TABLE steps ADD CONSTRAINT poison CHECK (outcome <> 'poison')"))
    codec = Codec()
    audits = [
        received(E, U, sender="L", msh10="M", when=at(0)),
        step(E, U, "route", "ROUTED", "poison", at(1)),
        qualified(E, U, at(2)),
    ]
    feeder = Feeder(Settings.from_env({}), index_store, None, codec=codec)
    tp = TopicPartition(A, 0)
    batch = _Batch([(tp, _record(codec, i, a)) for i, a in enumerate(audits)], {(A, 0): 3})
    asyncio.run(feeder._write(batch))
    assert feeder.refused == 1
    assert index_store.positions() == {(A, 0): 3}
    assert [s.action for s in index_store.journey(E).steps] == ["RECEIVED", "IDENTITY_DECIDED"]


def test_a_server_that_does_not_answer_is_one_error_naming_the_setting() -> None:
    store = IndexStore("postgresql://postgres@127.0.0.1:9/none")  # nothing listens on port 9
    with pytest.raises(IndexStoreError, match="RELAIS_INDEX_URL"):
        store.state()


def test_a_rebuild_is_refused_while_the_runner_holds_the_index(postgres_server: str) -> None:
    url = create_database(postgres_server)
    runner, rebuild = IndexStore(url), IndexStore(url)
    try:
        assert runner.claim()
        assert not rebuild.claim()
        runner.close()
        assert rebuild.claim()
    finally:
        runner.close()
        rebuild.close()


def test_large_tables_are_counted_by_estimate(
    index_store: IndexStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = [
        Read("AuditEvent", received(f"ev-{i}", f"1.2.{i}", sender="L", msh10="M", when=at(i)),
             b"pk", A, 0, i)
        for i in range(5)
    ]  # fmt: skip
    index_store.apply(rows_of_all(reads), {(A, 0): 5})
    assert not index_store.state().approximate
    with index_store.engine.begin() as conn:
        conn.execute(text("ANALYZE documents, steps, letters"))
    monkeypatch.setattr(store_module, "EXACT_COUNT_MAX", 1)  # "large": more than one row
    state = index_store.state()
    assert state.approximate
    assert (state.documents, state.steps, state.letters) == (5, 5, 0)
