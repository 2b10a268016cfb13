"""Where the indexed topics stand, and how many records the index has still to read there.

A partition's records before its log start offset are gone (retention): the index cannot
read them, and a partition whose records have all expired (log start = end) has nothing
left to read whatever the index's position there says. So the records still to read on a
partition are ``end - max(position, log start)``, never negative, a partition the index
holds no position for counting from 0 (:func:`to_read`, :meth:`Extents.behind`): the pure
arithmetic the feeder's lag gauges, ``relais index status`` and the commands' catch-up
share. :func:`extents_of` asks the broker for both offsets (async shell).

Errors: the broker's (``aiokafka.errors.KafkaError``, ``OSError``) pass through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import TopicPartition

from relais import kafka_clients
from relais.settings import Settings
from relais.tansu_quirks import fetched_end_offsets
from relais.topic_reader import partitions_of
from relais.topics import AUDIT, BUSINESS_ACKS, DEADLETTER, DELIVERY_STATUS

#: the topics the document index reads
INDEX_TOPICS = (AUDIT, DELIVERY_STATUS, DEADLETTER, BUSINESS_ACKS)
Partition = tuple[str, int]


def to_read(position: int | None, start: int, end: int) -> int:
    """Records still to read on a partition from ``position`` (None: never read), its log
    start offset ``start`` and its end offset ``end``."""
    return max(end - max(position or 0, start), 0)


@dataclass(frozen=True)
class Extents:
    """The log start and end offset of each partition of the indexed topics."""

    starts: dict[Partition, int]
    ends: dict[Partition, int]

    def without(self, topic: str) -> Extents:
        """The same, less ``topic``'s partitions."""
        return Extents(
            {tp: o for tp, o in self.starts.items() if tp[0] != topic},
            {tp: o for tp, o in self.ends.items() if tp[0] != topic},
        )

    def behind(self, positions: Mapping[Partition, int]) -> dict[Partition, int]:
        """Records still to read on each partition from the index's ``positions``."""
        return {
            tp: to_read(positions.get(tp), self.starts.get(tp, 0), end)
            for tp, end in self.ends.items()
        }


async def extents_of(settings: Settings) -> Extents:
    """Every partition of the indexed topics under ``settings.kafka.prefix`` with its log
    start and end offsets (none when no such topic exists)."""
    bootstrap = settings.kafka.connection
    found = await partitions_of(bootstrap, INDEX_TOPICS, settings.kafka.prefix)
    if not found:
        return Extents({}, {})
    tps = [TopicPartition(t, p) for t, p in found]
    consumer = kafka_clients.consumer(bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(tps)
        ends = await fetched_end_offsets(consumer, tps)
    finally:
        await consumer.stop()
    return Extents(
        starts={(tp.topic, tp.partition): int(o) for tp, o in starts.items()},
        ends={(tp.topic, tp.partition): int(o) for tp, o in ends.items()},
    )
