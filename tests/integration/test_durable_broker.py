"""The broker on its durable store (tansu on s3:// over moto) keeps offsets across a restart.

`relais load --chaos` restarts the broker half-way through a replay; this is
the premise it rests on: records written before the restart are read back,
records written after it get the next offsets (not offset 0 again, which is
what a store that ignores conditional PUTs leads to), and a consumer group's
committed offsets survive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from ops.broker import LocalBroker
from ops.load.chaos import S3_BUCKET, S3Store, exported
from ops.ports import free_port

TOPIC = "durable"
PARTITION = TopicPartition(TOPIC, 0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[S3Store]:
    s3 = S3Store(tmp_path / "s3.log")
    await s3.start()
    try:
        with exported(s3.environment()):  # the broker process inherits its S3 endpoint
            yield s3
    finally:
        s3.stop()


async def produce(bootstrap: str, values: list[bytes]) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        return [(await producer.send_and_wait(TOPIC, v, partition=0)).offset for v in values]
    finally:
        await producer.stop()


async def read_all(bootstrap: str, expected: int) -> list[tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([PARTITION])
        await consumer.seek_to_beginning(PARTITION)
        got: list[tuple[int, bytes]] = []
        for _ in range(40):
            batches = await consumer.getmany(timeout_ms=250)
            got += [(m.offset, m.value or b"") for b in batches.values() for m in b]
            if len(got) >= expected:
                break
        return got
    finally:
        await consumer.stop()


async def commit(bootstrap: str, group: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign([PARTITION])
        await consumer.commit({PARTITION: OffsetAndMetadata(offset, "")})
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(PARTITION)
    finally:
        await consumer.stop()


async def test_a_restarted_broker_goes_on_where_it_stopped(store: S3Store, tmp_path: Path) -> None:
    broker = LocalBroker(
        f"127.0.0.1:{free_port()}", f"s3://{S3_BUCKET}/", log_path=tmp_path / "broker.log"
    )
    await broker.start()
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
        await admin.close()
        first = [b"a0", b"a1", b"a2", b"a3", b"a4"]
        assert await produce(broker.bootstrap, first) == [0, 1, 2, 3, 4]
        await commit(broker.bootstrap, "durable-group", 3)

        broker.stop()
        await broker.start(timeout_s=60)

        assert await committed(broker.bootstrap, "durable-group") == 3
        assert await produce(broker.bootstrap, [b"b0", b"b1", b"b2"]) == [5, 6, 7]
        after = [b"b0", b"b1", b"b2"]
        assert await read_all(broker.bootstrap, 8) == list(enumerate(first + after))
    finally:
        broker.stop()
