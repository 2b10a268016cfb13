"""One document among 100,000 in the document index (issue 19): fill, then look up.

Run: ``.venv/bin/python -m benchmarks.index_lookup [--documents 100000] [--lookups 2000]``.

1. A throwaway PostgreSQL 15 (:mod:`benchmarks.pg_server`) gets the index's tables
   (``IndexStore.create``), then N synthetic documents (:mod:`benchmarks.index_corpus`:
   about 8.3 records each, as the pipeline writes them) through the store's own write path:
   ``rows_of_all`` and ``IndexStore.apply`` in batches of ``--batch`` records (the feeder's
   ``RELAIS_INDEX_BATCH``), each with its positions, in one transaction. Fill rate: documents
   and records per second, CPU of this process and of PostgreSQL.
2. Lookups of random documents, ``--lookups`` each (after 50 untimed): by MSH-10
   (``search``), by document unique id and by event id (``document``), by patient key
   (``search``), by sender and a one-hour window (``search``, first page of 50), and the full
   journey (``journey``). Every answer is checked (the document is found; a journey has its
   steps). Latency is wall time around the call, in an HDR histogram.
3. The old way, in the same run: ``relais trace`` before the index read every record of the
   audit, status, dead-letter and ack topics and kept one document's
   (``ops.trace.shell.read_journey``). Measured on a real broker (tansu, ``memory://``) filled
   with the first 2,000 and 10,000 documents of the same corpus, and extrapolated linearly to
   N (said so in the table); and ``ops.trace.journey.journey`` alone over the records of all N
   documents held in memory, no broker read nor decoding: a lower bound of the old way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy

from benchmarks.index_corpus import Corpus, DocIds, Produced
from benchmarks.index_rig import (
    PREFIX,
    Fill,
    Latencies,
    Summary,
    create_topics,
    fill,
    flat,
    fresh_broker,
    produce,
    progress,
    self_cpu_s,
)  # fmt: skip
from benchmarks.pg_server import DEFAULT_BIN, PgServer, pg_server
from ops.dlq.shell import letter_view
from ops.index.model import Search
from ops.index.store import IndexStore, engine_url
from ops.trace.journey import journey
from ops.trace.shell import read_journey
from relais.contracts import Codec

TARGET_P99_MS = 50.0
WARMUP = 50


# -- 2. lookups ------------------------------------------------------------------------------
Lookup = Callable[[IndexStore, DocIds], Any]
Check = Callable[[DocIds, Any], bool]


def _window(d: DocIds) -> Search:
    return Search(sender=d.sender, since=d.received_at - timedelta(minutes=30),
                  until=d.received_at + timedelta(minutes=30))  # fmt: skip


LOOKUPS: tuple[tuple[str, Lookup, Check], ...] = (
    ("MSH-10 (search)",
     lambda s, d: s.search(Search(message_control_id=d.control_id)),
     lambda d, r: [x.event_id for x in r] == [d.event_id]),
    ("document unique id (document)",
     lambda s, d: s.document(d.unique_id),
     lambda d, r: r is not None and r.event_id == d.event_id),
    ("event id (document)",
     lambda s, d: s.document(d.event_id),
     lambda d, r: r is not None and r.unique_id == d.unique_id),
    ("patient key (search)",
     lambda s, d: s.search(Search(patient_key=d.patient_key)),
     lambda d, r: d.event_id in {x.event_id for x in r} or len(r) == 50),
    ("sender + 1 h window, first page of 50 (search)",
     lambda s, d: s.search(_window(d)),
     lambda d, r: bool(r) and all(x.sender == d.sender for x in r)),
    ("journey (journey)",
     lambda s, d: s.journey(d.event_id),
     lambda d, r: len(r.steps) >= 2 and d.event_id in r.event_ids),
)  # fmt: skip

#: the console's lists (not one document: the first page of 50 older than a random document)
LISTS: tuple[tuple[str, Lookup, Check], ...] = (
    ("status dead-lettered",
     lambda s, d: s.search(Search(status="dead-lettered", until=d.received_at)),
     lambda d, r: all(x.status == "dead-lettered" for x in r)),
    ("routed to MSSANTE",
     lambda s, d: s.search(Search(destination="MSSANTE", until=d.received_at)),
     lambda d, r: all("MSSANTE" in x.destinations for x in r)),
    ("routed to NOTIFY (no document is: an empty page)",
     lambda s, d: s.search(Search(destination="NOTIFY", until=d.received_at)),
     lambda d, r: r == []),
)  # fmt: skip


@dataclass(frozen=True)
class Measured:
    name: str
    summary: Summary
    cpu_ms: float  # this process, per lookup
    pg_cpu_ms: float

    def line(self) -> str:
        s = self.summary
        verdict = "yes" if s.p99_ms < TARGET_P99_MS else "**no**"
        return (
            f"| {self.name} | {s.count:,} | {s.p50_ms:.2f} | {s.p95_ms:.2f} | **{s.p99_ms:.2f}** | "
            f"{s.max_ms:.2f} | {self.cpu_ms:.2f} | {self.pg_cpu_ms:.2f} | {verdict} |"
        )


def lookups(
    store: IndexStore,
    pg: PgServer,
    ids: Sequence[DocIds],
    count: int,
    kinds: Sequence[tuple[str, Lookup, Check]] = LOOKUPS,
) -> list[Measured]:
    rng = random.Random(1919)
    found = []
    for name, ask, check in kinds:
        for d in rng.sample(ids, WARMUP):
            ask(store, d)
        latencies, wrong = Latencies(), 0
        cpu, pg_cpu = self_cpu_s(), pg.cpu_s()
        for d in (rng.choice(ids) for _ in range(count)):
            t = time.perf_counter()
            answer = ask(store, d)
            latencies.record(time.perf_counter() - t)
            wrong += not check(d, answer)
        if wrong:
            raise SystemExit(f"{name}: {wrong} of {count} answers were wrong")
        cpu_ms = (self_cpu_s() - cpu) / count * 1000
        found.append(
            Measured(name, latencies.summary(), cpu_ms, (pg.cpu_s() - pg_cpu) / count * 1000)
        )
        progress(f"lookups: {name} p99 {found[-1].summary.p99_ms:.2f} ms")
    return found


# -- 3. the old way ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OldWay:
    how: str
    documents: int
    records: int
    summary: Summary

    def line(self) -> str:
        s = self.summary
        return (
            f"| {self.how} | {self.documents:,} | {self.records:,} | {s.count} | "
            f"{s.p50_ms:,.0f} | {s.p99_ms:,.0f} | {s.max_ms:,.0f} |"
        )


def extrapolated(old: Sequence[OldWay], documents: int) -> tuple[float, str]:
    """The broker's p50 at ``documents``: the line through the two largest sizes measured
    (time = fixed + per document x documents), or proportional from one size."""
    measured = sorted((o.documents, o.summary.p50_ms) for o in old if o.how.startswith("`read"))
    if len(measured) == 1:
        n, ms = measured[0]
        return ms * documents / n, f"proportional from {n:,}"
    (n1, t1), (n2, t2) = measured[-2:]
    slope = (t2 - t1) / (n2 - n1)
    return (t2 + slope * (documents - n2),
            f"line through {n1:,} and {n2:,}: {t1 - slope * n1:,.0f} ms + "
            f"{slope * 1000:.1f} ms per 1,000 documents")  # fmt: skip


async def old_trace(documents: int, count: int) -> OldWay:
    """``read_journey`` against a broker holding the first ``documents`` documents."""
    corpus, codec, ids = Corpus(), Codec(), list[DocIds]()
    async with fresh_broker() as broker:
        await create_topics(broker.bootstrap)
        records = await produce(broker.bootstrap, flat(corpus.journeys(0, documents), ids), codec)
        latencies = Latencies()
        for d in random.Random(7).sample(ids, count):
            t = time.perf_counter()
            found = await read_journey(broker.bootstrap, PREFIX, d.event_id, keyring=corpus.keyring)
            latencies.record(time.perf_counter() - t)
            if len(found.steps) < 2:
                raise SystemExit(f"relais trace found no journey for {d.event_id}")
    p50 = latencies.summary().p50_ms
    progress(f"old way: read_journey over {documents:,} documents p50 {p50:.0f} ms")
    return OldWay("`read_journey` (broker, tansu memory://)", documents, records,
                  latencies.summary())  # fmt: skip


def old_journey_in_memory(documents: int, count: int, store: IndexStore) -> OldWay:
    """``journey()`` alone over every record of ``documents`` documents, decoded already; each
    journey must be the one the index gives (``IndexStore.journey``)."""
    corpus, codec, ids = Corpus(), Codec(), list[DocIds]()
    kinds: dict[str, list[Any]] = {}
    for p in flat(corpus.journeys(0, documents), ids):
        kinds.setdefault(p.record_type, []).append(_body(corpus, codec, p))
    latencies = Latencies()
    for d in random.Random(7).sample(ids, count):
        t = time.perf_counter()
        found = journey(d.event_id, audits=kinds["AuditEvent"], statuses=kinds["DeliveryStatus"],
                        letters=kinds["DeadLetter"], acks=kinds["BusinessAck"])  # fmt: skip
        latencies.record(time.perf_counter() - t)
        if len(found.steps) < 2 or found != store.journey(d.event_id):
            raise SystemExit(f"journey() and the index disagree on {d.event_id}")
    records = sum(len(v) for v in kinds.values())
    p50 = latencies.summary().p50_ms
    progress(f"old way: journey() in memory over {documents:,} p50 {p50:.0f} ms (= the index's)")
    return OldWay("`journey()` alone, records in memory (lower bound)", documents, records,
                  latencies.summary())  # fmt: skip


def _body(corpus: Corpus, codec: Codec, p: Produced) -> Any:
    return (
        letter_view(codec, corpus.keyring, p.record, p.key)
        if p.record_type == "DeadLetter"
        else p.record
    )


# -- the run ----------------------------------------------------------------------------------
def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"CPython {platform.python_version()}, PostgreSQL 15; load average {load}")  # fmt: skip


def report(
    args: argparse.Namespace,
    filled: Fill,
    both: tuple[list[Measured], list[Measured]],
    old: list[OldWay],
) -> None:
    measured, lists = both
    print(f"\n## Document index lookups: {args.documents:,} documents ({machine()})\n")
    print(
        "| documents | records | fill s | documents/s | records/s | CPU µs/document (this "
        "process) | PostgreSQL CPU µs/document | of it `rows_of_all` | tables + indexes MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(filled.line())
    print(
        f"\n| lookup (one random document of {args.documents:,}) | n | p50 ms | p95 ms | p99 ms "
        "| max ms | CPU ms/lookup (client) | PostgreSQL CPU ms/lookup "
        f"| p99 < {TARGET_P99_MS:.0f} ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for m in measured:
        print(m.line())
    print("\n| console list: the first page of 50 older than a random document (search) | n "
          "| p50 ms | p95 ms | p99 ms | max ms | CPU ms/list (client) | PostgreSQL CPU ms/list "
          "| p99 < 50 ms |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for m in lists:
        print(m.line())
    if old:
        print("\n| the old way (`relais trace` before the index) | documents | records | n "
              "| p50 ms | p99 ms | max ms |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|")
        for o in old:
            print(o.line())
    journeys = next(m for m in measured if m.name.startswith("journey"))
    if any(o.how.startswith("`read") for o in old):
        at_n, how = extrapolated(old, args.documents)
        print(f"\n`read_journey` at {args.documents:,} documents, **extrapolated** ({how}): "
              f"p50 about {at_n:,.0f} ms, against {journeys.summary.p50_ms:.2f} ms for the "
              f"index's journey ({at_n / journeys.summary.p50_ms:,.0f} times less).")  # fmt: skip


def settle(url: str) -> None:
    """VACUUM ANALYZE every table once the fill is done, as autovacuum soon would: lookups
    measured while it runs in the background would measure it instead."""
    engine = sqlalchemy.create_engine(engine_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("VACUUM ANALYZE"))
    engine.dispose()


async def run(args: argparse.Namespace) -> None:
    corpus = Corpus()
    with pg_server(args.pg_bin) as pg:
        store = IndexStore(pg.url)
        store.create()
        progress(f"PostgreSQL on 127.0.0.1:{pg.port}; filling {args.documents:,} documents")
        filled = fill(store, pg, corpus, args.documents, args.batch)
        progress(f"filled in {filled.seconds:.0f} s; VACUUM ANALYZE, then lookups")
        settle(pg.url)  # what autovacuum does after a bulk load: measure the steady state
        measured = lookups(store, pg, filled.ids, args.lookups)
        lists = lookups(store, pg, filled.ids, max(args.lookups // 10, 20), LISTS)
        del filled.ids[:]
        old: list[OldWay] = []
        if args.memory_baseline:
            old.append(old_journey_in_memory(args.documents, args.baseline_lookups * 2, store))
        store.close()
    for size in args.baseline_documents:
        old.insert(-1 if old else 0, await old_trace(size, args.baseline_lookups))
    report(args, filled, (measured, lists), old)


def sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--documents", type=int, default=100_000, help="N indexed (default 100,000)"
    )
    parser.add_argument("--lookups", type=int, default=2000, help="timed lookups of each kind")
    parser.add_argument(
        "--batch", type=int, default=2000, help="records per apply (RELAIS_INDEX_BATCH)"
    )
    parser.add_argument(
        "--baseline-documents",
        type=sizes,
        default=[2000, 10_000],
        help="broker sizes for the old way, comma-separated ('' for none)",
    )
    parser.add_argument("--baseline-lookups", type=int, default=5, help="old-way lookups per size")
    parser.add_argument(
        "--no-memory-baseline",
        dest="memory_baseline",
        action="store_false",
        help="skip journey() over N documents in memory (holds ~0.7 GB)",
    )
    parser.add_argument("--pg-bin", type=Path, default=DEFAULT_BIN, help="PostgreSQL's bin folder")
    args = parser.parse_args(argv)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
