"""The feeder of the document index: reads the audit, delivery-status, dead-letter and
business-acknowledgement topics and writes what they say into the index (async shell).

It owns no consumer group: it assigns itself every partition of the four topics and seeks
to the positions the index database holds (the beginning when it holds none), so where
it stands is exactly what it wrote. Records are batched (RELAIS_INDEX_BATCH, or what came
in half a second) and each batch is written with its positions in one transaction
(:meth:`ops.index.store.IndexStore.apply`, in a thread). A record that does not decode is
counted and skipped, logged by topic, partition and offset only.

:meth:`Feeder.run` follows the topics until stopped, refreshing the per-sender gauges
every RELAIS_INDEX_STATS_INTERVAL_S; :meth:`Feeder.catch_up` reads them to their current
end and returns (``relais index rebuild``, tests).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.exc import OperationalError

from ops.dlq.letters import LetterView
from ops.dlq.shell import letter_view
from ops.index import metrics
from ops.index.rows import INDEXED, Read, Rows, rows_of
from ops.index.store import IndexStore, IndexStoreError
from relais import kafka_clients
from relais.contracts import Codec, ContractError, Record
from relais.keyring import Keyring
from relais.settings import Settings
from relais.tansu_quirks import true_end_offsets
from relais.topic_reader import partitions_of
from relais.topics import AUDIT, BUSINESS_ACKS, DEADLETTER, DELIVERY_STATUS

log = logging.getLogger(__name__)

INDEX_TOPICS = (AUDIT, DELIVERY_STATUS, DEADLETTER, BUSINESS_ACKS)
BATCH_WAIT_S = 0.5
_DAY = timedelta(hours=24)
Progress = Callable[[int, int], None]  # records read so far, records to read in all


@dataclass
class _Batch:
    messages: list[tuple[TopicPartition, Any]]
    positions: dict[tuple[str, int], int]


class Feeder:
    """Feeds one index from the topics under ``settings.kafka.prefix``."""

    def __init__(
        self,
        settings: Settings,
        store: IndexStore,
        keyring: Keyring | None,
        *,
        codec: Codec | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.keyring = keyring
        self.codec = codec or Codec()
        self.batch_size = max(settings.index.batch, 1)
        self.read = 0
        self.undecodable = 0
        self.following = False  # run(): a database that fails is waited for, batch kept

    # -- public ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Follow the topics, writing batches as they come, until ``stop`` is set."""
        self.following = True
        tps = await self._partitions(stop)
        if not tps:
            return
        consumer = await self._consumer(tps)
        next_stats = 0.0
        try:
            while not stop.is_set():
                await self._one_batch(consumer, tps)
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.settings.index.stats_interval_s
                    await self.refresh_stats()
        finally:
            await consumer.stop()

    async def catch_up(self, *, progress: Progress | None = None) -> int:
        """Read every topic to the end it has now; returns how many records were read."""
        bootstrap = self.settings.kafka.connection
        found = await partitions_of(bootstrap, INDEX_TOPICS, self.settings.kafka.prefix)
        ends = await true_end_offsets(bootstrap, found)
        starts = await asyncio.to_thread(self.store.positions)
        wanted = {tp: end for tp, end in ends.items() if end > starts.get(tp, 0)}
        total = sum(end - starts.get(tp, 0) for tp, end in wanted.items())
        if not wanted:
            return 0
        tps = [TopicPartition(t, p) for t, p in wanted]
        consumer = await self._consumer(tps)
        before = self.read
        try:
            while any(await self._behind(consumer, tps, wanted)):
                await self._one_batch(consumer, tps)
                if progress is not None:
                    progress(self.read - before, total)
        finally:
            await consumer.stop()
        return self.read - before

    async def refresh_stats(self) -> None:
        """Recompute the per-sender and per-destination gauges of the last 24 hours."""
        since = datetime.now(UTC) - _DAY
        senders = await asyncio.to_thread(self.store.senders, since)
        destinations = await asyncio.to_thread(self.store.destinations, since)
        metrics.publish_stats(senders, destinations)

    # -- reading -----------------------------------------------------------------------------
    async def _partitions(self, stop: asyncio.Event) -> list[TopicPartition]:
        """Every partition of the indexed topics, waiting for them to exist."""
        while not stop.is_set():
            found = await partitions_of(
                self.settings.kafka.connection, INDEX_TOPICS, self.settings.kafka.prefix
            )
            if found:
                return [TopicPartition(t, p) for t, p in found]
            log.warning(
                "no topics under %r yet: run `relais topics create`", self.settings.kafka.prefix
            )
            try:
                await asyncio.wait_for(stop.wait(), 5.0)
            except TimeoutError:
                continue
        return []

    async def _consumer(self, tps: Sequence[TopicPartition]) -> AIOKafkaConsumer:
        """A started consumer assigned ``tps``, each at the index's position (or its start)."""
        consumer = kafka_clients.consumer(
            self.settings.kafka.connection,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=16 << 20,
            fetch_max_bytes=64 << 20,
        )
        await consumer.start()
        starts = await asyncio.to_thread(self.store.positions)
        consumer.assign(list(tps))
        for tp in tps:
            at = starts.get((tp.topic, tp.partition))
            if at is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, at)
        return consumer

    async def _behind(
        self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], ends: dict[Any, int]
    ) -> list[bool]:
        return [await consumer.position(tp) < ends[(tp.topic, tp.partition)] for tp in tps]

    async def _one_batch(self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> None:
        """Read up to a batch (or what comes in half a second) and write it."""
        batch = _Batch([], {})
        deadline = time.monotonic() + BATCH_WAIT_S
        while len(batch.messages) < self.batch_size:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            found = await consumer.getmany(
                timeout_ms=left_ms, max_records=self.batch_size - len(batch.messages)
            )
            for tp, records in found.items():
                batch.messages += [(tp, record) for record in records]
                batch.positions[(tp.topic, tp.partition)] = records[-1].offset + 1
                metrics.RECORDS.labels(tp.topic).inc(len(records))
        if batch.messages:
            await self._write(batch)
        await self._lag(consumer, tps)

    def _decoded(self, tp: TopicPartition, record: Any) -> Read | None:
        where = {"topic": tp.topic, "partition": tp.partition, "offset": record.offset}
        try:
            name, value = self.codec.decode(record.value, **where)
        except ContractError:
            self.undecodable += 1
            metrics.UNDECODABLE.labels(tp.topic).inc()
            log.warning(
                "index: skipped an undecodable record at %s partition %d offset %d",
                tp.topic, tp.partition, record.offset,
            )  # fmt: skip
            return None
        if name not in INDEXED:
            return None
        found: Record | LetterView = value
        if name == "DeadLetter":
            found = letter_view(self.codec, self.keyring, value, record.key)
        return Read(name, found, record.key, tp.topic, tp.partition, record.offset)

    async def _write(self, batch: _Batch) -> None:
        """Decode the batch and write its rows and positions (in a thread: opening dead
        letters' originals and the database both block)."""
        began = time.monotonic()
        for attempt in itertools.count():
            try:
                await asyncio.to_thread(self._decode_and_apply, batch)
                break
            except OperationalError as exc:
                if not self.following:
                    raise IndexStoreError(f"the index database failed: {exc.orig}") from None
                wait_s = min(2.0**attempt, 30.0)
                log.warning("index: the database is unavailable, batch retried in %.0f s", wait_s)
                await asyncio.sleep(wait_s)
        metrics.BATCH_SECONDS.observe(time.monotonic() - began)
        metrics.LAST_INDEXED.set(time.time())
        self.read += len(batch.messages)

    def _decode_and_apply(self, batch: _Batch) -> None:
        rows = Rows()
        for tp, record in batch.messages:
            read = self._decoded(tp, record)
            if read is not None:
                rows.extend(rows_of(read))
        self.store.apply(rows, batch.positions)

    async def _lag(self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> None:
        """Records not read yet per topic, from the high watermarks the fetches reported."""
        lag: dict[str, int] = {}
        for tp in tps:
            end = consumer.highwater(tp)
            if end is not None:
                behind = max(end - await consumer.position(tp), 0)
                lag[tp.topic] = lag.get(tp.topic, 0) + behind
        for topic, n in lag.items():
            metrics.LAG.labels(topic).set(n)


async def lag_of(settings: Settings, positions: dict[str, int]) -> dict[str, int]:
    """Records not indexed yet on each partition of the indexed topics (``topic:partition``),
    from the index's ``positions`` (as :attr:`ops.index.model.IndexState.positions`)."""
    bootstrap = settings.kafka.connection
    found = await partitions_of(bootstrap, INDEX_TOPICS, settings.kafka.prefix)
    ends = await true_end_offsets(bootstrap, found)
    return {f"{t}:{p}": max(end - positions.get(f"{t}:{p}", 0), 0) for (t, p), end in ends.items()}
