"""The operator's commands that read the document index (``relais dlq list``): with the
keyring they bring it up to date first and say whether each original could be opened;
without the keyring they leave the dead letters to the index process (a writer without it
would index them without what their sealed originals say); with the broker down they
answer from it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import sys
import uuid

from ops.index.feeder import INDEX_TOPICS, lag_of
from ops.index.offsets import extents_of
from ops.index.rows import Rows
from ops.index.store import IndexStore
from ops.localstack import LocalStack
from producers.publisher import Publisher
from relais import kafka_clients
from relais.deadletter import Failure
from relais.topic_admin import ensure_topics
from relais.topics import AUDIT

REFUSED = b"MSH|^~\\&|SGL|CLINIQUE-CLI|RELAIS|X|20260302||ORU^R01|M-CLI|P|2.5\rPID|||x"


async def relais(environment: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops", *args,
        env=environment, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_dlq_list_catches_up_only_with_the_keyring_and_answers_without_the_broker(
    stack: LocalStack, index_store: IndexStore
) -> None:
    s, prefix = stack.settings, f"c{uuid.uuid4().hex[:8]}"
    await ensure_topics(s.kafka.connection, prefix, INDEX_TOPICS, partitions=1)
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=prefix
    ) as publisher:
        await publisher.dead_letter(
            REFUSED, stage="mllp", failure=Failure("hl7-invalid", "PID-3 is missing")
        )
    with_keyring = {
        **stack.environment(0),
        "RELAIS_INDEX_URL": index_store.url,
        "RELAIS_TOPIC_PREFIX": prefix,
    }
    without = {k: v for k, v in with_keyring.items() if k != "RELAIS_KEYRING_FILE"}

    code, out, err = await relais(without, "dlq", "list", "--json")
    assert code == 0, err
    assert "dead letters are left to `relais index run`" in err
    assert json.loads(out) == []
    # without the keyring, nothing was read from the dead-letter topic
    assert not [tp for tp in index_store.positions() if tp[0].endswith(".deadletter.v1")]

    code, out, err = await relais(with_keyring, "dlq", "list", "--json", "--since", "1h")
    assert code == 0, err
    assert "catching the document index up: 1 records" in err
    [found] = json.loads(out)
    assert (found["facility"], found["original_readable"]) == ("CLINIQUE-CLI", True)

    down = {**with_keyring, "RELAIS_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}"}
    code, out, err = await relais(down, "dlq", "list", "--json")
    assert code == 0, err
    assert "cannot reach the broker (RELAIS_BOOTSTRAP_SERVERS)" in err
    assert [f["dead_letter_id"] for f in json.loads(out)] == [found["dead_letter_id"]]


async def test_a_rebuild_with_no_indexed_topic_under_the_prefix_drops_nothing(
    stack: LocalStack, index_store: IndexStore
) -> None:
    audit = AUDIT.name(stack.settings.kafka.prefix)
    index_store.apply(Rows(), {(audit, 0): 5})
    environment = {
        **stack.environment(0),
        "RELAIS_INDEX_URL": index_store.url,
        "RELAIS_TOPIC_PREFIX": f"none{uuid.uuid4().hex[:8]}",  # no topic there
    }
    code, _, err = await relais(environment, "index", "rebuild", "--yes")
    assert code == 1, err
    assert "RELAIS_TOPIC_PREFIX" in err
    assert "not dropped" in err
    assert index_store.positions() == {(audit, 0): 5}


async def test_the_broker_s_log_start_and_end_offsets_measure_what_is_left_to_read(
    stack: LocalStack,
) -> None:
    prefix = f"o{uuid.uuid4().hex[:8]}"
    s = dataclasses.replace(
        stack.settings, kafka=dataclasses.replace(stack.settings.kafka, prefix=prefix)
    )
    await ensure_topics(s.kafka.connection, prefix, INDEX_TOPICS, partitions=1)
    audit = AUDIT.name(prefix)
    producer = kafka_clients.producer(s.kafka.connection)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(audit, b"x%d" % i, partition=0)
    finally:
        await producer.stop()
    found = await extents_of(s)
    assert len(found.ends) == len(INDEX_TOPICS)
    assert (found.starts[(audit, 0)], found.ends[(audit, 0)]) == (0, 3)
    assert found.behind({(audit, 0): 1})[(audit, 0)] == 2
    assert await lag_of(s, {}) == {f"{t}:{p}": 3 if t == audit else 0 for t, p in found.ends}
