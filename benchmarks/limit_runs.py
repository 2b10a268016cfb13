"""The three timed measurements of :mod:`benchmarks.pipeline_limit`, each on a fresh broker.

- :func:`measure_claim`: L, the simplest correct program (:mod:`benchmarks.limit_claim`),
  from MLLP to the DMP sandbox;
- :func:`measure_full`: L (full documents), the records with their sealed documents inline
  burst onto the first topic and relayed 4 times (the first L);
- :func:`measure_pipeline`: the real stack (``relais mllp``, identity, transcode, route, the
  DMP sink) from MLLP to the DMP sandbox.

Each returns a :class:`Run`: documents, seconds, what the broker held, CPU per process.
See benchmarks/README.md (``pipeline_limit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from benchmarks.limit_bus import (
    Cpu,
    Message,
    Record,
    broker_pid,
    burst,
    count_arrivals,
    create_topics,
    relay_main,
    rss_mb,
    send_all,
)
from benchmarks.limit_claim import filer_main, gateway_main
from benchmarks.limit_work import sector_of
from benchmarks.mllp_ingest import PREFIX, Held, broker_contents
from ops.broker import LocalBroker
from ops.ports import free_port
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec
from relais.keyring import Keyring
from relais.topics import DEFAULT_PARTITIONS, TopicSpec
from sandboxes.dmp import client_environment, sandbox_pki, start_sandbox
from sandboxes.pki import SandboxPki

HOPS: Final = 4  # submitted -> qualified -> ready -> deliveries.dmp -> deliveries.status
Spawned = list[tuple[str, multiprocessing.process.BaseProcess]]


@dataclass(frozen=True)
class Run:
    name: str
    documents: int
    seconds: float
    held: Held
    broker_rss_mb: float | None
    cpu_s: dict[str, float]  # CPU seconds of each process over the timed phase
    entry_s: float  # first send -> last ACK (or last produce acknowledged)

    @property
    def rate(self) -> float:
        return self.documents / self.seconds


@dataclass(frozen=True)
class Timed:
    documents: int
    seconds: float
    cpu_s: dict[str, float]
    entry_s: float


@contextlib.asynccontextmanager
async def fresh_broker() -> AsyncIterator[LocalBroker]:
    broker = LocalBroker(f"127.0.0.1:{free_port()}")
    await broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def spawn(jobs: Sequence[tuple[str, Callable[..., None], tuple[Any, ...]]]) -> Spawned:
    context = multiprocessing.get_context("spawn")
    started: Spawned = [(name, context.Process(target=f, args=args)) for name, f, args in jobs]
    for _, p in started:
        p.start()
    return started


def stop(processes: Spawned) -> None:
    for _, p in processes:
        p.terminate()
    for _, p in processes:
        p.join(10)


async def listening(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return


async def hop_topics(bootstrap: str, stem: str) -> list[str]:
    hops = [TopicSpec(f"{stem}{i}.v1", DEFAULT_PARTITIONS, "hop") for i in range(HOPS + 1)]
    await create_topics(bootstrap, hops)
    return [h.name(PREFIX) for h in hops]


def prepare(work: Path) -> tuple[Path, SandboxPki]:
    """L's folder, its keyring file and the DMP sandbox's test PKI."""
    work.mkdir(parents=True, exist_ok=True)
    Keyring.generate().write(keys := work / "keyring.json")
    return keys, sandbox_pki(work / "dmp-pki")


async def measure_claim(messages: Sequence[Message], connections: int, work: Path) -> Run:
    """L: MLLP -> store once + reference -> 3 relays -> DMP filer, on a fresh broker."""
    keys, pki = prepare(work)
    runner, sandbox, dmp_port = await start_sandbox("127.0.0.1", 0, None, pki=pki)
    env = client_environment(pki, f"https://127.0.0.1:{dmp_port}/repository")
    async with fresh_broker() as broker:
        bootstrap, port, store = broker.bootstrap, free_port(), str(work / "store")
        names = await hop_topics(bootstrap, "claim")
        jobs: list[tuple[str, Callable[..., None], tuple[Any, ...]]] = [
            ("L gateway", gateway_main, (bootstrap, names[0], port, store, str(keys)))
        ]
        jobs += [(f"relay {i + 1}", relay_main, (bootstrap, *names[i : i + 2])) for i in range(3)]
        jobs.append(("L DMP filer", filer_main, (bootstrap, *names[3:], store, str(keys), env)))
        processes = spawn(jobs)
        try:
            await listening(port)
            named = [(name, p.pid) for name, p in processes if p.pid is not None]
            named.append(("broker", broker_pid(broker.listen) or 0))
            run = await _timed(messages, connections, port, bootstrap, names[-1], named)
        finally:
            stop(processes)
            await runner.cleanup()
        filed = len(sandbox.submissions)
        if filed != len(messages):
            raise RuntimeError(f"the DMP sandbox holds {filed} documents, not {len(messages)}")
        return await finish_run("L (store once, references)", broker, run)


async def _timed(
    messages: Sequence[Message],
    connections: int,
    port: int,
    bootstrap: str,
    last: str,
    named: list[tuple[str, int]],
) -> Timed:
    """One warm-up document through every hop, then the timed send of the others."""
    await send_all(port, messages[:1], 1)
    await count_arrivals(bootstrap, last, 1, 120)
    cpu = Cpu(named)
    counter = asyncio.create_task(count_arrivals(bootstrap, last, len(messages), 900))
    cpu.start()
    started = await send_all(port, messages[1:], connections)
    entered = time.monotonic()
    ended = await counter
    return Timed(len(messages) - 1, ended - started, cpu.stop(), entered - started)


async def finish_run(name: str, broker: LocalBroker, run: Timed) -> Run:
    held = await broker_contents(broker.bootstrap)
    rss = rss_mb(broker_pid(broker.listen))
    return Run(name, run.documents, run.seconds, held, rss, run.cpu_s, run.entry_s)


def full_records(raws: Sequence[bytes], keyring: Keyring) -> list[Record]:
    """``DocumentSubmitted`` records with the sealed document inline (the first L's)."""
    codec, now, out = Codec(), datetime.now(UTC), []
    for raw in raws:
        message = parse_message(raw)
        sector = sector_of(message.documents[0].type_code)
        for r in submissions(message, sector=sector, keyring=keyring, now=now):
            out.append(
                Record(r["patient"]["patient_key"].encode(), codec.encode("DocumentSubmitted", r))
            )
    return out


async def measure_full(raws: Sequence[bytes]) -> Run:
    """L (full documents): the records burst onto h0, 4 relays h0 -> h4."""
    records = full_records(raws, Keyring.generate())
    async with fresh_broker() as broker:
        bootstrap = broker.bootstrap
        names = await hop_topics(bootstrap, "h")
        jobs = [(f"relay {i + 1}", relay_main, (bootstrap, *names[i : i + 2])) for i in range(HOPS)]
        processes = spawn(jobs)
        try:
            await burst(bootstrap, names[0], records[:1])
            await count_arrivals(bootstrap, names[-1], 1, 120)
            cpu = Cpu([(name, p.pid) for name, p in processes if p.pid is not None])
            cpu.processes.append(("broker", broker_pid(broker.listen) or 0))
            counter = asyncio.create_task(count_arrivals(bootstrap, names[-1], len(records), 600))
            cpu.start()
            started = await burst(bootstrap, names[0], records[1:])
            entered = time.monotonic()
            ended = await counter
            run = Timed(len(records) - 1, ended - started, cpu.stop(), entered - started)
        finally:
            stop(processes)
        return await finish_run("L (full documents)", broker, run)
