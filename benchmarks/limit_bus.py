"""What the measurements of :mod:`benchmarks.pipeline_limit` share: relays, counters, the
MLLP load generator and the CPU accounting per process.

See benchmarks/README.md (``pipeline_limit``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.mllp_ingest import PREFIX
from ops.load.procs import ProcessSampler
from ops.load.senders import MllpConnection
from producers.publisher import MAX_REQUEST_BYTES
from relais.topics import TopicSpec

#: fetch.max.wait.ms of every stage and sink consumer (relais.fetch_wait): on tansu, each
#: Fetch waits about half of it, so each hop costs up to ~25 ms
FETCH_MAX_WAIT_MS: Final = 50


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Message:
    """One HL7 message to send over MLLP, and the MSH-10 its ACK must echo."""

    raw: bytes
    control_id: str


def producer(bootstrap: str) -> AIOKafkaProducer:
    """acks=all and the publisher's request size, as every Relais producer."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_REQUEST_BYTES
    )


def consumer(bootstrap: str, topic: str, group: str | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_REQUEST_BYTES,
        fetch_max_bytes=4 * MAX_REQUEST_BYTES,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # what every stage and sink asks for
    )


def relay_main(bootstrap: str, source: str, target: str) -> None:
    asyncio.run(relay(bootstrap, source, target))


async def relay(bootstrap: str, source: str, target: str) -> None:
    """Move records from ``source`` to ``target`` (acks=all), committing each batch; forever."""
    inbox, outbox = consumer(bootstrap, source, f"relay-{source}"), producer(bootstrap)
    await inbox.start()
    await outbox.start()
    try:
        while True:
            batches = await inbox.getmany(timeout_ms=500)
            sends = [
                await outbox.send(target, key=m.key, value=m.value)
                for batch in batches.values()
                for m in batch
            ]
            await asyncio.gather(*sends)
            if sends:
                await inbox.commit()
    finally:
        await outbox.stop()
        await inbox.stop()


async def count_arrivals(bootstrap: str, topic: str, count: int, timeout_s: float) -> float:
    """Monotonic time at which ``count`` records have arrived on ``topic``."""
    reader = consumer(bootstrap, topic, None)
    await reader.start()
    seen, deadline = 0, time.monotonic() + timeout_s
    try:
        while seen < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seen}/{count} records on {topic}")
            batches = await reader.getmany(timeout_ms=200)
            seen += sum(len(b) for b in batches.values())
        return time.monotonic()
    finally:
        await reader.stop()


async def burst(bootstrap: str, topic: str, records: Sequence[Record]) -> float:
    """Produce every record as fast as the client goes; the start time."""
    out = producer(bootstrap)
    await out.start()
    try:
        started = time.monotonic()
        sends = [await out.send(topic, key=r.key, value=r.value) for r in records]
        await asyncio.gather(*sends)
        return started
    finally:
        await out.stop()


async def create_topics(bootstrap: str, specs: Iterable[TopicSpec]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(s.name(PREFIX), s.partitions, 1) for s in specs])
    finally:
        await admin.close()


async def send_all(port: int, messages: Sequence[Message], connections: int) -> float:
    """Send every message over MLLP on ``connections`` connections, each ACK awaited before
    the connection's next message; any answer but AA stops the run. The start time."""
    queue: asyncio.Queue[Message] = asyncio.Queue()
    for m in messages:
        queue.put_nowait(m)

    async def sender() -> None:
        link = MllpConnection("127.0.0.1", port)
        try:
            while not queue.empty():
                m = queue.get_nowait()
                code = await link.send(m.raw, m.control_id)
                if code != "AA":
                    raise RuntimeError(f"{m.control_id} answered {code}, not AA")
        finally:
            link.close()

    started = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(connections)))
    return started


def broker_pid(listen: str) -> int | None:
    """The tansu process among this process's children that listens on ``listen``."""
    for child in psutil.Process().children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if "tansu" in line and listen in line:
            return int(child.pid)
    return None


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return float(psutil.Process(pid).memory_info().rss / 1e6)
    except psutil.NoSuchProcess:
        return None


class Cpu:
    """CPU seconds of named processes over the timed phase (psutil, user + system)."""

    def __init__(self, processes: list[tuple[str, int]]) -> None:
        self.processes = [*processes, ("load generator + DMP sandbox", os.getpid())]
        self.sampler = ProcessSampler()

    def start(self) -> None:
        self.sampler.sample(self.processes, baseline=True)

    def stop(self) -> dict[str, float]:
        """CPU seconds per name since :meth:`start` (names that repeat add up)."""
        self.sampler.sample(self.processes)
        return {u.name: u.cpu_s for u in self.sampler.table()}
