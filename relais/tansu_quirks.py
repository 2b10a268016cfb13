"""Workarounds for the local tansu broker; active only when RELAIS_BROKER_KIND=tansu.

tansu 0.6.0 answers ListOffsets(LATEST) with the base offset of the last
*batch* + 1, not the partition's high watermark (20 records in one batch give
an end offset of 1). Faust reads that number to know when a table's changelog
is fully recovered, so it stops early and a restarted worker forgets entries.
The high watermark in a Fetch response is right, so :func:`true_end_offsets`
fetches at the reported end - 1 and reads it. Apache Kafka needs none of this:
:func:`install` is called only for tansu, and Relais runs unchanged elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from relais import kafka_clients
from relais.kafka_clients import Target

_installed: set[Target] = set()


async def true_end_offsets(
    bootstrap: Target, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """End offsets as the Fetch high watermark reports them."""
    wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
    if not wanted:
        return {}
    consumer = kafka_clients.consumer(bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        ends = await fetched_end_offsets(consumer, wanted)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): end for tp, end in ends.items()}


async def fetched_end_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """End offsets as the Fetch high watermark reports them, read with a started ``consumer``
    (it is left assigned to the last of ``tps``)."""
    reported = await consumer.end_offsets(tps) if tps else {}
    ends: dict[TopicPartition, int] = {}
    for tp in tps:
        end = int(reported.get(tp, 0))
        if end > 0:
            consumer.assign([tp])
            consumer.seek(tp, end - 1)
            await consumer.getmany(tp, timeout_ms=5000, max_records=1)
            end = max(end, int(consumer.highwater(tp) or 0))
        ends[tp] = end
    return ends


def install(bootstrap: Target) -> None:
    """Make Faust's recovery use :func:`true_end_offsets` (idempotent)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread  # noqa: PLC0415

    if bootstrap in _installed:
        return
    _installed.add(bootstrap)
    original = AIOKafkaConsumerThread._highwaters

    async def _highwaters(self: Any, partitions: list[Any]) -> Mapping[Any, int]:
        if self.consumer.in_transaction:
            return await original(self, partitions)
        fixed = await true_end_offsets(bootstrap, [(tp.topic, tp.partition) for tp in partitions])
        return {tp: fixed[(tp.topic, tp.partition)] for tp in partitions}

    AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]
