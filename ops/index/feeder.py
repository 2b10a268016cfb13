"""The feeder of the document index: reads the audit, delivery-status, dead-letter and
business-acknowledgement topics and writes what they say into the index (async shell).

It owns no consumer group: it assigns itself every partition of the four topics and seeks
to the positions the index database holds (the beginning when it holds none), so where
it stands is exactly what it wrote. Records are batched (RELAIS_INDEX_BATCH, or what came
in half a second) and each batch is written with its positions in one transaction
(:meth:`ops.index.store.IndexStore.apply`, in a thread). A record that does not decode is
counted and skipped, logged by topic, partition and offset only; so is a record the database
refuses (a batch it refuses is written again record by record to find which). A batch is
decoded once, however often a database that fails makes it be written again.

Positions follow the consumer, not only the records: a partition whose position moved
without giving records (its records expired: the consumer starts again at the log start)
has that position written too, and the lag counts from the log start where it is further
(:mod:`ops.index.offsets`), so no partition shows records to read that are gone.

:meth:`Feeder.run` follows the topics until stopped (partitions created after it started
included: it lists them again every :data:`RELIST_S`), refreshing the per-sender gauges
every RELAIS_INDEX_STATS_INTERVAL_S and the lag every :data:`LAG_EVERY_S`; a database that
fails is waited for, the batch kept. :meth:`Feeder.catch_up` reads the topics to their
current end and returns (``relais index rebuild``, commands, tests).

Without the keyring, dead letters whose record names no event (the originals are sealed)
cannot be linked to their document: ``relais index run`` warns at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, SQLAlchemyError

from ops.dlq.letters import LetterView
from ops.dlq.shell import letter_view
from ops.index import metrics, offsets
from ops.index.offsets import Extents, Partition, extents_of
from ops.index.rows import INDEXED, Read, Rows, rows_of
from ops.index.store import IndexStore, IndexStoreError
from relais import kafka_clients
from relais.contracts import Codec, ContractError, Record
from relais.keyring import Keyring
from relais.settings import Settings
from relais.topic_reader import partitions_of

log = logging.getLogger(__name__)

INDEX_TOPICS = offsets.INDEX_TOPICS  # where callers have found them
BATCH_WAIT_S = 0.5
RELIST_S = 60.0  # partitions are listed again this often (topics created or grown)
LAG_EVERY_S = 30.0
_DAY = timedelta(hours=24)
#: what the database says of a record it will never take (a value it refuses)
REFUSALS = (DataError, IntegrityError)
Progress = Callable[[int, int], None]  # records read so far, records to read in all


@dataclass
class _Batch:
    messages: list[tuple[TopicPartition, Any]]
    positions: dict[Partition, int]
    reads: list[tuple[TopicPartition, int, Read | None]] = field(default_factory=list)
    rows: Rows = field(default_factory=Rows)
    refused: set[tuple[Partition, int]] = field(default_factory=set)  # counted already


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
        self.refused = 0  # records the database refused, skipped
        self.following = False  # run(): a database that fails is waited for, batch kept
        self._stop = asyncio.Event()
        self._written: dict[Partition, int] = {}  # positions known to be in the index

    # -- public ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Follow the topics, writing batches as they come, until ``stop`` is set."""
        self.following, self._stop = True, stop
        if self.keyring is None:
            log.warning(
                "index: no keyring (RELAIS_KEYRING_FILE): dead letters naming no event are "
                "indexed without their document, sender and sector"
            )
        tps = await self._partitions(stop)
        if not tps:
            return
        lag = asyncio.create_task(self._lag_every(stop))
        consumer = await self._consumer(tps)
        next_stats, relist_at = 0.0, time.monotonic() + RELIST_S
        try:
            while not stop.is_set():
                await self._one_batch(consumer)
                if time.monotonic() >= relist_at:
                    relist_at = time.monotonic() + RELIST_S
                    consumer, tps = await self._relisted(consumer, tps)
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.settings.index.stats_interval_s
                    await self.refresh_stats()
        finally:
            lag.cancel()
            await consumer.stop()

    async def catch_up(
        self, *, progress: Progress | None = None, extents: Extents | None = None
    ) -> int:
        """Read every topic to the end it has now (``extents``, asked when not given);
        returns how many records were read."""
        found = extents if extents is not None else await extents_of(self.settings)
        behind = found.behind(await asyncio.to_thread(self.store.positions))
        wanted = {tp: found.ends[tp] for tp, n in behind.items() if n > 0}
        if not wanted:
            return 0
        total = sum(behind.values())
        tps = [TopicPartition(t, p) for t, p in wanted]
        consumer = await self._consumer(tps)
        before = self.read
        try:
            while True:
                await self._one_batch(consumer)
                if progress is not None:
                    progress(self.read - before, total)
                if not any(await self._behind(consumer, tps, wanted)):
                    break
        finally:
            await consumer.stop()
        return self.read - before

    async def refresh_stats(self) -> None:
        """Recompute the per-sender and per-destination gauges of the last 24 hours (a
        database that fails leaves them as they were, logged)."""
        since = datetime.now(UTC) - _DAY
        try:
            senders = await asyncio.to_thread(self.store.senders, since)
            destinations = await asyncio.to_thread(self.store.destinations, since)
        except IndexStoreError as exc:
            log.warning("index: the per-sender gauges were not refreshed: %s", exc)
            return
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
        self._written.update(starts)
        for tp in tps:
            at = starts.get((tp.topic, tp.partition))
            if at is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, at)
        return consumer

    async def _behind(
        self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], ends: dict[Partition, int]
    ) -> list[bool]:
        return [await consumer.position(tp) < ends[(tp.topic, tp.partition)] for tp in tps]

    async def _relisted(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
        """The consumer and partitions, a new consumer when partitions appeared (each at
        the index's position: every batch read so far is written)."""
        try:
            found = await partitions_of(
                self.settings.kafka.connection, INDEX_TOPICS, self.settings.kafka.prefix
            )
        except KafkaError as exc:
            log.warning("index: partitions not listed again: %s", type(exc).__name__)
            return consumer, tps
        now = [TopicPartition(t, p) for t, p in found]
        if set(now) <= set(tps):
            return consumer, tps
        log.info("index: %d new partitions to read", len(set(now) - set(tps)))
        await consumer.stop()
        return await self._consumer(now), now

    async def _one_batch(self, consumer: AIOKafkaConsumer) -> None:
        """Read up to a batch (or what comes in half a second) and write it, with the
        positions of partitions that moved without records."""
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
        await self._moved(consumer, batch)
        if batch.messages or batch.positions:
            await self._write(batch)

    async def _moved(self, consumer: AIOKafkaConsumer, batch: _Batch) -> None:
        """Add to ``batch`` the consumer's position on each partition where it is past
        both what the batch read and what the index holds (records that expired, or
        offsets that hold no record): every record before it has been read. Positions
        still being looked up (a broker away) are left for a later batch."""

        async def asked() -> dict[TopicPartition, int]:
            return {tp: await consumer.position(tp) for tp in consumer.assignment()}

        try:
            found = await asyncio.wait_for(asked(), BATCH_WAIT_S)
        except TimeoutError:
            return
        for tp, at in found.items():
            key = (tp.topic, tp.partition)
            if at > max(batch.positions.get(key, 0), self._written.get(key, 0)):
                batch.positions[key] = at

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
        """Decode the batch (once) and write its rows and positions (in a thread: opening
        dead letters' originals and the database both block). Following, a database that
        is unavailable is waited for until it comes back or the feeder is stopped."""
        began = time.monotonic()
        await asyncio.to_thread(self._decode, batch)
        for attempt in itertools.count():
            try:
                await asyncio.to_thread(self._apply, batch)
                break
            except OperationalError as exc:
                if not self.following:
                    raise self.store.error(exc) from None
                wait_s = min(2.0**attempt, 30.0)
                log.warning("index: the database is unavailable, batch retried in %.0f s", wait_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait_s)
                if self._stop.is_set():
                    return  # not written: read again from the index's positions next time
        self._written.update(batch.positions)
        if batch.messages:
            metrics.BATCH_SECONDS.observe(time.monotonic() - began)
            metrics.LAST_INDEXED.set(time.time())
        self.read += len(batch.messages)

    def _decode(self, batch: _Batch) -> None:
        """Decode the batch's records into its reads and rows (undecodable ones counted)."""
        batch.reads = [(tp, r.offset, self._decoded(tp, r)) for tp, r in batch.messages]
        for _, _, read in batch.reads:
            if read is not None:
                batch.rows.extend(rows_of(read))

    def _apply(self, batch: _Batch) -> None:
        try:
            self.store.apply(batch.rows, batch.positions)
        except REFUSALS:
            self._apply_one_by_one(batch)

    def _apply_one_by_one(self, batch: _Batch) -> None:
        """Write a batch the database refused record by record; a record it refuses is
        counted (once, however often the batch is written again) and skipped (logged by
        topic, partition and offset only)."""
        for tp, offset, read in batch.reads:
            where = {(tp.topic, tp.partition): offset + 1}
            try:
                self.store.apply(rows_of(read) if read is not None else Rows(), where)
            except REFUSALS:
                self.store.apply(Rows(), where)
                if (seen := ((tp.topic, tp.partition), offset)) in batch.refused:
                    continue  # counted on an earlier pass (the database failed meanwhile)
                batch.refused.add(seen)
                self.refused += 1
                metrics.REFUSED.labels(tp.topic).inc()
                log.warning(
                    "index: the database refused the record at %s partition %d offset %d: "
                    "skipped", tp.topic, tp.partition, offset,
                )  # fmt: skip
        self.store.apply(Rows(), batch.positions)  # positions moved without records

    async def _lag_every(self, stop: asyncio.Event) -> None:
        """Set the lag gauges every :data:`LAG_EVERY_S`, from the topics' end offsets and
        the index's positions (partitions never read included)."""
        while not stop.is_set():
            try:
                positions = await asyncio.to_thread(self.store.positions)
                lag = await lag_of(
                    self.settings, {f"{t}:{p}": o for (t, p), o in positions.items()}
                )
            except (KafkaError, IndexStoreError, SQLAlchemyError, OSError) as exc:
                log.warning("index: the lag was not measured: %s", type(exc).__name__)
            else:
                by_topic: dict[str, int] = {}
                for name, n in lag.items():
                    topic = name.rsplit(":", 1)[0]
                    by_topic[topic] = by_topic.get(topic, 0) + n
                for topic, n in by_topic.items():
                    metrics.LAG.labels(topic).set(n)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LAG_EVERY_S)


async def lag_of(settings: Settings, positions: dict[str, int]) -> dict[str, int]:
    """Records not indexed yet on each partition of the indexed topics (``topic:partition``),
    from the index's ``positions`` (as :attr:`ops.index.model.IndexState.positions`): from
    the partition's log start where the index stands before it (records gone)."""
    found = await extents_of(settings)
    at: dict[Partition, int] = {}
    for name, n in positions.items():
        topic, _, partition = name.rpartition(":")
        at[(topic, int(partition))] = n
    return {f"{t}:{p}": n for (t, p), n in found.behind(at).items()}
