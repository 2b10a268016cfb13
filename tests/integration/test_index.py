"""The document index on a real PostgreSQL server fed from the real pipeline: documents are
found by MSH-10, sender, patient key and status, their journeys are the ones `relais trace`
reads from the topics, and a rebuild from the topics gives the very same answers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from ops.demo.samples import LAB, SARAH_LOU, sample
from ops.index.feeder import INDEX_TOPICS, Feeder
from ops.index.model import LetterSearch, Search
from ops.index.store import IndexStore
from ops.localstack import LocalStack, read_landing
from ops.trace.shell import read_journey
from producers.hl7.message import parse_message
from producers.publisher import Publisher
from relais import kafka_clients
from relais.contracts import Codec
from relais.deadletter import Failure
from relais.settings import Settings
from relais.topic_admin import ensure_topics
from relais.topics import AUDIT
from tests.integration.test_trace import ASK_Z01, broken
from tests.unit.index_samples import at, received

REFUSED_AT_DOOR = b"MSH|^~\\&|SGL|CLINIQUE-IDX|RELAIS|X|20260302||ORU^R01|M-IDX|P|2.5\rPID|||x"


def settings_for(stack: LocalStack, store: IndexStore) -> Settings:
    s = stack.settings
    return dataclasses.replace(s, index=dataclasses.replace(s.index, url=store.url, batch=50))


async def send_documents(stack: LocalStack) -> tuple[str, str]:
    """A delivered document (with its DMP acknowledgement), one dead-lettered by transcode,
    and a message refused at the door; returns the two event ids once they landed."""
    s = stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        [good] = await publisher.submit_lab_result(sample(LAB, SARAH_LOU, 91) + ASK_Z01)
        [bad] = await publisher.publish_message(parse_message(broken(92)), sector="LAB")
        await publisher.dead_letter(
            REFUSED_AT_DOOR, stage="mllp", failure=Failure("hl7-invalid", "PID-3 is missing")
        )
    await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        until=lambda got: good in got.delivered and any(d["event_id"] == bad for d in got.dead),
        timeout_s=90,
    )
    return good, bad


async def settle(feeder: Feeder) -> None:
    """Read until the topics stay still for a second (acks and statuses trail deliveries)."""
    quiet = 0
    while quiet < 2:
        quiet = quiet + 1 if await feeder.catch_up() == 0 else 0
        await asyncio.sleep(0.5)


async def answers(store: IndexStore, documents: list[str], since: datetime) -> dict[str, object]:
    found = {d: store.document(d) for d in documents}
    rows = [r for r in found.values() if r is not None]
    searches = [Search(document=d) for d in documents]
    searches += [Search(message_control_id=r.message_control_id) for r in rows]
    searches += [Search(sender=r.sender, since=since) for r in rows]
    searches += [Search(patient_key=(r.patient_key or "")[:8], since=since) for r in rows]
    searches += [Search(status=r.status, since=since) for r in rows]
    return {
        "documents": found,
        "searches": [store.search(q) for q in searches],
        "journeys": {d: store.journey(d) for d in documents},
        "letters": store.letters(LetterSearch(since=since)),
        "senders": store.senders(since),
        "destinations": store.destinations(since),
    }


async def test_index_finds_documents_and_a_rebuild_gives_the_same_answers(
    stack: LocalStack, index_store: IndexStore
) -> None:
    began = datetime.now(UTC) - timedelta(minutes=1)
    good, bad = await send_documents(stack)
    settings = settings_for(stack, index_store)
    feeder = Feeder(settings, index_store, stack.keyring)

    stop = asyncio.Event()
    running = asyncio.create_task(feeder.run(stop))  # the long-running feeder catches up
    try:
        deadline = time.monotonic() + 30
        while (row := index_store.document(good)) is None or not row.destinations.get("DMP"):
            assert time.monotonic() < deadline, f"not indexed as delivered to the DMP: {row}"
            await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    await settle(feeder)

    row = index_store.document(good)
    assert row is not None
    assert row.sender
    assert row.message_control_id
    assert row.patient_key
    # delivered to the DMP; the patient's notification waits (no notify sink in this stack)
    assert row.destinations == {"DMP": "DELIVERED", "NOTIFY": "routed, no outcome yet"}
    assert row.status == "in-progress"
    assert SARAH_LOU.ins not in row.patient_key
    assert good in [
        d.event_id for d in index_store.search(Search(message_control_id=row.message_control_id))
    ]
    assert good in [d.event_id for d in index_store.search(Search(sender=row.sender, since=began))]
    assert good in [d.event_id for d in index_store.search(Search(patient_key=row.patient_key[:8]))]
    assert good in [
        d.event_id for d in index_store.search(Search(status="in-progress", since=began))
    ]
    dead = index_store.document(bad)
    assert dead is not None
    assert dead.status == "dead-lettered"
    assert bad in [d.event_id for d in index_store.search(Search(status="dead-lettered"))]
    [letter] = index_store.letters(LetterSearch(document=bad))
    assert letter.view.reason_code == "cda-not-well-formed"
    assert index_store.senders(began)  # the door's refusal is counted for its facility
    door = {s.sender: s for s in index_store.senders(began)}["CLINIQUE-IDX"]
    assert door.refused == {"hl7-invalid": 1}

    s = stack.settings
    for document in (good, bad, row.unique_id or good):
        from_topics = await read_journey(
            s.kafka.connection, s.kafka.prefix, document, keyring=stack.keyring
        )
        assert index_store.journey(document) == from_topics, document
    assert [st.action for st in index_store.journey(good).steps][:4] == [
        "RECEIVED", "IDENTITY_DECIDED", "TRANSCODED", "ROUTED",
    ]  # fmt: skip

    before = await answers(index_store, [good, bad, row.unique_id or good], began)
    state = index_store.state()
    # the rebuild: drop everything, read the topics again from their start
    index_store.drop()
    index_store.create()
    assert index_store.document(good) is None
    read = await Feeder(settings, index_store, stack.keyring).catch_up()
    assert read >= state.steps  # every record again (some records are no step)
    assert await answers(index_store, [good, bad, row.unique_id or good], began) == before
    rebuilt = index_store.state()
    assert (rebuilt.documents, rebuilt.steps, rebuilt.letters) == (
        state.documents,
        state.steps,
        state.letters,
    )
    assert rebuilt.positions == state.positions


async def relais_index(
    stack: LocalStack, store: IndexStore, prefix: str, *args: str
) -> tuple[int, str, str]:
    environment = {
        **stack.environment(0),
        "RELAIS_INDEX_URL": store.url,
        "RELAIS_TOPIC_PREFIX": prefix,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops", "index", *args,
        env=environment, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_rebuild_command_skips_what_does_not_decode(
    stack: LocalStack, index_store: IndexStore
) -> None:
    # topics of their own: the other tests of the stack never meet the undecodable record
    bus, prefix = stack.settings.kafka.connection, f"i{uuid.uuid4().hex[:8]}"
    await ensure_topics(bus, prefix, INDEX_TOPICS, partitions=2)
    audit = AUDIT.name(prefix)
    record = received("ev-cli-1", "1.2.250.77", sender="LABO-CLI", msh10="M-CLI", when=at(0))
    producer = kafka_clients.producer(bus)
    await producer.start()
    try:
        await producer.send_and_wait(audit, b"not an Avro record", partition=0)
        await producer.send_and_wait(audit, Codec().encode("AuditEvent", record), key=b"pk-cli")
    finally:
        await producer.stop()

    code, out, err = await relais_index(stack, index_store, prefix, "rebuild", "--yes")
    assert code == 0, err
    assert "2 records read (1 undecodable skipped)" in out
    assert "not an Avro record" not in err  # content is never logged
    assert f"{audit} partition 0 offset 0" in err
    [found] = index_store.search(Search(sender="LABO-CLI"))
    assert (found.event_id, found.patient_key, found.status) == ("ev-cli-1", "pk-cli", "received")

    code, out, err = await relais_index(stack, index_store, prefix, "status", "--json")
    assert code == 0, err
    state = json.loads(out)
    assert (state["documents"], state["steps"], state["lag_total"]) == (1, 1, 0)
    assert state["positions"][f"{audit}:0"] == index_store.positions()[(audit, 0)] >= 1

    code, _, err = await relais_index(stack, index_store, prefix, "rebuild")  # asks: no answer
    assert code != 0
    assert index_store.state().documents == 1  # nothing was dropped
