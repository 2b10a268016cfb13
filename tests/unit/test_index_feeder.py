"""The feeder writes a batch again while the database fails, without decoding it again:
an undecodable record and a record the database refuses are each counted once."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import event, text

from ops.index.feeder import Feeder, _Batch
from ops.index.store import IndexStore
from relais.contracts import Codec
from relais.settings import Settings
from tests.unit.index_samples import at, received, step

A = "t.audit.v1"
E, U = "ev-retry", "1.2.250.10"
#: a refusal the database makes for one record only
POISON = (
    "CREATE TRIGGER poison BEFORE INSERT ON steps WHEN NEW.outcome = 'poison' "
    "BEGIN SELECT RAISE(ABORT, 'poison'); END"
)
#: an outage when the position reaches the last record (the refused one is behind it):
#: writing there fails (the SQL function ``outage`` raises) while the database is "down"
GATES = [
    f"CREATE TRIGGER gate_{on} BEFORE {on} ON positions WHEN NEW.next_offset = 4 "
    "BEGIN SELECT outage(); END"
    for on in ("INSERT", "UPDATE")
]


def outages(store: IndexStore) -> threading.Event:
    """An event that, while set, makes ``outage()`` fail (sqlite3: an OperationalError)."""
    down = threading.Event()

    def outage() -> int:
        if down.is_set():
            raise RuntimeError("the database is down")
        return 0

    def connected(connection: Any, _record: Any) -> None:
        connection.create_function("outage", 0, outage)

    event.listen(store.engine, "connect", connected)
    return down


def record(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(A, 0, offset, 0, 0, b"pk", value, None, 2, len(value), ())


async def write_through_an_outage(feeder: Feeder, batch: _Batch, down: threading.Event) -> None:
    """Write ``batch`` while the database fails for its first pass, mended a moment later."""
    writing = asyncio.create_task(feeder._write(batch))
    await asyncio.sleep(0.3)
    assert not writing.done()  # waiting for the database
    down.clear()
    await asyncio.wait_for(writing, 10)


def test_a_retried_batch_is_decoded_once_and_its_refusals_counted_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = IndexStore(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    down = outages(store)
    store.create()
    with store.engine.begin() as conn:
        conn.execute(text(POISON))
        for gate in GATES:
            conn.execute(text(gate))
    down.set()
    codec = Codec()
    audits = [
        received(E, U, sender="L", msh10="M", when=at(0)),
        step(E, U, "route", "ROUTED", "poison", at(1)),
        step(E, U, "route", "ROUTED", "kept", at(2)),
    ]
    values = [b"not an Avro record", *(codec.encode("AuditEvent", a) for a in audits)]
    tp = TopicPartition(A, 0)
    batch = _Batch([(tp, record(i, v)) for i, v in enumerate(values)], {(A, 0): 4})
    feeder = Feeder(Settings.from_env({}), store, None, codec=codec)
    feeder.following = True
    with caplog.at_level(logging.WARNING, logger="ops.index.feeder"):
        asyncio.run(write_through_an_outage(feeder, batch, down))
    assert (feeder.undecodable, feeder.refused, feeder.read) == (1, 1, 4)
    assert caplog.text.count("undecodable record") == 1
    assert caplog.text.count("refused the record") == 1
    # refused on the first pass, which the outage then broke off: the second pass met it again
    assert caplog.text.index("refused the record") < caplog.text.index("is unavailable")
    assert store.positions() == {(A, 0): 4}
    assert [s.outcome for s in store.journey(E).steps][1:] == ["kept"]
