"""Does the document index keep up with the pipeline (issue 19)? The real feeder, a real
broker, a real PostgreSQL.

Run: ``.venv/bin/python -m benchmarks.index_ingest [--documents 20000] [--rate 50]
[--seconds 60] [--profile DIR]``.

A fresh tansu broker (``memory://``) gets the audit, status, dead-letter and ack topics
(12 partitions each, ``RELAIS_PARTITIONS``' default) and a fresh PostgreSQL 15 the index's
tables. Then, one after the other:

0. **baseline, the store alone**: the same M documents through ``rows_of_all`` and
   ``IndexStore.apply`` in this process, batches of ``--batch`` records, no broker and no
   feeder: what the write path can take (:func:`benchmarks.index_rig.fill`). The tables
   are then dropped and made again.
1. **catch-up**: M documents of :mod:`benchmarks.index_corpus` (about 8.3 records each, as
   the pipeline writes them) are produced onto the topics first; then the real
   :class:`ops.index.feeder.Feeder` reads them from offset 0 (``Feeder.catch_up``) and writes
   them with ``IndexStore.apply``: records/s, documents/s, and CPU seconds per 1,000 documents
   of the feeder process, of PostgreSQL (every server process, psutil) and of the broker.
2. **follow**: a new feeder process runs as ``relais index`` would (``Feeder.run``) while
   this process produces documents at a fixed rate (``--rate`` documents/s for ``--seconds``,
   each document's records sent together, ``acks=all`` and awaited, as the components do).
   Every 0.25 s the lag is read: records produced and acknowledged minus the positions the
   index has committed. Printed: the lag's max and mean (records and seconds of traffic),
   the time to drain after the last send, and the feeder's CPU per 1,000 documents.

The feeder runs in a child process (``python -m benchmarks.index_ingest feed``) so that its
CPU is its own. Its settings are the defaults (RELAIS_INDEX_BATCH 2000), its keyring opens
the dead letters' originals as in production. ``--profile DIR`` runs py-spy on it in each
phase (100 Hz, idle threads included, folded stacks; it slows the feeder a little).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from benchmarks.index_corpus import Corpus, DocIds
from benchmarks.index_rig import (
    PREFIX,
    broker_pid,
    create_topics,
    fill,
    flat,
    fresh_broker,
    produce,
    progress,
    self_cpu_s,
)  # fmt: skip
from benchmarks.pg_server import DEFAULT_BIN, PgServer, pg_server
from ops.index.feeder import Feeder
from ops.index.store import IndexStore
from relais import kafka_clients
from relais.contracts import Codec
from relais.keyring import Keyring
from relais.settings import Settings

#: the pipeline's full rate on this machine (docs/performance.md, "Where the machine
#: saturates now": `relais load --documents 2400 --rate 80`, sustained at the DMP)
PIPELINE_RATE = 41.5
SAMPLE_S = 0.25


def cpu_of(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


# -- the feeder process ------------------------------------------------------------------------
def feeder_settings(bootstrap: str, url: str) -> Settings:
    variables = {"RELAIS_BOOTSTRAP_SERVERS": bootstrap, "RELAIS_TOPIC_PREFIX": PREFIX}
    return Settings.from_env({**variables, "RELAIS_INDEX_URL": url})


async def feed(args: argparse.Namespace) -> None:
    """The child: one feeder, catching up or following until SIGTERM; prints its figures."""
    store = IndexStore(args.url)
    feeder = Feeder(
        feeder_settings(args.bootstrap, args.url), store, Keyring.from_file(args.keyring)
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    started, cpu = time.perf_counter(), self_cpu_s()
    print("ready", flush=True)
    if args.catch_up:
        await feeder.catch_up()
    else:
        await feeder.run(stop)
    seconds = time.perf_counter() - started
    store.close()
    print(json.dumps({"read": feeder.read, "seconds": seconds, "cpu_s": self_cpu_s() - cpu,
                      "undecodable": feeder.undecodable}), flush=True)  # fmt: skip


@dataclass
class Child:
    process: asyncio.subprocess.Process
    profiler: asyncio.subprocess.Process | None = None

    async def profile(self, out: Path) -> None:
        """py-spy on the feeder process (100 Hz, idle threads too: waits show) until it ends,
        as folded stacks (flamegraph.pl, inferno and speedscope read them)."""
        self.profiler = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"), "record", "--idle", "--rate", "100",
            "--format", "raw", "--output", str(out), "--pid", str(self.process.pid),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    @classmethod
    async def start(cls, bootstrap: str, url: str, keyring: Path, *, catch_up: bool) -> Child:
        command = [sys.executable, "-m", "benchmarks.index_ingest", "feed", "--bootstrap",
                   bootstrap, "--url", url, "--keyring", str(keyring)]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *command, *(["--catch-up"] if catch_up else []), stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        line = await process.stdout.readline()
        if line.strip() != b"ready":
            raise SystemExit(f"the feeder process did not start: {line!r}")
        return cls(process)

    def cpu_s(self) -> float:
        """CPU of the feeder process and its threads so far."""
        return cpu_of(self.process.pid)

    async def result(self, *, stop: bool = False) -> dict[str, float]:
        if stop:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.stdout is not None
        out = await self.process.stdout.read()
        if await self.process.wait() != 0:
            raise SystemExit(f"the feeder process failed ({self.process.returncode})")
        if self.profiler is not None:
            await self.profiler.wait()
        figures: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
        return figures


# -- 1. catch-up ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    name: str
    documents: int
    records: int
    seconds: float
    feeder_cpu_s: float  # the feeder process, or this one for the baseline
    pg_cpu_s: float
    broker_cpu_s: float

    def per_1000(self, cpu_s: float) -> float:
        return cpu_s / self.documents * 1000

    def cpu_cells(self) -> str:
        return " | ".join(
            f"{self.per_1000(x):.2f}" for x in (self.feeder_cpu_s, self.pg_cpu_s, self.broker_cpu_s)
        )

    def line(self) -> str:
        return (
            f"| {self.name} | {self.documents:,} | {self.records:,} | {self.seconds:.1f} | "
            f"{self.records / self.seconds:,.0f} | **{self.documents / self.seconds:,.0f}** | "
            f"{self.cpu_cells()} |"
        )


@dataclass(frozen=True)
class Rig:
    bootstrap: str
    broker: int | None
    pg: PgServer
    keyring: Path
    corpus: Corpus
    profile: Path | None


def alone(rig: Rig, documents: int, batch: int) -> Phase:
    """The baseline: the same documents through the store's write path in this process (no
    broker, no feeder); then the tables are emptied (dropped, made again)."""
    store = IndexStore(rig.pg.url)
    broker = cpu_of(rig.broker)
    filled = fill(store, rig.pg, Corpus(keyring=rig.corpus.keyring), documents, batch)
    store.drop()
    store.create()
    store.close()
    name = "baseline: the store alone (`apply`, this process)"
    cpu = (filled.cpu_s, filled.pg_cpu_s, cpu_of(rig.broker) - broker)
    return Phase(name, documents, filled.records, filled.seconds, *cpu)


async def catch_up(rig: Rig, documents: int) -> Phase:
    ids: list[DocIds] = []
    t = time.perf_counter()
    records = await produce(rig.bootstrap, flat(rig.corpus.journeys(0, documents), ids), Codec())
    took = time.perf_counter() - t
    progress(f"produced {records:,} records of {documents:,} documents in {took:.0f} s")
    pg, broker = rig.pg.cpu_s(), cpu_of(rig.broker)
    child = await Child.start(rig.bootstrap, rig.pg.url, rig.keyring, catch_up=True)
    if rig.profile is not None:
        await child.profile(rig.profile / "feeder-catch-up.folded")
    got = await child.result()
    if got["read"] != records or got["undecodable"]:
        raise SystemExit(f"the feeder read {got['read']} of {records} records")
    cpu = (got["cpu_s"], rig.pg.cpu_s() - pg, cpu_of(rig.broker) - broker)
    return Phase("the feeder, catching up from offset 0", documents, records, got["seconds"], *cpu)


# -- 2. follow at the pipeline's rate -----------------------------------------------------------
@dataclass
class Lag:
    produced: int = 0  # records the broker acknowledged
    documents: int = 0
    samples: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds since the first send


async def produce_at_rate(rig: Rig, first: int, rate: float, seconds: float, lag: Lag) -> float:
    """``rate`` documents a second for ``seconds``, each document's records sent together and
    awaited; returns the rate achieved."""
    codec = Codec()
    producer = kafka_clients.producer(rig.bootstrap, acks="all")
    await producer.start()
    count = int(rate * seconds)
    started = time.perf_counter()
    try:
        for i in range(count):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            _, records = rig.corpus.journey(first + i, datetime.now(UTC))
            sends = []
            for p in records:
                value = codec.encode(p.record_type, p.record)
                sends.append(await producer.send(p.spec.name(PREFIX), value, key=p.key))
            await asyncio.gather(*sends)
            lag.produced += len(records)
            lag.documents += 1
    finally:
        await producer.stop()
    return count / (time.perf_counter() - started)


async def sample_lag(store: IndexStore, base: int, lag: Lag, done: asyncio.Event) -> float:
    """Sample produced - indexed until done and drained; returns the drain time after done."""
    drained_at, started = None, time.perf_counter()
    while True:
        indexed = sum((await asyncio.to_thread(store.positions)).values()) - base
        behind = lag.produced - indexed
        lag.samples.append(behind)
        lag.times.append(time.perf_counter() - started)
        if done.is_set():
            drained_at = drained_at or time.perf_counter()
            if behind <= 0:
                return time.perf_counter() - drained_at
        await asyncio.sleep(SAMPLE_S)


@dataclass(frozen=True)
class Follow:
    phase: Phase
    offered: float  # documents/s asked
    seconds: float
    achieved: float
    lag: list[int]
    times: list[float]
    drain_s: float

    def slices(self, width_s: float = 10.0) -> str:
        """The max lag of each ``width_s`` of the run: bounded, or growing?"""
        worst: dict[int, int] = {}
        for at, behind in zip(self.times, self.lag, strict=True):
            worst[int(at // width_s)] = max(worst.get(int(at // width_s), 0), behind)
        return ", ".join(
            f"{n * width_s:.0f}-{(n + 1) * width_s:.0f} s: {worst[n]}" for n in sorted(worst)
        )

    def line(self) -> str:
        lag = sorted(self.lag)
        p95 = lag[min(len(lag) - 1, int(len(lag) * 0.95))]
        to_s = self.phase.documents / max(self.phase.records, 1) / self.achieved
        return (
            f"| {self.offered:.0f}/s for {self.seconds:.0f} s (achieved {self.achieved:.1f}) | "
            f"{self.phase.documents:,} | {self.phase.records:,} | {sum(lag) / len(lag):,.0f} "
            f"({sum(lag) / len(lag) * to_s:.1f} s) | {p95:,} ({p95 * to_s:.1f} s) | "
            f"**{lag[-1]:,}** ({lag[-1] * to_s:.1f} s) | {self.drain_s:.2f} | "
            f"{self.phase.cpu_cells()} |"
        )


async def follow(rig: Rig, first: int, rate: float, seconds: float) -> Follow:
    store = IndexStore(rig.pg.url)
    base = sum(store.positions().values())
    child = await Child.start(rig.bootstrap, rig.pg.url, rig.keyring, catch_up=False)
    if rig.profile is not None:
        await child.profile(rig.profile / "feeder-follow.folded")
    await asyncio.sleep(2.0)  # the feeder assigns its partitions and asks the positions
    pg, broker, feeder = rig.pg.cpu_s(), cpu_of(rig.broker), child.cpu_s()
    lag, done = Lag(), asyncio.Event()
    sampler = asyncio.create_task(sample_lag(store, base, lag, done))
    started = time.perf_counter()
    achieved = await produce_at_rate(rig, first, rate, seconds, lag)
    done.set()
    drain = await sampler
    wall = time.perf_counter() - started
    cpu = (child.cpu_s() - feeder, rig.pg.cpu_s() - pg, cpu_of(rig.broker) - broker)
    phase = Phase("follow", lag.documents, lag.produced, wall, *cpu)
    await child.result(stop=True)
    store.close()
    return Follow(phase, rate, seconds, achieved, lag.samples or [0], lag.times or [0.0], drain)


# -- the run ---------------------------------------------------------------------------------------
def report(baseline: Phase, caught: Phase, followed: Follow) -> None:
    rate = caught.documents / caught.seconds
    load = ", ".join(f"{x:.2f}" for x in psutil.getloadavg())
    print(f"\n## Document index ingest ({psutil.cpu_count()} CPUs; load average {load})\n")
    print("| phase | documents | records | s | records/s | documents/s | CPU s / 1,000 docs: "
          "feeder (or this process) | PostgreSQL | broker |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(baseline.line())
    print(caught.line())
    share = PIPELINE_RATE / 10  # CPU s per 1,000 documents -> % of a core at the pipeline's rate
    print(
        f"\nThe pipeline's full rate on this machine: {PIPELINE_RATE} documents/s "
        "(docs/performance.md, `relais load --documents 2400 --rate 80`). Catch-up headroom: "
        f"**{rate / PIPELINE_RATE:.1f} times** that rate. At that rate the feeder would use "
        f"{caught.per_1000(caught.feeder_cpu_s) * share:.1f} % of a core and PostgreSQL "
        f"{caught.per_1000(caught.pg_cpu_s) * share:.1f} %.\n"
    )
    print("| follow: produced at | documents | records | mean lag, records (s) | p95 lag | "
          "max lag | drain after the last send, s | CPU s / 1,000 docs: feeder | PostgreSQL "
          "| broker |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(followed.line())
    print(f"\nMax lag (records) by 10 s of the follow run: {followed.slices()}")


def keyring_file(folder: Path, keyring: Keyring) -> Path:
    path = folder / "keyring.json"
    path.write_text(keyring.to_json())
    path.chmod(0o600)
    return path


async def run(args: argparse.Namespace) -> None:
    corpus = Corpus(keyring=Keyring.generate("bench-key"))
    with (
        tempfile.TemporaryDirectory(prefix="relais-index-ingest-") as folder,
        pg_server(args.pg_bin) as pg,
    ):
        IndexStore(pg.url).create()
        keyring = keyring_file(Path(folder), corpus.keyring)
        async with fresh_broker() as broker:
            await create_topics(broker.bootstrap)
            rig = Rig(broker.bootstrap, broker_pid(broker), pg, keyring, corpus, args.profile)
            baseline = alone(rig, args.documents, args.batch)
            progress(f"the store alone: {baseline.documents / baseline.seconds:,.0f} documents/s")
            caught = await catch_up(rig, args.documents)
            progress(f"caught up: {caught.documents / caught.seconds:,.0f} documents/s")
            followed = await follow(rig, args.documents, args.rate, args.seconds)
            progress(f"follow: max lag {max(followed.lag)} records")
    report(baseline, caught, followed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("feed", help="(internal) run one feeder process")
    child.add_argument("--bootstrap", required=True)
    child.add_argument("--url", required=True)
    child.add_argument("--keyring", type=Path, required=True)
    child.add_argument("--catch-up", action="store_true")
    parser.add_argument("--documents", type=int, default=20_000, help="M, produced beforehand")
    parser.add_argument("--rate", type=float, default=50.0, help="documents/s while following")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to produce at it")
    parser.add_argument("--batch", type=int, default=2000, help="records per apply, baseline")
    parser.add_argument("--pg-bin", type=Path, default=DEFAULT_BIN, help="PostgreSQL's bin folder")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of the feeder here")
    args = parser.parse_args(argv)
    asyncio.run(feed(args) if args.command == "feed" else run(args))


if __name__ == "__main__":
    main()
