"""ZAMs go back to the producers' MLLP listeners: delivered, retried, or dead-lettered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers.dmp.business_ack import business_ack
from ops.broker import LocalBroker
from ops.ports import free_port
from producers.mllp.ack_forwarder import AckForwarder
from producers.mllp.ack_routes import Endpoint
from producers.mllp.framing import MllpDecoder, frame
from relais.contracts import Codec
from relais.keyring import Keyring
from relais.metrics import REGISTRY
from relais.topic_admin import ensure_topics
from relais.topics import BUSINESS_ACKS, DEADLETTER

PREFIX = "acks"
CODEC = Codec()


class Producer:
    """A hospital interface engine's MLLP listener: answers each message with the next code."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.received: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MllpDecoder(1 << 20)
        while data := await reader.read(65536):
            for message in decoder.feed(data):
                self.received.append(message)
                code = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
                ack = f"MSH|^~\\&|DPI|CHU-X|RELAIS|RELAIS|20261122||ACK|A{len(self.received)}|P|2.6\rMSA|{code}|x\r"
                writer.write(frame(ack.encode()))
                await writer.drain()
        writer.close()


@pytest.fixture(scope="module")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    log = Path(tmp_path_factory.mktemp("acks")) / "broker.log"
    async with LocalBroker(f"127.0.0.1:{free_port()}", log_path=log) as local:
        await ensure_topics(local.bootstrap, PREFIX)
        yield local.bootstrap


def _ack(facility: str, control_id: str) -> bytes:
    request = {
        "event_id": f"ev-{control_id}",
        "request_id": f"rq-{control_id}",
        "source": {"facility": facility, "application": "DPI", "message_control_id": control_id},
        "flags": {"ACK_RECEPTION": True},
    }
    record = business_ack(request, kind="Z01", accepted=True, now=datetime.now(UTC))
    return CODEC.encode("BusinessAck", record)


async def _dead_letters(bootstrap: str) -> list[dict[str, object]]:
    consumer = AIOKafkaConsumer(
        DEADLETTER.name(PREFIX),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=1500)
    finally:
        await consumer.stop()
    return [CODEC.decode(m.value)[1] for b in batches.values() for m in b]


async def test_zams_are_delivered_retried_or_dead_lettered(broker: str) -> None:
    hospital = Producer(["AR", "AA"])  # busy once, then takes everything
    refusing = Producer(["AE"])
    servers = [
        await asyncio.start_server(hospital.handle, "127.0.0.1", 0),
        await asyncio.start_server(refusing.handle, "127.0.0.1", 0),
    ]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    routes = {"CHU-X": Endpoint("127.0.0.1", ports[0]), "LABO-Z": Endpoint("127.0.0.1", ports[1])}
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    for facility, control_id in (
        ("CHU-X", "MSG1"),
        ("CHU-X", "MSG2"),
        ("NOWHERE", "MSG3"),
        ("LABO-Z", "MSG4"),
    ):
        await producer.send_and_wait(
            BUSINESS_ACKS.name(PREFIX), _ack(facility, control_id), key=b"k", partition=0
        )
    await producer.stop()
    forwarder = AckForwarder(
        bootstrap=broker, prefix=PREFIX, keyring=Keyring.generate(), routes=routes, timeout_s=5
    )
    stop = asyncio.Event()
    task = asyncio.create_task(forwarder.run(stop))
    try:
        deadline = time.monotonic() + 60
        while len(hospital.received) < 3 or not refusing.received:
            assert time.monotonic() < deadline, "the ZAMs did not arrive"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await task
        for server in servers:
            server.close()
    # MSG1 was answered AR, then sent again and taken; MSG2 taken at once
    sent = [m.split(b"\r")[2].split(b"|")[4] for m in hospital.received]
    assert sent == [b"MSG1", b"MSG1", b"MSG2"]
    assert all(m.startswith(b"MSH|^~\\&|RELAIS|RELAIS|DPI|CHU-X|") for m in hospital.received)
    letters = {
        str(letter["reason_code"]): str(letter["reason"]) for letter in await _dead_letters(broker)
    }
    assert "NOWHERE" in letters["no-ack-route"]
    assert "RELAIS_ACK_ROUTES" in letters["no-ack-route"]
    assert "MSA-1 AE" in letters["ack-refused"]
    delivered = REGISTRY.get_sample_value(
        "relais_business_acks_total", {"kind": "Z01", "outcome": "delivered"}
    )
    assert (delivered or 0) >= 2
