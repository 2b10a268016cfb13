"""What the index benchmarks share: the corpus's records onto a broker or through the store's
write path (timed), HDR latency summaries, the CPU clock of this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram
from sqlalchemy import text

from benchmarks.index_corpus import Corpus, DocIds, Produced
from benchmarks.pg_server import PgServer
from ops.broker import LocalBroker
from ops.dlq.letters import LetterView
from ops.dlq.shell import letter_view
from ops.index.rows import Read, rows_of_all
from ops.index.store import IndexStore
from ops.ports import free_port
from relais import kafka_clients
from relais.contracts import Codec, Record
from relais.topic_admin import ensure_topics
from relais.topics import AUDIT, BUSINESS_ACKS, DEADLETTER, DELIVERY_STATUS

PREFIX = "bench"
TOPICS = (AUDIT, DELIVERY_STATUS, DEADLETTER, BUSINESS_ACKS)
PARTITIONS = 12  # RELAIS_PARTITIONS' default


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- latency ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


class Latencies:
    """An HDR histogram of durations, 1 µs to 10 min, 3 significant digits."""

    def __init__(self) -> None:
        self.histogram = HdrHistogram(1, 600_000_000, 3)

    def record(self, seconds: float) -> None:
        self.histogram.record_value(max(1, round(seconds * 1e6)))

    def summary(self) -> Summary:
        h = self.histogram

        def ms(q: float) -> float:
            return float(h.get_value_at_percentile(q)) / 1000

        return Summary(
            h.get_total_count(), ms(50), ms(95), ms(99), h.get_max_value() / 1000,
            h.get_mean_value() / 1000,
        )  # fmt: skip


# -- the store's write path -------------------------------------------------------------------
class Placer:
    """Where each record would lie on the bus: the topic under the prefix, a partition by
    the key (all of a patient's records in one, as the producers' partitioner does), the
    next offset of that partition."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}

    def place(self, produced: Produced) -> tuple[str, int, int]:
        topic = produced.spec.name(PREFIX)
        partition = zlib.crc32(produced.key) % PARTITIONS
        offset = self.next.get((topic, partition), 0)
        self.next[(topic, partition)] = offset + 1
        return topic, partition, offset


def reads_of(
    corpus: Corpus, codec: Codec, placer: Placer, records: Iterable[Produced]
) -> Iterator[Read]:
    """The records as the feeder reads them (a dead letter as the view its shell makes)."""
    for p in records:
        topic, partition, offset = placer.place(p)
        body: Record | LetterView = p.record
        if p.record_type == "DeadLetter":
            body = letter_view(codec, corpus.keyring, p.record, p.key)
        yield Read(p.record_type, body, p.key, topic, partition, offset)


# -- the store's write path, timed ------------------------------------------------------------
@dataclass(frozen=True)
class Fill:
    documents: int
    records: int
    seconds: float
    rows_s: float  # of which rows_of_all (pure)
    cpu_s: float  # this process
    pg_cpu_s: float
    ids: list[DocIds]
    table_mb: float

    def line(self) -> str:
        per_doc = self.documents / 1e6
        return (
            f"| {self.documents:,} | {self.records:,} | {self.seconds:.1f} | "
            f"{self.documents / self.seconds:,.0f} | {self.records / self.seconds:,.0f} | "
            f"{self.cpu_s / per_doc:,.0f} | {self.pg_cpu_s / per_doc:,.0f} | "
            f"{self.rows_s / self.seconds:.0%} | {self.table_mb:,.0f} |"
        )


def fill(store: IndexStore, pg: PgServer, corpus: Corpus, documents: int, batch: int) -> Fill:
    codec, placer, ids = Codec(), Placer(), list[DocIds]()
    pending: list[Read] = []
    rows_s, records = 0.0, 0
    started, cpu, pg_cpu = time.perf_counter(), self_cpu_s(), pg.cpu_s()

    def flush() -> float:
        t = time.perf_counter()
        rows = rows_of_all(pending)
        done = time.perf_counter() - t
        store.apply(rows, dict(placer.next))
        pending.clear()
        return done

    report = 10_000
    for read in reads_of(corpus, codec, placer, flat(corpus.journeys(0, documents), ids)):
        pending.append(read)
        records += 1
        if len(pending) >= batch:
            rows_s += flush()
            if len(ids) >= report:
                progress(f"fill: {len(ids):,} documents, {time.perf_counter() - started:.0f} s")
                report += 10_000
    rows_s += flush()
    seconds = time.perf_counter() - started
    return Fill(documents, records, seconds, rows_s, self_cpu_s() - cpu, pg.cpu_s() - pg_cpu,
                ids, table_mb(store))  # fmt: skip


_SIZE = text(
    "select sum(pg_total_relation_size(c.oid)) from pg_class c "
    "join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relkind = 'r'"
)


def table_mb(store: IndexStore) -> float:
    """Tables, their indexes and TOAST, in MB."""
    with store.engine.connect() as conn:
        size = conn.execute(_SIZE).scalar_one()
    return float(size or 0) / 1e6


# -- the bus ----------------------------------------------------------------------------------
async def create_topics(bootstrap: str) -> None:
    await ensure_topics(bootstrap, PREFIX, TOPICS, partitions=PARTITIONS)


async def produce(
    bootstrap: str, records: Iterable[Produced], codec: Codec, *, window: int = 4000
) -> int:
    """Every record onto its topic, ``window`` sends in flight at most (a bulk load:
    batched, not one round trip each); returns how many."""
    producer = kafka_clients.producer(bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    sent = 0
    try:
        pending: list[asyncio.Future[object]] = []
        for p in records:
            value = codec.encode(p.record_type, p.record)
            pending.append(await producer.send(p.spec.name(PREFIX), value, key=p.key))
            sent += 1
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def flat(
    journeys: Iterable[tuple[DocIds, list[Produced]]], ids: list[DocIds]
) -> Iterator[Produced]:
    """The records of ``journeys`` one after the other; each document's ids go to ``ids``."""
    for doc, records in journeys:
        ids.append(doc)
        yield from records


@contextlib.asynccontextmanager
async def fresh_broker() -> AsyncIterator[LocalBroker]:
    """A new, empty tansu (``memory://``) on a free port, stopped on exit."""
    broker = LocalBroker(f"127.0.0.1:{free_port()}")
    await broker.start()
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


def broker_pid(broker: LocalBroker) -> int | None:
    process = getattr(broker, "_process", None)  # LocalBroker does not expose its pid
    return None if process is None else int(process.pid)
