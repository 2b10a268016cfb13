"""The loop every sink shares, with a fake consumer and producer: emit, commit, retry, give up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from relais.contracts import Codec
from relais.deadletter import Failure
from relais.document_store import StoreUnavailableError
from relais.keyring import Keyring
from relais.partition_retry import PartitionRetry
from relais.sink_loop import GiveUp, Hooks, Out, RetryLater, SinkLoop, SinkStage
from relais.topics import DEADLETTER

TP = TopicPartition("t.requests", 0)
OTHER = TopicPartition("t.requests", 1)


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes = b"request"
    topic: str = "t.requests"
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class FakeConsumer:
    polls: list[dict[TopicPartition, list[Message]]]
    done: asyncio.Event  # set once every poll was handed out
    assigned: set[TopicPartition] = field(default_factory=lambda: {TP, OTHER})
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    paused: list[tuple[TopicPartition, int]] = field(default_factory=list)
    listener: Any = None

    def subscribe(self, topics: Sequence[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[Message]]:
        if not self.polls:
            self.done.set()
            return {}
        return self.polls.pop(0)

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def pause(self, tp: TopicPartition) -> None:
        self.paused.append((tp, -1))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.paused[-1] = (tp, offset)

    def resume(self, tp: TopicPartition) -> None:
        pass

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


@dataclass
class FakeProducer:
    sent: list[Out] = field(default_factory=list)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, partition: int | None
    ) -> asyncio.Future[None]:
        self.sent.append(Out(topic, value, key, partition))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def never() -> Iterator[float]:
    while True:
        yield 3600.0


async def running(
    polls: list[dict[TopicPartition, list[Message]]],
    handle: Any,
    assigned: set[TopicPartition] | None = None,
    **options: Any,
) -> tuple[SinkLoop, FakeConsumer, FakeProducer]:
    """Run a loop over ``polls`` (then it stops) with a fake consumer and producer."""
    stop = asyncio.Event()
    stage = SinkStage("test-sink", "t", Keyring.generate(), Codec())
    loop = SinkLoop("127.0.0.1:1", stage, group_id="g", topics=["t.requests"], **options)
    consumer, producer = FakeConsumer(polls, stop), FakeProducer()
    if assigned is not None:
        consumer.assigned = assigned
    loop.consumer, loop.producer = consumer, producer
    loop.retry = PartitionRetry(consumer, backoff=never)
    await asyncio.wait_for(loop.run(stop, handle), 5)
    return loop, consumer, producer


async def echo(tp: TopicPartition, message: Any) -> list[Out]:
    return [Out("t.status", b"status %d" % message.offset)]


async def test_each_record_is_emitted_with_its_key_then_committed() -> None:
    poll = {TP: [Message(0, 7, b"k7"), Message(0, 8, b"k8")]}
    _, consumer, producer = await running([poll], echo)
    assert producer.sent == [
        Out("t.status", b"status 7", b"k7"),
        Out("t.status", b"status 8", b"k8"),
    ]
    assert consumer.commits == [{TP: 8}, {TP: 9}]  # a sink without a ledger: record by record


async def test_a_ledgered_sink_commits_a_partition_once_per_poll_after_the_acks() -> None:
    poll = {TP: [Message(0, 7, b"k7"), Message(0, 8, b"k8")], OTHER: [Message(1, 2, b"o")]}
    _, consumer, producer = await running([poll], echo, commit_per_poll=True)
    assert [o.value for o in producer.sent] == [b"status 7", b"status 8", b"status 2"]
    assert consumer.commits == [{TP: 9}, {OTHER: 3}]


async def test_partitions_are_handled_concurrently_each_in_its_order() -> None:
    both_started = asyncio.Event()
    started: list[int] = []
    order: list[tuple[int, int]] = []

    async def handle(tp: TopicPartition, message: Any) -> list[Out]:
        started.append(message.partition)
        if len(set(started)) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 2)  # only if the other is in flight too
        order.append((message.partition, message.offset))
        return await echo(tp, message)

    poll = {
        TP: [Message(0, 1, b"a"), Message(0, 2, b"a")],
        OTHER: [Message(1, 5, b"b"), Message(1, 6, b"b")],
    }
    _, consumer, _ = await running([poll], handle, concurrency=4, commit_per_poll=True)
    assert [o for p, o in order if p == 0] == [1, 2]
    assert [o for p, o in order if p == 1] == [5, 6]
    assert sorted(consumer.commits, key=str) == [{TP: 3}, {OTHER: 7}]


async def test_one_at_a_time_the_other_partition_waits() -> None:
    started: list[int] = []

    async def handle(tp: TopicPartition, message: Any) -> list[Out]:
        started.append(message.partition)
        await asyncio.sleep(0.01)
        return await echo(tp, message)

    poll = {TP: [Message(0, 1, b"a"), Message(0, 2, b"a")], OTHER: [Message(1, 5, b"b")]}
    await running([poll], handle)  # concurrency 1: the default
    assert started == [0, 0, 1]


async def test_a_record_to_retry_pauses_its_partition_and_says_so_first() -> None:
    async def handle(tp: TopicPartition, message: Any) -> list[Out] | RetryLater:
        if message.offset == 8:
            return RetryLater([Out("t.status", b"retrying")])
        return await echo(tp, message)

    poll = {TP: [Message(0, 7, b"k"), Message(0, 8, b"k"), Message(0, 9, b"k")]}
    _, consumer, producer = await running([poll], handle)
    assert [o.value for o in producer.sent] == [b"status 7", b"retrying"]
    assert consumer.commits == [{TP: 8}]  # the one to retry is not committed, nor what follows
    assert consumer.paused == [(TP, 8)]  # rewound to it


async def test_a_record_given_up_is_dead_lettered_with_its_key_and_committed() -> None:
    async def handle(tp: TopicPartition, message: Any) -> list[Out]:
        raise GiveUp(Failure("bad-request", "the request cannot be used"), "event-1")

    _, consumer, producer = await running([{TP: [Message(0, 3, b"k3")]}], handle)
    [letter] = producer.sent
    assert (letter.topic, letter.key) == (DEADLETTER.name("t"), b"k3")
    _, record = Codec().decode(letter.value, expected="DeadLetter")
    assert (record["stage"], record["reason_code"], record["event_id"]) == (
        "test-sink",
        "bad-request",
        "event-1",
    )
    assert (record["source_topic"], record["source_partition"], record["source_offset"]) == (
        "t.requests",
        0,
        3,
    )
    assert consumer.commits == [{TP: 4}]


async def test_per_poll_a_partition_goes_out_together_under_one_commit() -> None:
    poll = {TP: [Message(0, 1, b"a"), Message(0, 2, b"b")], OTHER: [Message(1, 5, b"c")]}
    lock = asyncio.Lock()
    polled: list[int] = []

    async def after_poll() -> None:
        polled.append(len(polled))

    hooks = Hooks(after_poll=after_poll)
    _, consumer, producer = await running(
        [poll], echo, lock=lock, commit_per_poll=True, hooks=hooks
    )
    assert [(o.value, o.key) for o in producer.sent] == [
        (b"status 1", b"a"),
        (b"status 2", b"b"),
        (b"status 5", b"c"),
    ]
    assert consumer.commits == [{TP: 3}, {OTHER: 6}]
    assert polled == [0, 1]  # after each poll, the empty last one included


async def test_with_a_lock_a_revoked_partition_is_left_to_its_next_owner() -> None:
    poll = {TP: [Message(0, 1, b"a")], OTHER: [Message(1, 5, b"c")]}
    _, consumer, producer = await running([poll], echo, lock=asyncio.Lock(), assigned={OTHER})
    assert [o.value for o in producer.sent] == [b"status 5"]
    assert consumer.commits == [{OTHER: 6}]


async def test_rebalance_hooks_wait_for_the_record_in_hand() -> None:
    moved: list[frozenset[TopicPartition]] = []

    async def revoked(partitions: frozenset[TopicPartition]) -> None:
        moved.append(partitions)

    lock = asyncio.Lock()
    _, consumer, _ = await running([], echo, lock=lock, hooks=Hooks(revoked=revoked))
    async with lock:  # a record in hand
        revoking = asyncio.create_task(consumer.listener.on_partitions_revoked({TP}))
        await asyncio.sleep(0.01)
        assert moved == []
    await revoking
    assert moved == [frozenset({TP})]


async def test_a_revocation_waits_for_the_work_in_hand_on_its_partitions() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def handle(tp: TopicPartition, message: Any) -> list[Out]:
        started.set()
        await release.wait()
        order.append("handled")
        return await echo(tp, message)

    async def revoked(partitions: frozenset[TopicPartition]) -> None:
        order.append("revoked")

    stop = asyncio.Event()
    stage = SinkStage("test-sink", "t", Keyring.generate(), Codec())
    loop = SinkLoop(
        "127.0.0.1:1",
        stage,
        group_id="g",
        topics=["t.requests"],
        hooks=Hooks(revoked=revoked),
        commit_per_poll=True,
        concurrency=2,
    )
    consumer, producer = FakeConsumer([{TP: [Message(0, 4, b"k")]}], stop), FakeProducer()
    loop.consumer, loop.producer = consumer, producer
    loop.retry = PartitionRetry(consumer, backoff=never)
    running_loop = asyncio.ensure_future(loop.run(stop, handle))
    await asyncio.wait_for(started.wait(), 2)
    revocation = asyncio.ensure_future(consumer.listener.on_partitions_revoked({TP}))
    await asyncio.sleep(0.05)
    assert not revocation.done()  # the record in hand is not abandoned half-way
    release.set()
    await asyncio.wait_for(revocation, 2)
    assert order == ["handled", "revoked"]
    assert consumer.commits == [{TP: 5}]  # committed by its owner before the partition went
    await asyncio.wait_for(running_loop, 5)


async def test_a_store_outage_is_retried_later_never_dead_lettered() -> None:
    async def handle(tp: TopicPartition, message: Any) -> list[Out]:
        raise StoreUnavailableError("the document store did not answer")

    _, consumer, producer = await running([{TP: [Message(0, 3, b"k")]}], handle)
    assert producer.sent == []  # no dead letter
    assert consumer.commits == []
    assert consumer.paused == [(TP, 3)]  # rewound to it, tried again after the backoff
