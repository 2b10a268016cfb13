"""ZAMs go back over mutual TLS to a producer's MLLP/TLS listener (a real gateway), routed
``FACILITY=host:port/tls`` with RELAIS_ACK_CA_FILE and RELAIS_ACK_CLIENT_CERT/_KEY; a wrong
CA or a missing client certificate fails with a line that names the setting to check."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from consumers.dmp.business_ack import business_ack
from ops.localstack import LocalStack
from producers.mllp.ack_forwarder import AckForwarder, send_mllp, unreachable
from producers.mllp.ack_routes import routes_from
from producers.mllp.gateway import GatewayConfig, MllpGateway, server_tls_context
from relais.contracts import Codec
from relais.keyring import Keyring
from relais.settings import AckSettings
from relais.topic_admin import ensure_topics
from relais.topics import BUSINESS_ACKS
from tests.integration.mllp_pki import Issued, TestCa

CODEC = Codec()
ANSWER = b"MSH|^~\\&|DPI|CHU-X|RELAIS|RELAIS|20261122||ACK|A1|P|2.6\rMSA|AA|x\r"


class Producer:
    """The producer's interface engine behind its MLLP listener: takes every message."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def __call__(self, payload: bytes) -> bytes:
        self.received.append(payload)
        return ANSWER


@dataclass
class Listener:
    port: int
    producer: Producer
    producer_ca: TestCa  # issued the listener's server certificate
    relais: Issued  # Relais's client certificate, from the CA the listener trusts


@pytest.fixture(scope="module")
async def listener(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Listener]:
    """A real MLLP gateway over TLS requiring a client certificate from the senders' CA."""
    folder = Path(tmp_path_factory.mktemp("ack-pki"))
    producer_ca, senders_ca = TestCa(folder, "producer"), TestCa(folder, "senders")
    server = producer_ca.server()
    tls = server_tls_context(server.cert, server.key, client_ca=senders_ca.cert)
    producer = Producer()
    gateway = MllpGateway(GatewayConfig(port=0, tls=tls), producer)
    port = await gateway.start()
    try:
        yield Listener(port, producer, producer_ca, senders_ca.client("relais-ack-forwarder"))
    finally:
        await gateway.stop()


def settings(listener: Listener, ca: Path, *, client: bool = True) -> AckSettings:
    return AckSettings(
        routes=f"CHU-X=127.0.0.1:{listener.port}/tls",
        ca_file=ca,
        client_cert=listener.relais.cert if client else None,
        client_key=listener.relais.key if client else None,
    )


async def publish_zam(bootstrap: str, prefix: str, control_id: str) -> None:
    request = {
        "event_id": f"ev-{control_id}",
        "request_id": f"rq-{control_id}",
        "source": {"facility": "CHU-X", "application": "DPI", "message_control_id": control_id},
        "flags": {"ACK_RECEPTION": True},
    }
    record = business_ack(request, kind="Z01", accepted=True, now=datetime.now(UTC))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        value = CODEC.encode("BusinessAck", record)
        await producer.send_and_wait(BUSINESS_ACKS.name(prefix), value, key=b"k", partition=0)
    finally:
        await producer.stop()


async def run_forwarder(forwarder: AckForwarder, done: Callable[[], bool], seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(forwarder.run(stop))
    deadline = time.monotonic() + seconds
    try:
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task


async def test_zam_goes_over_mutual_tls_and_a_wrong_ca_fails_clearly(
    stack: LocalStack, listener: Listener, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, prefix = stack.broker.bootstrap, f"z{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, prefix)
    await publish_zam(bootstrap, prefix, "TLS-1")
    keyring = Keyring.generate()
    # A CA that did not issue the producer's certificate: retried, never delivered, and
    # the warning says which setting to check.
    stranger = TestCa(tmp_path, "stranger")
    wrong = routes_from(settings(listener, stranger.cert))
    with caplog.at_level(logging.WARNING, logger="producers.mllp.ack_forwarder"):
        forwarder = AckForwarder(
            bootstrap=bootstrap, prefix=prefix, keyring=keyring, routes=wrong, timeout_s=5
        )
        await run_forwarder(forwarder, lambda: "RELAIS_ACK_CA_FILE" in caplog.text, 30)
    assert listener.producer.received == []
    assert "producer CHU-X at 127.0.0.1:" in caplog.text
    assert "its server certificate was not accepted" in caplog.text
    assert "RELAIS_ACK_CA_FILE" in caplog.text
    # The producer's CA: delivered over mutual TLS (the listener demands the certificate).
    right = routes_from(settings(listener, listener.producer_ca.cert))
    forwarder = AckForwarder(
        bootstrap=bootstrap, prefix=prefix, keyring=keyring, routes=right, timeout_s=5
    )
    await run_forwarder(forwarder, lambda: bool(listener.producer.received), 60)
    [zam] = listener.producer.received
    assert zam.startswith(b"MSH|^~\\&|RELAIS|RELAIS|DPI|CHU-X|")
    assert b"TLS-1" in zam


async def test_without_the_client_certificate_the_listener_refuses(listener: Listener) -> None:
    [endpoint] = routes_from(settings(listener, listener.producer_ca.cert, client=False)).values()
    received = len(listener.producer.received)
    # TLS 1.3: the handshake ends on the client's side first, the server's alert comes next
    with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
        await send_mllp(endpoint, b"MSH|^~\\&|RELAIS|RELAIS|DPI|CHU-X|x||ZAM|1|P|2.5\r", 5)
    assert "RELAIS_ACK_CLIENT_CERT" in unreachable("CHU-X", endpoint, refused.value)
    assert len(listener.producer.received) == received
