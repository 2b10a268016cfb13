"""HL7 v2 over a real MLLP connection onto the real broker: ACKs, bus records, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer

from ops.demo import samples
from ops.localstack import LocalStack
from producers.ingest import Ingest
from producers.mllp.framing import MllpDecoder, frame
from producers.mllp.gateway import GatewayConfig, MllpGateway
from producers.mllp.metrics import PrometheusGatewayObserver, PrometheusIngestObserver
from producers.publisher import Publisher
from relais.contracts import Codec
from relais.envelope import Envelope, open_envelope
from relais.metrics import REGISTRY
from relais.topic_admin import ensure_topics
from relais.topics import DEADLETTER, IDENTITY_EVENTS, SUBMITTED, TEST_DOCUMENTS
from tests.shared_data import shared

CODEC = Codec()
MAX_FRAME = 8 << 20


@dataclass
class Gateway:
    port: int
    prefix: str
    stack: LocalStack


@pytest.fixture(scope="module")
async def gateway(stack: LocalStack) -> AsyncIterator[Gateway]:
    prefix = f"m{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.broker.bootstrap, prefix)
    publisher = Publisher(
        bootstrap=stack.broker.bootstrap, keyring=stack.keyring, topic_prefix=prefix
    )
    await publisher.start()
    config = GatewayConfig(port=0, max_frame_bytes=MAX_FRAME, idle_timeout_s=3.0)
    server = MllpGateway(
        config, Ingest(publisher, observer=PrometheusIngestObserver()), PrometheusGatewayObserver()
    )
    port = await server.start()
    try:
        yield Gateway(port, prefix, stack)
    finally:
        await server.stop()
        await publisher.stop()


async def exchange(
    port: int, payload: bytes, *, chunk: int | None = None, pause_s: float = 0.0
) -> list[bytes]:
    """Send one framed message (optionally trickled) and read the ACKs until close/timeout."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = frame(payload)
    step = chunk or len(data)
    for start in range(0, len(data), step):
        writer.write(data[start : start + step])
        await writer.drain()
        if pause_s:
            await asyncio.sleep(pause_s)
    acks = await read_acks(reader, expected=1)
    writer.close()
    return acks


async def read_acks(
    reader: asyncio.StreamReader, expected: int, timeout: float = 15
) -> list[bytes]:
    decoder = MllpDecoder(1 << 20)
    acks: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(acks) < expected and loop.time() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
        except TimeoutError:
            break
        if not chunk:
            break
        acks += decoder.feed(chunk)
    return acks


def field(ack: bytes, segment: str, number: int) -> str:
    for line in ack.decode().split("\r"):
        if line.startswith(segment + "|"):
            parts = line.split("|")
            return parts[number] if len(parts) > number else ""
    return ""


async def records(bootstrap: str, topic: str, count: int, timeout: float = 20) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found) < count and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                found += [CODEC.decode(m.value)[1] for m in batch]
    finally:
        await consumer.stop()
    return found


def traits(stack: LocalStack, record: dict) -> dict:
    plain = open_envelope(
        stack.keyring,
        Envelope.from_record(record["patient"]["identity"]),
        event_id=record["event_id"],
        purpose="identity",
    )
    return dict(json.loads(plain))


def pid3_ins(raw: bytes) -> tuple[str, str]:
    """INS and OID as the sample file writes them in PID-3 (the expected values)."""
    match = re.search(rb"\|(\d{15})\^\^\^[^&|]*&([0-9.]+)&ISO\^INS", raw)
    assert match, "sample has no INS in PID-3"
    return match[1].decode(), match[2].decode()


SAMPLES = {
    # file: (ACK MSH-9, documents, sector, type code, action)
    "ORU_R01_CR-BIO_N1+N3_initial_placeholder.hl7": ("ACK^R01^ACK", 2, "LAB", "11502-2", "SUBMIT"),
    "ORU_R01_CR-BIO_N1+N3_delete_placeholder.er7": ("ACK^R01^ACK", 2, "LAB", "11502-2", "DELETE"),
    "MDM_T02_CR-IMG_N1_initial_placeholder.er7": (
        "ACK^T02^ACK",
        1,
        "RADIOLOGY",
        "18748-4",
        "SUBMIT",
    ),
    "MDM_T04_CR-IMG_N1_delete_placeholder.er7": (
        "ACK^T04^ACK",
        1,
        "RADIOLOGY",
        "18748-4",
        "DELETE",
    ),
}


#: What the door says of each ANS sample: they carry placeholders instead of documents,
#: and two break the volet's own rules (MSSanté combination, INS digits vs traits).
SAMPLE_REFUSALS = {
    "ORU_R01_CR-BIO_N1+N3_initial_placeholder.hl7": ("OBX-5", "well-formed"),
    "ORU_R01_CR-BIO_N1+N3_delete_placeholder.er7": ("OBX-5", "well-formed"),
    "MDM_T02_CR-IMG_N1_initial_placeholder.er7": ("OBX", "to the professionals only"),
    "MDM_T04_CR-IMG_N1_delete_placeholder.er7": ("PID-3", "sex digit of the matricule"),
}


async def test_ans_document_samples_are_read_and_refused_before_the_ack_with_the_reason(
    gateway: Gateway,
) -> None:
    """The door reads each official sample (ACK type, MSA-2) and refuses what it carries
    with the rule it breaks, before any AA: nothing of them reaches the bus."""
    for name, (ack_type, _, _, _, _) in SAMPLES.items():
        raw = shared("hl7v2", name).read_bytes()
        [ack] = await exchange(gateway.port, raw)
        location, reason = SAMPLE_REFUSALS[name]
        assert field(ack, "MSA", 1) == "AE", (name, ack)
        assert field(ack, "MSH", 8) == ack_type
        assert field(ack, "MSA", 2) == raw.split(b"|")[9].decode()
        assert field(ack, "ERR", 2).split("^")[0] == location.split("-")[0], (name, ack)
        assert reason in ack.decode(), (name, ack)
    bootstrap = gateway.stack.broker.bootstrap
    assert await records(bootstrap, SUBMITTED.name(gateway.prefix), 1, timeout=3) == []


async def test_test_messages_go_to_the_test_topic_and_never_to_a_stage(gateway: Gateway) -> None:
    """MSH-11 D (the ANS sample as it is): accepted, on the test topic, not on the identity
    events a real patient's record is built from."""
    raw = shared("hl7v2", "ADT_A01_PAMFR_INS_admission.er7").read_bytes()
    [ack] = await exchange(gateway.port, raw)
    assert field(ack, "MSA", 1) == "AA"
    bootstrap = gateway.stack.broker.bootstrap
    [update] = await records(bootstrap, TEST_DOCUMENTS.name(gateway.prefix), 1)
    assert update["trigger"] == "A01"
    assert await records(bootstrap, IDENTITY_EVENTS.name(gateway.prefix), 1, timeout=3) == []


async def test_ans_admission_becomes_an_identity_event(gateway: Gateway) -> None:
    raw = shared("hl7v2", "ADT_A01_PAMFR_INS_admission.er7").read_bytes()
    production = raw.replace(b"|3975|D|", b"|3975|P|")  # the sample is a debug message
    [ack] = await exchange(gateway.port, production)
    assert field(ack, "MSA", 1) == "AA"
    [update] = await records(
        gateway.stack.broker.bootstrap, IDENTITY_EVENTS.name(gateway.prefix), 1
    )
    assert update["trigger"] == "A01"
    assert update["kind"] == "UPDATE"
    assert update["patient"]["reliability"] == "VALI"
    assert traits(gateway.stack, update)["ins"] == "279035121518989"


#: A message the door accepts: a demo MDM^T02 with a valid CDA (LF-separated, as the
#: mutations below expect).
GOOD = samples.sample(samples.LETTER, samples.DOMINIQUE, 1).replace(b"\r", b"\n")


def refused(code: str) -> float:
    """All messages refused with ``code``, whatever the reason."""
    return sum(
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "relais_producer_messages_refused"
        for s in metric.samples
        if s.name.endswith("_total") and s.labels.get("ack_code") == code
    )


def accepted(sender: str) -> float:
    """Messages accepted from ``sender`` (MSH-4), whatever their sector and type."""
    return sum(
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "relais_producer_messages_accepted"
        for s in metric.samples
        if s.name.endswith("_total") and s.labels.get("sender") == sender
    )


def rejections(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("relais_mllp_frame_rejections_total", {"reason": reason}) or 0.0
    )


@pytest.mark.parametrize(
    ("name", "mutate", "err3", "location"),
    [
        (
            "missing PID",
            lambda raw: b"\n".join(seg for seg in raw.split(b"\n") if not seg.startswith(b"PID")),
            "101",
            "PID",
        ),
        ("bad MSH-9", lambda raw: raw.replace(b"|MDM^T02^MDM_T02|", b"|MDM|", 1), "200", "MSH"),
        (
            "unknown type",
            lambda raw: raw.replace(b"|MDM^T02^MDM_T02|", b"|ORM^O01^ORM_O01|", 1),
            "200",
            "MSH",
        ),
        (
            "wrong charset bytes",
            lambda raw: raw.replace(b"PAT-TROIS", "PAT-TRÖIS".encode("latin-1"), 1),
            "102",
            "MSH",
        ),
    ],
)
async def test_bad_messages_get_an_ae_naming_the_field_and_a_dead_letter(
    gateway: Gateway, name: str, mutate: object, err3: str, location: str
) -> None:
    raw = mutate(GOOD)  # type: ignore[operator]
    refused_before = refused("AE")
    [ack] = await exchange(gateway.port, raw)
    assert field(ack, "MSA", 1) == "AE", name
    assert field(ack, "ERR", 3).split("^")[0] == err3, (name, ack)
    assert field(ack, "ERR", 2).startswith(location), (name, ack)
    # The gateway keeps serving: the good message right after is accepted.
    accepted_before = accepted("RELAIS-DEMO")
    [ok] = await exchange(gateway.port, GOOD)
    assert field(ok, "MSA", 1) == "AA"
    assert accepted("RELAIS-DEMO") == accepted_before + 1  # counted under its sender (MSH-4)
    digest = hashlib.sha256(raw).hexdigest()
    ours: list[dict] = []
    for _ in range(20):  # the dead-letter topic accumulates: find this message's letter
        letters = await records(
            gateway.stack.broker.bootstrap, DEADLETTER.name(gateway.prefix), 99, timeout=1
        )
        ours = [x for x in letters if x["original_sha256"] == digest]
        if ours:
            break
    assert [(x["stage"], x["reason_code"]) for x in ours] == [("mllp", f"hl7-{err3}")]
    assert refused("AE") == refused_before + 1


async def test_oversized_truncated_garbage_and_slow_senders(gateway: Gateway) -> None:
    before = {r: rejections(r) for r in ("oversized", "truncated", "junk")}
    # 10 MB message over an 8 MB limit: AE (resending fails again), then the connection closes.
    big = GOOD.replace(b"^Base64^", b"^Base64^" + b"A" * (10 << 20), 1)
    [nak] = await exchange(gateway.port, big, chunk=1 << 20)
    assert field(nak, "MSA", 1) == "AE"
    # Truncated frame: start block, half a message, then the sender goes away.
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"\x0b" + GOOD[:100])
    await writer.drain()
    writer.close()
    # Binary garbage outside any frame.
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(bytes(range(256)) * 4)
    await writer.drain()
    writer.close()
    # Slow sender: 200-byte pieces, 50 ms apart, under the 3 s idle timeout.
    [slow] = await exchange(gateway.port, GOOD, chunk=200, pause_s=0.05)
    assert field(slow, "MSA", 1) == "AA"
    await asyncio.sleep(0.5)
    assert rejections("oversized") == before["oversized"] + 1
    assert rejections("truncated") >= before["truncated"] + 1
    assert rejections("junk") >= before["junk"] + 1
