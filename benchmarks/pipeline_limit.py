"""The full pipeline against its raw limit L, in the same run, plus per-stage costs.

Run: ``.venv/bin/python -m benchmarks.pipeline_limit [--documents N] [--workers W]``.

raw limit L
    The same ``DocumentSubmitted`` records (sealed, Avro, what the producer library
    writes) are burst into topic h0 of a fresh broker; 4 relay processes (plain
    aiokafka: consume, produce acks=all, commit; no decoding, no processing) move
    them h0 -> h1 -> h2 -> h3 -> h4: as many topic-to-topic hops as the pipeline
    (submitted -> qualified -> ready -> deliveries.dmp -> deliveries.status), one
    process per hop as the pipeline has. L = N / (first produce -> last record on h4).
pipeline
    A fresh :class:`~ops.localstack.LocalStack` (identity, transcode, route, DMP
    sink, W processes each); after one warm-up document went through, the same N
    records are burst onto documents.submitted; throughput = N / (first produce ->
    last DeliveryStatus DELIVERED).
per-stage costs
    parse (``parse_message`` of the HL7) and encrypt (AES-256-GCM seal + open of the
    document) timed here on the same messages; identity, transcode+validate, route
    and deliver from each worker's ``relais_stage_processing_seconds`` (sum / count)
    after the pipeline run. The largest mean names the slowest stage.

See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.mllp_ingest import PREFIX, Held, broker_contents, machine_info
from ops.broker import LocalBroker
from ops.load.documents import build
from ops.load.profile import Profile, Shares, plan
from ops.localstack import LocalStack, free_port, scrape
from producers.hl7.message import parse_message
from producers.publisher import MAX_REQUEST_BYTES
from producers.submission import submissions
from relais.audit_records import received
from relais.contracts import Codec
from relais.envelope import open_envelope, seal
from relais.keyring import Keyring
from relais.topics import AUDIT, DELIVERY_STATUS, SUBMITTED, TopicSpec

HOPS: Final = 4
STAGE_LABELS: Final = {
    "identity": "identity",
    "transcode": "transcode+validate",
    "route": "route",
    "dmp-sink": "deliver",
}
XSD: Final = Path("../shared/data/cda-xsd")


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes
    audit: bytes  # the RECEIVED audit the publisher writes beside it


@dataclass(frozen=True)
class Run:
    name: str
    documents: int
    seconds: float
    held: Held
    broker_rss_mb: float | None

    @property
    def rate(self) -> float:
        return self.documents / self.seconds


# ---------------------------------------------------------------------------- raw limit


def relay_main(bootstrap: str, source: str, target: str, count: int) -> None:
    asyncio.run(relay(bootstrap, source, target, count))


async def relay(bootstrap: str, source: str, target: str, count: int) -> None:
    """Move ``count`` records from ``source`` to ``target`` (acks=all), committing as it goes."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"relay-{source}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_REQUEST_BYTES,
        fetch_max_bytes=4 * MAX_REQUEST_BYTES,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_REQUEST_BYTES
    )
    await consumer.start()
    await producer.start()
    moved = 0
    try:
        while moved < count:
            batches = await consumer.getmany(timeout_ms=500)
            sends = [
                await producer.send(target, key=m.key, value=m.value)
                for batch in batches.values()
                for m in batch
            ]
            await asyncio.gather(*sends)
            if sends:
                await consumer.commit()
            moved += len(sends)
    finally:
        await producer.stop()
        await consumer.stop()


async def count_arrivals(bootstrap: str, topic: str, count: int, timeout_s: float) -> float:
    """Monotonic time at which ``count`` records have arrived on ``topic``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_REQUEST_BYTES,
        fetch_max_bytes=4 * MAX_REQUEST_BYTES,
    )
    await consumer.start()
    seen, deadline = 0, time.monotonic() + timeout_s
    try:
        while seen < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seen}/{count} records on {topic}")
            batches = await consumer.getmany(timeout_ms=200)
            seen += sum(len(b) for b in batches.values())
        return time.monotonic()
    finally:
        await consumer.stop()


async def burst(bootstrap: str, topic: str, records: Sequence[Record], audit: str | None) -> float:
    """Produce every record (and its audit) as fast as the client goes; the start time."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_REQUEST_BYTES
    )
    await producer.start()
    try:
        started = time.monotonic()
        sends = [await producer.send(topic, key=r.key, value=r.value) for r in records]
        if audit:
            sends += [await producer.send(audit, key=r.key, value=r.audit) for r in records]
        await asyncio.gather(*sends)
        return started
    finally:
        await producer.stop()


async def measure_limit(records: list[Record]) -> Run:
    broker = LocalBroker(f"127.0.0.1:{free_port()}")
    await broker.start()
    try:
        hops = [TopicSpec(f"h{i}.v1", 4, "raw relay hop") for i in range(HOPS + 1)]
        names = [h.name(PREFIX) for h in hops]
        await _create(broker.bootstrap, hops)
        spawn = multiprocessing.get_context("spawn")
        relays = [
            spawn.Process(
                target=relay_main, args=(broker.bootstrap, names[i], names[i + 1], len(records))
            )
            for i in range(HOPS)
        ]
        for p in relays:
            p.start()
        warm = records[:1]  # one record through every hop: relays joined and ready
        await burst(broker.bootstrap, names[0], warm, None)
        await count_arrivals(broker.bootstrap, names[-1], 1, 120)
        started = await burst(broker.bootstrap, names[0], records[1:], None)
        ended = await count_arrivals(broker.bootstrap, names[-1], len(records), 600)
        for p in relays:
            p.join(30)
        held = await broker_contents(broker.bootstrap)
        return Run("raw limit L", len(records) - 1, ended - started, held, _rss(broker))
    finally:
        broker.stop()


async def _create(bootstrap: str, specs: list[TopicSpec]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(s.name(PREFIX), s.partitions, 1) for s in specs])
    finally:
        await admin.close()


def _rss(broker: LocalBroker) -> float | None:
    import psutil  # noqa: PLC0415

    for child in psutil.Process().children(recursive=True):
        if "tansu" in " ".join(child.cmdline()[:1]) and broker.listen in " ".join(child.cmdline()):
            return float(child.memory_info().rss / 1e6)
    return None


# ---------------------------------------------------------------------------- the pipeline


async def count_delivered(bootstrap: str, topic: str, count: int, timeout_s: float) -> float:
    """Monotonic time at which ``count`` documents have a DELIVERED (or DUPLICATE) DMP status."""
    codec = Codec()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    done: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(done) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)}/{count} documents delivered")
            batches = await consumer.getmany(timeout_ms=200)
            for m in (m for b in batches.values() for m in b):
                _, status = codec.decode(m.value, topic=m.topic, offset=m.offset)
                if status["outcome"] in {"DELIVERED", "DUPLICATE"}:
                    done.add(status["event_id"])
        return time.monotonic()
    finally:
        await consumer.stop()


async def measure_pipeline(
    raws: list[bytes], documents: int, workers: int, work: Path
) -> tuple[Run, dict[str, tuple[float, int]]]:
    per_stage = [
        ("worker", "identity"),
        ("worker", "transcode"),
        ("worker", "route"),
        ("sink", "dmp"),
    ]
    stack = LocalStack(
        work,
        prefix=PREFIX,
        cda_xsd_dir=XSD.resolve() if XSD.is_dir() else None,
        workers=tuple(args for args in per_stage for _ in range(workers)),
    )
    async with stack:
        records = workload_records(raws, stack.keyring)
        bootstrap, status = stack.broker.bootstrap, DELIVERY_STATUS.name(PREFIX)
        submitted, audit = SUBMITTED.name(PREFIX), AUDIT.name(PREFIX)
        await burst(bootstrap, submitted, records[:1], audit)  # warm-up: every stage ready
        await count_delivered(bootstrap, status, 1, 180)
        started = await burst(bootstrap, submitted, records[1:], audit)
        ended = await count_delivered(bootstrap, status, len(records), 900)
        costs: dict[str, tuple[float, int]] = {}
        for p in stack.processes:
            for name, value in scrape(p.metrics_port).items():
                for stage, label in STAGE_LABELS.items():
                    if name == f'relais_stage_processing_seconds_sum{{stage="{stage}"}}':
                        total, n = costs.get(label, (0.0, 0))
                        costs[label] = (total + value, n)
                    if name == f'relais_stage_processing_seconds_count{{stage="{stage}"}}':
                        total, n = costs.get(label, (0.0, 0))
                        costs[label] = (total, n + int(value))
        held = await broker_contents(bootstrap)
        rss = _rss(stack.broker)
    label = f"pipeline ({workers} process(es) per stage)"
    return Run(label, documents, ended - started, held, rss), costs


def workload_records(raws: list[bytes], keyring: Keyring) -> list[Record]:
    codec, now, out = Codec(), datetime.now(UTC), []
    for raw in raws:
        message = parse_message(raw)
        sector = {"11502-2": "LAB", "18748-4": "RADIOLOGY"}.get(
            message.documents[0].type_code, "HOSPITAL"
        )
        for r in submissions(message, sector=sector, keyring=keyring, now=now):
            value = codec.encode("DocumentSubmitted", r)
            out.append(
                Record(
                    r["patient"]["patient_key"].encode(),
                    value,
                    codec.encode("AuditEvent", received(r)),
                )
            )
    return out


def micro_costs(raws: list[bytes]) -> dict[str, tuple[float, int]]:
    """parse and encrypt, timed here on the same messages (seconds in total, documents)."""
    keyring = Keyring.generate()
    started = time.perf_counter()
    contents = [parse_message(raw).documents[0].content for raw in raws]
    parse_s = time.perf_counter() - started
    started = time.perf_counter()
    for content in contents:
        event = str(uuid.uuid4())
        sealed = seal(keyring, content, event_id=event, purpose="content")
        open_envelope(keyring, sealed, event_id=event, purpose="content")
    return {
        "parse": (parse_s, len(raws)),
        "encrypt (seal + open)": (time.perf_counter() - started, len(raws)),
    }


# ---------------------------------------------------------------------------- output


def report(limit: Run, pipeline: Run, costs: dict[str, tuple[float, int]], mb: float) -> list[str]:
    lines = [
        *machine_info(),
        f"Documents: {limit.documents} timed (+1 warm-up) of the vague-1 mix (no city doctors), "
        f"{mb:.1f} MB of HL7; {HOPS} topic-to-topic hops; a fresh broker (tansu, memory://) "
        "per measurement.",
        "",
        "| measurement | documents | seconds | documents/s | ratio to L | broker held "
        "(records / MB) | broker RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in (limit, pipeline):
        rss = f"{run.broker_rss_mb:.0f}" if run.broker_rss_mb else "?"
        lines.append(
            f"| {run.name} | {run.documents} | {run.seconds:.2f} | {run.rate:.1f} | "
            f"{run.rate / limit.rate:.3f} | {run.held.records} / {run.held.bytes / 1e6:.1f} | "
            f"{rss} |"
        )
    lines += ["", "| stage | mean ms per document | documents | measured |", "|---|---|---|---|"]
    means = {name: 1000 * total / n for name, (total, n) in costs.items() if n}
    for name, mean in sorted(means.items(), key=lambda kv: -kv[1]):
        how = (
            "here, same messages"
            if name.startswith(("parse", "encrypt"))
            else ("relais_stage_processing_seconds")
        )
        lines.append(f"| {name} | {mean:.2f} | {costs[name][1]} | {how} |")
    slowest = max(means, key=lambda k: means[k])
    lines += [
        "",
        f"Pipeline = {pipeline.rate / limit.rate:.3f} L. Slowest stage: **{slowest}** "
        f"({means[slowest]:.1f} ms of work per document, one process).",
    ]
    return lines


async def run(documents: int, workers: int) -> None:
    work = Path(".relais") / f"bench-pipeline-{time.strftime('%Y%m%d-%H%M%S')}"
    docs = plan(Profile(documents=documents + 1, rate=1000.0, shares=Shares(0, 0, 0), seed=9))
    raws = []
    for doc in docs:
        raw = build(doc).hl7
        assert raw is not None
        raws.append(raw)
    print(f"built {len(raws)} messages; measuring the raw limit L", flush=True)
    limit = await measure_limit(workload_records(raws, Keyring.generate()))
    print(f"L = {limit.rate:.1f} documents/s; now the pipeline", flush=True)
    pipeline, costs = await measure_pipeline(raws, documents, workers, work.resolve())
    costs.update(micro_costs(raws[1:]))
    mb = sum(len(r) for r in raws[1:]) / 1e6
    print("\n".join(report(limit, pipeline, costs, mb)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=200, help="timed documents (default 200)")
    parser.add_argument("--workers", type=int, default=1, help="processes per stage (default 1)")
    args = parser.parse_args(argv)
    asyncio.run(run(args.documents, args.workers))


if __name__ == "__main__":
    main()
