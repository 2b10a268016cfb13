"""Read topics for the operator's tools: everything up to now, or what comes after a point.

:func:`read_to_end` reads the given topics from their start to their end offsets
as they are when it is called (the Fetch high watermark, right on tansu and on
Kafka: :func:`relais.tansu_quirks.true_end_offsets`), so a command that lists
or traces sees a consistent snapshot and returns as soon as it has it.
:func:`follow` reads on from given offsets until a condition holds (or a timeout).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from relais import kafka_clients
from relais.kafka_clients import Target
from relais.tansu_quirks import fetched_end_offsets
from relais.topics import TopicSpec

Offsets = dict[tuple[str, int], int]


@dataclass(frozen=True)
class Message:
    """One record as read, with its place on the bus."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


async def partitions_of(
    bootstrap: Target, specs: Iterable[TopicSpec], prefix: str
) -> list[tuple[str, int]]:
    """Every (topic name, partition) of ``specs`` under ``prefix``, as the broker has them.

    Asked, not computed: RELAIS_PARTITIONS may have made the topics with another count
    than the catalogue's default. A topic that does not exist has none.
    """
    consumer = await _started(bootstrap)
    try:
        await consumer.topics()  # fresh metadata
        names = [spec.name(prefix) for spec in specs]
        return [(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: Target, partitions: Sequence[tuple[str, int]]) -> Offsets:
    """The current end offset of each partition (where a later reader starts)."""
    consumer = await _started(bootstrap)
    try:
        ends = await fetched_end_offsets(consumer, [TopicPartition(t, p) for t, p in partitions])
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): end for tp, end in ends.items()}


def _consumer(bootstrap: Target) -> AIOKafkaConsumer:
    return kafka_clients.consumer(
        bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 << 20,
        fetch_max_bytes=64 << 20,
    )


async def _started(bootstrap: Target) -> AIOKafkaConsumer:
    """A started consumer; closed again when it cannot start (no broker: no leak, no noise)."""
    consumer = _consumer(bootstrap)
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    return consumer


def _message(record: Any) -> Message:
    headers = tuple((str(k), bytes(v or b"")) for k, v in (record.headers or ()))
    return Message(record.topic, record.partition, record.offset, record.key, record.value, headers)


async def read_to_end(
    bootstrap: Target,
    partitions: Sequence[tuple[str, int]],
    *,
    timeout_s: float = 60.0,
) -> list[Message]:
    """Every record of ``partitions`` from the start to the end offsets of now (none when
    ``partitions`` is empty: asking the broker for no partition's end gets no answer)."""
    if not partitions:
        return []
    consumer = await _started(bootstrap)
    found: list[Message] = []
    try:
        wanted = await fetched_end_offsets(consumer, [TopicPartition(t, p) for t, p in partitions])
        remaining = {tp for tp, end in wanted.items() if end > 0}
        if not remaining:
            return []
        consumer.assign(list(remaining))
        await consumer.seek_to_beginning(*remaining)
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {len(remaining)} partition(s) to their end")
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batches.items():
                found.extend(_message(r) for r in records if r.offset < wanted[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= wanted[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return found


async def follow(
    bootstrap: Target,
    starts: Offsets,
    until: Callable[[list[Message]], bool],
    *,
    timeout_s: float,
    settle_s: float = 2.0,
    progress: Callable[[float], None] | None = None,
) -> list[Message]:
    """Read on from ``starts`` until ``until(records so far)`` holds, then ``settle_s`` more.

    Returns what was read when the condition held (plus what came while settling)
    or when ``timeout_s`` ran out. ``progress`` is called about once a second with
    the seconds waited so far.
    """
    consumer = await _started(bootstrap)
    found: list[Message] = []
    try:
        tps = [TopicPartition(t, p) for (t, p) in starts]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, starts[(tp.topic, tp.partition)])
        began = time.monotonic()
        deadline, settle_until = began + timeout_s, None
        next_tick = began + 1.0
        while time.monotonic() < (settle_until or deadline):
            batches = await consumer.getmany(timeout_ms=300)
            found.extend(_message(r) for records in batches.values() for r in records)
            if settle_until is None and until(found):
                settle_until = min(deadline, time.monotonic() + settle_s)
            if progress is not None and time.monotonic() >= next_tick:
                next_tick += 1.0
                progress(time.monotonic() - began)
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return found
