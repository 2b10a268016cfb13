"""The loop every sink shares: poll, handle one record, emit, commit — or retry it later.

A sink (DMP, MSSanté sender, ack forwarder) reads with manual commits. For each
record its ``handle(tp, message)`` does the work and returns the records to emit,
or ``None`` when the record must be retried later (its destination is down):
then the partition is paused and rewound (:class:`PartitionRetry`) and the others
keep flowing. Outputs are sent and acknowledged by the broker before the offset
is committed, so a crash replays the record rather than losing it; the sinks'
delivery ledgers make that replay harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from relais.contracts import Codec, Record
from relais.partition_retry import PartitionRetry

log = logging.getLogger(__name__)

Outputs = list[tuple[str, bytes]]
Handler = Callable[[TopicPartition, Any], Awaitable[Outputs | None]]


MAX_RECORD_BYTES = 16 << 20  # documents with their PDF: 16 MiB records


def sink_consumer(bootstrap: str, group_id: str, session_timeout_s: float) -> AIOKafkaConsumer:
    """A sink's consumer: manual commits, from the earliest uncommitted record, big records."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(session_timeout_s * 1000),
        heartbeat_interval_ms=1000,
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
        fetch_max_bytes=4 * MAX_RECORD_BYTES,
    )


def sink_producer(bootstrap: str) -> AIOKafkaProducer:
    """A sink's producer: every output acknowledged by all replicas before the commit."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_RECORD_BYTES
    )


def decode_record(codec: Codec, message: Any, expected: str) -> Record:
    """The record a consumed message holds; a ContractError names its topic, partition, offset."""
    _, record = codec.decode(
        message.value,
        expected=expected,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )
    return record


async def commit_offset(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    """Commit ``offset`` for ``tp``; a partition rebalanced away is only logged."""
    try:
        await consumer.commit({tp: offset})
    except (CommitFailedError, IllegalStateError) as exc:
        # Rebalanced away: the new owner redelivers, and its ledger says what was done.
        log.warning("commit of %s@%d failed (%s)", tp, offset, type(exc).__name__)


class _Forget(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tell the owner which partitions moved (e.g. to forget their ledger entries)."""

    def __init__(self, moved: Callable[[list[int]], None]) -> None:
        self.moved = moved

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.moved([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.moved([tp.partition for tp in assigned])


class SinkLoop:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        retry: PartitionRetry,
        *,
        topics: Sequence[str],
        max_records: int = 50,
        partitions_moved: Callable[[list[int]], None] | None = None,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        self.consumer, self.producer, self.retry = consumer, producer, retry
        self.topics, self.max_records = list(topics), max_records
        self.partitions_moved, self.after_batch = partitions_moved, after_batch

    async def run(self, stop: asyncio.Event, handle: Handler) -> None:
        """Until ``stop``: the loop above, then stop the consumer and the producer."""
        await self.producer.start()
        listener = _Forget(self.partitions_moved) if self.partitions_moved else None
        if listener is not None:
            self.consumer.subscribe(self.topics, listener=listener)
        else:
            self.consumer.subscribe(self.topics)
        await self.consumer.start()
        try:
            while not stop.is_set():
                self.retry.resume_due()
                batches = await self.consumer.getmany(timeout_ms=200, max_records=self.max_records)
                for tp, messages in batches.items():
                    for message in messages:
                        outputs = await handle(tp, message)
                        if outputs is None:
                            self.retry.later(tp, message.offset)
                            break
                        self.retry.succeeded(tp)
                        await self.emit(outputs, message.key)
                        await commit_offset(self.consumer, tp, message.offset + 1)
                if self.after_batch is not None:
                    self.after_batch()
        finally:
            await self.consumer.stop()
            await self.producer.stop()

    async def emit(self, outputs: Outputs, key: bytes | None) -> None:
        """Send ``outputs`` and wait until the broker has every one (acks=all)."""
        sends = [await self.producer.send(topic, key=key, value=value) for topic, value in outputs]
        await asyncio.gather(*sends)
