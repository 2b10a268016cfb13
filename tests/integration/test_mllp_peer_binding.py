"""Mutual TLS binds each MLLP client certificate to the MSH-4 it may send as, on real TLS
sockets, the production handler (Ingest + Publisher) and the real broker: a certificate
sending for another facility gets AR with an ERR, and nothing of it reaches the bus."""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.localstack import LocalStack
from producers.ingest import Ingest
from producers.mllp.framing import MllpDecoder, frame
from producers.mllp.gateway import MllpGateway
from producers.mllp.metrics import PrometheusGatewayObserver, PrometheusIngestObserver
from producers.mllp.service import gateway_config
from producers.publisher import Publisher
from relais.metrics import REGISTRY
from relais.settings import MllpSettings
from relais.topic_admin import ensure_topics
from relais.topics import DEADLETTER, IDENTITY_EVENTS
from tests.integration.mllp_pki import Issued, TestCa
from tests.integration.test_mllp_ingest import field, records
from tests.shared_data import shared

ADMISSION = shared("hl7v2", "ADT_A01_PAMFR_INS_admission.er7").read_bytes()
INS = b"279035121518989"  # the sample patient's: never in a log
HUB = "interface.chu-y.fr"


def admission(facility: str, control_id: str) -> bytes:
    """The ANS admission sample sent by ``facility`` (MSH-4), as a production message."""
    assert b"|GAM|CHU-X|" in ADMISSION
    assert b"|3975|D|" in ADMISSION
    raw = ADMISSION.replace(b"|GAM|CHU-X|", f"|GAM|{facility}|".encode())
    return raw.replace(b"|3975|D|", f"|{control_id}|P|".encode())


@dataclass
class Pki:
    ca: TestCa
    server: Issued
    clients: dict[str, Issued]

    def client_context(self, common_name: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca.cert)
        issued = self.clients[common_name]
        context.load_cert_chain(issued.cert, issued.key)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = TestCa(Path(tmp_path_factory.mktemp("mllp-pki")))
    clients = {name: ca.client(name) for name in ("CHU-X", HUB)}
    return Pki(ca, ca.server(), clients)


@dataclass
class Gateway:
    port: int
    prefix: str
    bootstrap: str


@pytest.fixture(scope="module")
async def gateway(stack: LocalStack, pki: Pki) -> AsyncIterator[Gateway]:
    """The gateway as ``relais mllp`` configures it from RELAIS_MLLP_* settings."""
    prefix = f"b{uuid.uuid4().hex[:8]}"
    bootstrap = stack.broker.bootstrap
    await ensure_topics(bootstrap, prefix)
    settings = MllpSettings(
        port=0,
        workers=0,
        tls_cert=pki.server.cert,
        tls_key=pki.server.key,
        client_ca=pki.ca.cert,
        peer_facilities=f"{HUB}=CHU-Y|CHU-Y-LAB",
    )
    config = gateway_config(settings)
    assert config.binding is not None
    publisher = Publisher(bootstrap=bootstrap, keyring=stack.keyring, topic_prefix=prefix)
    await publisher.start()
    handler = Ingest(publisher, observer=PrometheusIngestObserver())
    server = MllpGateway(config, handler, PrometheusGatewayObserver())
    port = await server.start()
    try:
        yield Gateway(port, prefix, bootstrap)
    finally:
        await server.stop()
        await publisher.stop()


async def send(port: int, tls: ssl.SSLContext, *messages: bytes) -> list[bytes]:
    """Send ``messages`` on one mutual-TLS connection; their ACKs, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        decoder, acks = MllpDecoder(1 << 20), list[bytes]()
        for sent, message in enumerate(messages, start=1):
            writer.write(frame(message))
            await writer.drain()
            while len(acks) < sent:
                data = await asyncio.wait_for(reader.read(65536), 15)
                if not data:
                    raise ConnectionError("the gateway closed the connection before the ACK")
                acks += decoder.feed(data)
        return acks
    finally:
        writer.close()


def refused() -> float:
    labels = {"reason": "peer-not-bound"}
    return REGISTRY.get_sample_value("relais_mllp_frame_rejections_total", labels) or 0.0


async def test_a_certificate_sends_for_its_cn_only(
    gateway: Gateway, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    before = refused()
    with caplog.at_level(logging.DEBUG):
        own, other = await send(
            gateway.port,
            pki.client_context("CHU-X"),
            admission("CHU-X", "OWN-1"),
            admission("CHU-Y", "OTHER-1"),
        )
    assert (field(own, "MSA", 1), field(own, "MSA", 2)) == ("AA", "OWN-1")
    assert (field(other, "MSA", 1), field(other, "MSA", 2)) == ("AR", "OTHER-1")
    assert field(other, "ERR", 2) == "MSH^1^4"
    assert field(other, "ERR", 3).startswith("207^")
    assert "certificate CN=CHU-X may send for MSH-4 CHU-X only, not CHU-Y" in field(other, "ERR", 8)
    assert refused() == before + 1
    # only the message of its own facility reached the bus; the other not even a dead letter
    events = await records(gateway.bootstrap, IDENTITY_EVENTS.name(gateway.prefix), 2, timeout=5)
    assert len(events) == 1
    assert await records(gateway.bootstrap, DEADLETTER.name(gateway.prefix), 1, timeout=2) == []
    [line] = [r.getMessage() for r in caplog.records if "refused (AR)" in r.getMessage()]
    assert "OTHER-1" in line
    assert "CN=CHU-X" in line
    assert "CHU-Y" in line
    assert INS.decode() not in caplog.text
    assert "PAT-TROIS" not in caplog.text


async def test_a_mapped_certificate_sends_for_its_listed_facilities(
    gateway: Gateway, pki: Pki
) -> None:
    before = refused()
    lab, site, elsewhere, own_cn = await send(
        gateway.port,
        pki.client_context(HUB),
        admission("CHU-Y-LAB", "HUB-1"),
        admission("CHU-Y^1.2.250.1.71.4.2.2^ISO", "HUB-2"),  # HD.1 is what is bound
        admission("CHU-X", "HUB-3"),
        admission(HUB, "HUB-4"),  # listed: its CN alone no longer counts
    )
    assert [field(ack, "MSA", 1) for ack in (lab, site, elsewhere, own_cn)] == [
        "AA",
        "AA",
        "AR",
        "AR",
    ]
    assert f"CN={HUB} may send for MSH-4 CHU-Y, CHU-Y-LAB only, not CHU-X" in field(
        elsewhere, "ERR", 8
    )
    assert refused() == before + 2


async def test_a_certificate_from_another_ca_is_refused_at_the_handshake(
    gateway: Gateway, tmp_path: Path, pki: Pki
) -> None:
    stranger = TestCa(tmp_path, "stranger")
    issued = stranger.client("CHU-X")
    context = ssl.create_default_context(cafile=pki.ca.cert)
    context.load_cert_chain(issued.cert, issued.key)
    # TLS 1.2 fails the handshake; TLS 1.3 lets the client finish, then closes unanswered
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await send(gateway.port, context, admission("CHU-X", "STRANGER-1"))
