"""The loop every sink shares: poll, handle one record, emit, commit — or retry it later.

A sink (DMP, MSSanté sender, notify, ack forwarder) reads with manual commits.
For each record its ``handle(tp, message)`` does the work and returns the
records to emit (:class:`Out`), or :class:`RetryLater` when the record must be
tried again later (its destination is down): then the partition is paused and
rewound (:class:`PartitionRetry`) and the others keep flowing. A record the
sink can never process is given up with :class:`GiveUp`: the loop turns it into
a dead letter (:meth:`SinkStage.dead_letter`, which a sink also calls for the
dead letter that goes with a refusal). Outputs are sent and acknowledged by the
broker before the offset is committed, so a crash replays the record rather
than losing it; the sinks' delivery ledgers make that replay harmless.

Around the records, a sink may give :class:`Hooks`: what to do when partitions
are assigned or revoked (read their ledger back, forget it) and after each poll
(the notify sink dispatches what is due). A sink that also works outside the
records (the notify dispatcher) gives the loop its ``lock``: the loop holds it
while it handles and emits a partition's records and while the rebalance hooks
run, so a revoked partition's records in hand are finished first and those not
begun are left to the next owner. With ``commit_per_poll`` the records one poll
brings for a partition go out together, under one commit (admission that never
calls a destination).

Errors a sink's ``handle`` raises for the loop (anything else stops the sink)::

    GiveUp                 this record can never be processed: dead-letter it and commit
    StoreUnavailableError  the document store did not answer: the record is tried again
                           later, as for a RetryLater (relais.document_store)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError

from relais import kafka_clients
from relais.backoff import exponential_backoff
from relais.contracts import Codec, Record
from relais.deadletter import Failure, Origin, dead_letter_output, failure_of, patient_of_key
from relais.document_store.errors import StoreUnavailableError
from relais.fetch_wait import FETCH_MAX_WAIT_MS
from relais.kafka_clients import Target
from relais.keyring import Keyring, warm_patient_key
from relais.metrics import ASSIGNED_PARTITIONS, StageMetrics
from relais.partition_retry import PartitionRetry

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 16 << 20  # documents with their PDF: 16 MiB records


class Out(NamedTuple):
    """A record a sink emits."""

    topic: str
    value: bytes
    key: bytes | None = None  # None: the key of the record being handled
    partition: int | None = None  # None: the producer's partitioner (by key)


Outputs = list[Out]


@dataclass(frozen=True)
class RetryLater:
    """The record must be tried again later; ``outputs`` (a RETRYING status) go out now."""

    outputs: Sequence[Out] = ()


class GiveUp(Exception):
    """A record the sink can never process: the loop dead-letters it and commits."""

    def __init__(self, failure: Failure, event_id: str | None = None) -> None:
        super().__init__(failure.reason)
        self.failure, self.event_id = failure, event_id

    @classmethod
    def because(cls, exc: Exception, event_id: str | None = None) -> GiveUp:
        """Give up because of ``exc`` (undecodable, undecryptable...: :func:`failure_of`)."""
        return cls(failure_of(exc), event_id)


Handler = Callable[[TopicPartition, Any], Awaitable[Sequence[Out] | RetryLater]]
PartitionsHook = Callable[[frozenset[TopicPartition]], Awaitable[None]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SinkStage:
    """Who the sink is: its stage name (dead letters, metrics), keys, topic prefix, clock.

    ``metrics`` (None for a sink without stage metrics) counts what the loop reads,
    emits and dead-letters, and times each record.
    """

    name: str
    prefix: str
    keyring: Keyring
    codec: Codec = field(default_factory=Codec)
    metrics: StageMetrics | None = None
    clock: Callable[[], datetime] = _utc_now

    def dead_letter(self, failure: Failure, message: Any, event_id: str | None = None) -> Out:
        """The dead letter of ``message`` (sealed original, its place on the bus), with its key."""
        if self.metrics is not None:
            self.metrics.failed(failure.reason_code, dead_lettered=True)
        origin = Origin(message.topic, message.partition, message.offset, event_id)
        topic, value = dead_letter_output(
            self.codec,
            self.keyring,
            self.prefix,
            stage=self.name,
            failure=failure,
            origin=origin,
            original=message.value or b"",
            now=self.clock(),
            patient_key=patient_of_key(message.key),
        )
        return Out(topic, value, message.key)


@dataclass(frozen=True)
class Hooks:
    """What a sink does around the records; each is optional."""

    assigned: PartitionsHook | None = None  # given these partitions (read their ledger back)
    revoked: PartitionsHook | None = None  # these partitions went to another worker
    after_poll: Callable[[], Awaitable[None]] | None = None  # after each poll's records


def sink_consumer(bootstrap: Target, group_id: str, session_timeout_s: float) -> AIOKafkaConsumer:
    """A sink's consumer: manual commits, from the earliest uncommitted record, big records.

    Partitions are assigned by range: a worker reading several topics gets the same
    partition numbers of each (the notify sink reads requests and DMP statuses keyed alike).
    """
    return kafka_clients.consumer(
        bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(session_timeout_s * 1000),
        heartbeat_interval_ms=1000,
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
        fetch_max_bytes=4 * MAX_RECORD_BYTES,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # each hop's latency on tansu: relais.fetch_wait
        partition_assignment_strategy=(RangePartitionAssignor,),
    )


def sink_producer(bootstrap: Target) -> AIOKafkaProducer:
    """A sink's producer: every output acknowledged by all replicas before the commit."""
    return kafka_clients.producer(bootstrap, acks="all", max_request_size=MAX_RECORD_BYTES)


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


@dataclass
class _Taken:
    """What handling some records of one partition came to."""

    outputs: Outputs = field(default_factory=list)
    next_offset: int | None = None  # to commit, once the outputs are acknowledged
    later: int | None = None  # the offset to try again later (the partition pauses)


class SinkLoop:
    def __init__(
        self,
        bootstrap: Target,
        stage: SinkStage,
        *,
        group_id: str,
        topics: Sequence[str],
        session_timeout_s: float = 6.0,
        max_records: int = 50,
        backoff: Callable[[], Iterator[float]] = exponential_backoff,
        hooks: Hooks | None = None,
        lock: asyncio.Lock | None = None,
        commit_per_poll: bool = False,
        concurrency: int = 1,
    ) -> None:
        if concurrency < 1:
            raise ValueError("a sink handles at least one partition at a time")
        self.stage, self.topics, self.max_records = stage, list(topics), max_records
        self.concurrency, self.group_id = concurrency, group_id
        self._in_flight: dict[TopicPartition, asyncio.Future[None]] = {}
        self.consumer = sink_consumer(bootstrap, group_id, session_timeout_s)
        self.producer = sink_producer(bootstrap)
        self.retry = PartitionRetry(self.consumer, backoff=backoff)
        self.hooks, self.lock = hooks or Hooks(), lock
        self.commit_per_poll = commit_per_poll

    async def run(self, stop: asyncio.Event, handle: Handler) -> None:
        """Until ``stop``: the loop above, then stop the consumer and the producer."""
        await self.producer.start()
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))
        await self.consumer.start()
        try:
            while not stop.is_set():
                self.retry.resume_due()
                batches = await self.consumer.getmany(timeout_ms=200, max_records=self.max_records)
                await self._take_all(batches, handle)
                if self.hooks.after_poll is not None:
                    await self.hooks.after_poll()
        finally:
            await self.consumer.stop()
            await self.producer.stop()

    async def emit(self, outputs: Sequence[Out]) -> None:
        """Send ``outputs`` and wait until the broker has every one (acks=all)."""
        await self._acknowledged(await self._send(outputs), outputs)

    async def _send(self, outputs: Sequence[Out]) -> list[Awaitable[Any]]:
        """Hand ``outputs`` to the producer; the futures of their acknowledgements."""
        return [
            await self.producer.send(out.topic, out.value, key=out.key, partition=out.partition)
            for out in outputs
        ]

    async def _acknowledged(self, sends: list[Awaitable[Any]], outputs: Sequence[Out]) -> None:
        await asyncio.gather(*sends)
        if self.stage.metrics is not None:
            for out in outputs:
                self.stage.metrics.emitted(out.topic)

    def exclusive(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """The sink's lock, when it gave one (see the module's docstring)."""
        return self.lock if self.lock is not None else contextlib.nullcontext()

    async def _take_all(self, batches: dict[TopicPartition, list[Any]], handle: Handler) -> None:
        """A poll's records: partitions one after the other, or ``concurrency`` at a time
        (each partition's records stay in order: one patient's documents keep theirs).

        Each partition's work is a task the rebalance listener waits for before its
        partitions go (:meth:`finish`); a partition revoked before its turn is skipped."""
        if not batches:
            return
        slots = asyncio.Semaphore(self.concurrency)

        async def take(tp: TopicPartition, messages: list[Any]) -> None:
            async with slots:
                if tp in self.consumer.assignment():  # else: revoked, the next owner reads it
                    await self._take(tp, messages, handle)

        tasks = {tp: asyncio.ensure_future(take(tp, m)) for tp, m in batches.items()}
        self._in_flight.update(tasks)
        try:
            done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in done if not t.cancelled() and t.exception() is not None]
            if failed:  # crash-only: the others stop too, the first error is the sink's
                for task in tasks.values():
                    task.cancel()
                await asyncio.gather(*tasks.values(), return_exceptions=True)
                raise failed[0].exception()  # type: ignore[misc]
        finally:
            for tp in tasks:
                self._in_flight.pop(tp, None)

    async def finish(self, partitions: Any) -> None:
        """Wait until the work in hand on ``partitions`` is done (emitted, committed)."""
        tasks = [self._in_flight[tp] for tp in partitions if tp in self._in_flight]
        if tasks:
            await asyncio.wait(tasks)

    async def _take(self, tp: TopicPartition, messages: list[Any], handle: Handler) -> None:
        """One partition's records of one poll, in order, until one must wait.

        With ``commit_per_poll`` and no lock (sinks whose delivery ledger makes a replay
        harmless: DMP, MSSanté) the outputs of every record are sent as it is handled and
        the partition's offset is committed once, after all are acknowledged. Otherwise each
        record (or, with a lock and ``commit_per_poll``, the poll's group) is acknowledged
        and committed before the next (see the module's docstring)."""
        if self.lock is not None or not self.commit_per_poll:
            await self._take_each(tp, messages, handle)
            return
        sends: list[Awaitable[Any]] = []
        outputs: Outputs = []
        taken = _Taken()
        for message in messages:
            taken = await self._handle_all(tp, [message], handle)
            sends += await self._send(taken.outputs)
            outputs += taken.outputs
            if taken.later is not None:
                break
        await self._acknowledged(sends, outputs)
        last = taken.next_offset if taken.later is None else taken.later
        if last is not None and last > messages[0].offset:
            await commit_offset(self.consumer, tp, last)
        if taken.later is not None:
            self.retry.later(tp, taken.later)

    async def _take_each(self, tp: TopicPartition, messages: list[Any], handle: Handler) -> None:
        groups = [messages] if self.commit_per_poll else [[m] for m in messages]
        for group in groups:
            async with self.exclusive():
                if self.lock is not None and tp not in self.consumer.assignment():
                    return  # revoked meanwhile: the next owner reads them again
                taken = await self._handle_all(tp, group, handle)
                await self.emit(taken.outputs)
            if taken.next_offset is not None:
                await commit_offset(self.consumer, tp, taken.next_offset)
            if taken.later is not None:
                self.retry.later(tp, taken.later)
                return

    async def _handle_all(self, tp: TopicPartition, messages: list[Any], handle: Handler) -> _Taken:
        taken = _Taken()
        for message in messages:
            result = await self._handle(tp, message, handle)
            outputs = result.outputs if isinstance(result, RetryLater) else result
            taken.outputs += _keyed(outputs, message.key)
            if isinstance(result, RetryLater):
                taken.later = message.offset
                break
            self.retry.succeeded(tp)
            taken.next_offset = message.offset + 1
        return taken

    async def _handle(
        self, tp: TopicPartition, message: Any, handle: Handler
    ) -> Sequence[Out] | RetryLater:
        """``handle`` one record, counted and timed; a record given up is dead-lettered."""
        metrics = self.stage.metrics
        if metrics is not None:
            metrics.received()
        with metrics.timed() if metrics is not None else contextlib.nullcontext():
            try:
                patient = patient_of_key(message.key)  # a sink never makes a patient's key
                await warm_patient_key(self.stage.keyring, patient, create=False)
                return await handle(tp, message)
            except StoreUnavailableError as exc:  # the store, not the record: try it later
                log.warning(
                    "%s: a store is unavailable (document store or patient key store), "
                    "retrying later: %s",
                    self.stage.name,
                    exc,
                )
                return RetryLater()
            except GiveUp as given_up:
                return [self.stage.dead_letter(given_up.failure, message, given_up.event_id)]


def _keyed(outputs: Sequence[Out], key: bytes | None) -> Outputs:
    """``outputs``, those without a key of their own with ``key`` (the handled record's)."""
    return [out if out.key is not None else out._replace(key=key) for out in outputs]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Run the sink's hooks when partitions move (under its lock, when it has one)."""

    def __init__(self, loop: SinkLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        ASSIGNED_PARTITIONS.labels(self.loop.group_id).set(0)
        await self.loop.finish(revoked)  # what is in hand is finished and committed first
        await self._run(self.loop.hooks.revoked, revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._run(self.loop.hooks.assigned, assigned)
        ASSIGNED_PARTITIONS.labels(self.loop.group_id).set(len(assigned))

    async def _run(self, hook: PartitionsHook | None, partitions: Any) -> None:
        if hook is not None:
            async with self.loop.exclusive():
                await hook(frozenset(partitions))
