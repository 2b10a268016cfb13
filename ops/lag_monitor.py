"""Consumer lag of every Relais consumer group, as Prometheus gauges (``relais monitor``).

Every ``interval_s`` it lists the consumer groups of the topic prefix, reads
each group's committed offsets on the catalogue's topics and the topics' end
offsets, and exports:

* ``relais_consumer_lag_records{group,topic,partition}`` — records not yet
  processed (end offset - committed offset);
* ``relais_consumer_committed_offset{group,topic,partition}`` — a stage that
  stopped consuming shows a flat line here while its lag grows;
* ``relais_topic_end_offset{topic,partition}`` — records written (rates of arrival).

Faust workers and the sinks commit their offsets in Kafka, so one monitor sees
them all. The end offsets are read as the Fetch high watermark
(:func:`relais.tansu_quirks.true_end_offsets`), right on Kafka and tansu alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from relais import kafka_clients
from relais.kafka_clients import Target
from relais.metrics import REGISTRY
from relais.tansu_quirks import true_end_offsets
from relais.topic_reader import partitions_of
from relais.topics import ALL_TOPICS

log = logging.getLogger(__name__)

LAG = Gauge(
    "relais_consumer_lag_records",
    "Records a consumer group has not processed yet (end offset - committed offset).",
    ["group", "topic", "partition"],
    registry=REGISTRY,
)
COMMITTED = Gauge(
    "relais_consumer_committed_offset",
    "Offset a consumer group committed (flat while lag grows: the stage stopped).",
    ["group", "topic", "partition"],
    registry=REGISTRY,
)
END = Gauge(
    "relais_topic_end_offset",
    "End offset (records written so far) of each topic partition.",
    ["topic", "partition"],
    registry=REGISTRY,
)


@dataclass(frozen=True)
class LagRow:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


def lag_rows(
    committed: Mapping[tuple[str, str, int], int], ends: Mapping[tuple[str, int], int]
) -> list[LagRow]:
    """One row per (group, topic, partition) the group has committed on."""
    return [
        LagRow(group, topic, partition, offset, ends.get((topic, partition), offset))
        for (group, topic, partition), offset in sorted(committed.items())
    ]


class LagMonitor:
    def __init__(self, bootstrap: Target, prefix: str, *, interval_s: float = 15.0) -> None:
        self.bootstrap, self.prefix, self.interval_s = bootstrap, prefix, interval_s
        self.partitions: list[tuple[str, int]] = []  # asked again at each measure

    async def groups(self) -> list[str]:
        admin = kafka_clients.admin(self.bootstrap)
        await admin.start()
        try:
            listed = await admin.list_consumer_groups()
        finally:
            await admin.close()
        return sorted(str(g[0]) for g in listed if str(g[0]).startswith(f"{self.prefix}-"))

    async def committed(self, group: str) -> dict[tuple[str, str, int], int]:
        """The group's committed offsets (read without joining the group)."""
        consumer = kafka_clients.consumer(self.bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            found: dict[tuple[str, str, int], int] = {}
            for topic, partition in self.partitions:
                offset = await consumer.committed(TopicPartition(topic, partition))
                if offset is not None:
                    found[group, topic, partition] = int(offset)
            return found
        finally:
            await consumer.stop()

    async def measure(self) -> list[LagRow]:
        self.partitions = await partitions_of(self.bootstrap, ALL_TOPICS, self.prefix)
        committed: dict[tuple[str, str, int], int] = {}
        for group in await self.groups():
            committed |= await self.committed(group)
        ends = await true_end_offsets(self.bootstrap, self.partitions)
        for (topic, partition), end in ends.items():
            END.labels(topic, str(partition)).set(end)
        rows = lag_rows(committed, ends)
        for row in rows:
            labels = (row.group, row.topic, str(row.partition))
            LAG.labels(*labels).set(row.lag)
            COMMITTED.labels(*labels).set(row.committed)
        return rows

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.measure()
            except (KafkaError, OSError) as exc:
                log.warning("lag measurement failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
