"""The MLLP gateway over real sockets on 127.0.0.1: framing, ordering, limits, TLS, metrics.

The handler here is a small test double for the Kafka-publishing one: it parses
with ``parse_message`` and answers AA, or AE with what ``read_header`` could read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from producers.hl7.ack import build_ack
from producers.hl7.errors import Hl7Error
from producers.hl7.message import parse_message
from producers.mllp.framing import MllpDecoder, frame
from producers.mllp.gateway import (
    GatewayConfig,
    MllpGateway,
    ack_code_of,
    server_tls_context,
)
from producers.mllp.metrics import PrometheusGatewayObserver
from relais.metrics import REGISTRY

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = (REPO / "tests" / "fixtures" / "hl7" / "oru_r01_cda_initial.hl7").read_bytes()
NOW = dt.datetime(2024, 3, 1, 10, 15, 30, tzinfo=dt.UTC)
DEADLINE_S = 10.0


def message(control_id: str) -> bytes:
    assert b"|CTRL-0001|" in TEMPLATE
    return TEMPLATE.replace(b"|CTRL-0001|", f"|{control_id}|".encode())


def segment(ack: bytes, name: str) -> list[str]:
    for line in ack.decode("utf-8").split("\r"):
        if line.startswith(name + "|"):
            return line.split("|")
    raise AssertionError(f"no {name} in the ACK")


def msa(ack: bytes) -> tuple[str, str]:
    fields = segment(ack, "MSA")
    return fields[1], fields[2]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(check: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


class AckHandler:
    """Parses, optionally waits on ``gate``, answers AA/AE; counts calls and completions."""

    def __init__(self) -> None:
        self.started = 0
        self.completed = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self, payload: bytes) -> bytes:
        self.started += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("handler bug")
        try:
            parsed = parse_message(payload)
            ack = build_ack(parsed, payload, code="AA", control_id="A1", now=NOW)
        except Hl7Error as exc:
            ack = build_ack(None, payload, code="AE", error=exc, control_id="A1", now=NOW)
        self.completed += 1
        return ack


class Client:
    """An MLLP sender: writes frames, reads ACKs with the same decoder as the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = MllpDecoder(1 << 20)
        self.acks: list[bytes] = []

    @classmethod
    async def connect(
        cls, port: int, tls: ssl.SSLContext | None = None, source: str | None = None
    ) -> Client:
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls, local_addr=local)
        return cls(reader, writer)

    async def send(self, *payloads: bytes) -> None:
        self.writer.write(b"".join(frame(p) for p in payloads))
        await self.writer.drain()

    async def read_acks(self, count: int, timeout: float = DEADLINE_S) -> list[bytes]:
        async with asyncio.timeout(timeout):
            while len(self.acks) < count:
                data = await self.reader.read(65536)
                assert data, f"connection closed after {len(self.acks)} of {count} ACKs"
                self.acks += self.decoder.feed(data)
        return self.acks[:count]

    async def expect_close(self, timeout: float = DEADLINE_S) -> None:
        """Wait for the server to close (EOF or reset), keeping any ACK still due."""
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while data := await self.reader.read(65536):
                    self.acks += self.decoder.feed(data)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@dataclass
class Running:
    gateway: MllpGateway
    port: int
    handler: AckHandler


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[Start]:
    gateways: list[MllpGateway] = []

    async def start(**config: Any) -> Running:
        handler = AckHandler()
        settings = GatewayConfig(**{"port": 0, **config})
        gateway = MllpGateway(settings, handler, PrometheusGatewayObserver())
        gateways.append(gateway)
        return Running(gateway, await gateway.start(), handler)

    yield start
    for gateway in gateways:
        await gateway.stop()


@pytest.fixture
async def gateway(start_gateway: Start) -> Running:
    return await start_gateway()


async def round_trip(port: int, control_id: str, tls: ssl.SSLContext | None = None) -> bytes:
    client = await Client.connect(port, tls)
    try:
        await client.send(message(control_id))
        (ack,) = await client.read_acks(1)
        return ack
    finally:
        await client.close()


async def test_one_message_one_ack(gateway: Running) -> None:
    acked = metric("relais_mllp_messages_total", ack_code="AA")
    timed = metric("relais_mllp_ack_seconds_count")
    sized = metric("relais_mllp_message_bytes_sum")
    eof = metric("relais_mllp_connections_total", outcome="eof")
    ack = await round_trip(gateway.port, "ONE-1")
    assert msa(ack) == ("AA", "ONE-1")
    msh = segment(ack, "MSH")
    assert msh[2:6] == ["RELAIS", "RELAIS", "SIL-TEST", "LABO-TEST"]
    assert msh[8] == "ACK^R01^ACK"
    assert metric("relais_mllp_messages_total", ack_code="AA") == acked + 1
    assert metric("relais_mllp_ack_seconds_count") == timed + 1
    assert metric("relais_mllp_message_bytes_sum") == sized + len(message("ONE-1"))
    await eventually(lambda: metric("relais_mllp_connections_total", outcome="eof") == eof + 1)
    await eventually(lambda: metric("relais_mllp_connections_open") == 0)


async def test_pipelined_messages_are_acked_in_order(gateway: Running) -> None:
    client = await Client.connect(gateway.port)
    await client.send(message("P-1"), message("P-2"), message("P-3"))
    acks = await client.read_acks(3)
    assert [msa(a) for a in acks] == [("AA", "P-1"), ("AA", "P-2"), ("AA", "P-3")]
    await client.close()


async def test_frame_split_byte_by_byte(gateway: Running) -> None:
    client = await Client.connect(gateway.port)
    for byte in frame(message("SPLIT-1")):
        client.writer.write(bytes([byte]))
        await client.writer.drain()
    (ack,) = await client.read_acks(1)
    assert msa(ack) == ("AA", "SPLIT-1")
    await client.close()


async def test_many_concurrent_connections(start_gateway: Start) -> None:
    gateway = await start_gateway(max_connections_per_peer=50)  # all from 127.0.0.1

    async def sender(n: int) -> list[tuple[str, str]]:
        client = await Client.connect(gateway.port)
        for i in range(5):
            await client.send(message(f"C{n}-{i}"))
            await client.read_acks(i + 1)
        await client.close()
        return [msa(a) for a in client.acks]

    results = await asyncio.gather(*(sender(n) for n in range(50)))
    for n, acks in enumerate(results):
        assert acks == [("AA", f"C{n}-{i}") for i in range(5)]
    await eventually(lambda: gateway.gateway.connection_count == 0)


async def test_bad_message_gets_ae_with_the_readable_header(gateway: Running) -> None:
    bad = message("BAD-1").replace(b"ORU^R01^ORU_R01", b"XYZ^Q99")
    client = await Client.connect(gateway.port)
    await client.send(bad)
    (ack,) = await client.read_acks(1)
    assert msa(ack) == ("AE", "BAD-1")
    assert segment(ack, "ERR")[3].startswith("200^")
    await client.close()


async def test_oversized_frame_gets_ae_and_close_while_others_are_served(
    start_gateway: Start,
) -> None:
    running = await start_gateway(max_frame_bytes=64 * 1024)
    rejected = metric("relais_mllp_frame_rejections_total", reason="oversized")
    closed = metric("relais_mllp_connections_total", outcome="oversized")
    other = await Client.connect(running.port)
    big = await Client.connect(running.port)
    big.writer.write(frame(message("BIG-1") + b"NTE|1||" + b"A" * 200_000 + b"\r"))
    (nak,) = await big.read_acks(1)
    assert msa(nak) == ("AE", "BIG-1")  # permanent: the same message would fail again
    assert segment(nak, "MSH")[2:6] == ["RELAIS", "RELAIS", "SIL-TEST", "LABO-TEST"]
    err = segment(nak, "ERR")
    assert err[3].startswith("199^")
    assert err[5].startswith("906^")
    assert "65536-byte limit" in err[8]
    assert "RELAIS_MLLP_MAX_FRAME_BYTES" in err[8]
    assert "split" in err[8]
    await big.expect_close()
    await other.send(message("OTHER-1"))
    assert msa((await other.read_acks(1))[0]) == ("AA", "OTHER-1")
    assert msa(await round_trip(running.port, "AFTER-1")) == ("AA", "AFTER-1")
    await eventually(
        lambda: metric("relais_mllp_connections_total", outcome="oversized") == closed + 1
    )
    assert metric("relais_mllp_frame_rejections_total", reason="oversized") == rejected + 1
    assert running.handler.started == 2  # the oversized message never reached the handler
    await other.close()
    await big.close()


async def test_idle_connection_is_closed(start_gateway: Start) -> None:
    running = await start_gateway(idle_timeout_s=0.5)
    before = metric("relais_mllp_connections_total", outcome="idle-timeout")
    client = await Client.connect(running.port)
    started = time.monotonic()
    await client.send()  # nothing: a connection that never speaks
    await client.expect_close(timeout=5)
    assert 0.4 < time.monotonic() - started < 5
    await eventually(
        lambda: metric("relais_mllp_connections_total", outcome="idle-timeout") == before + 1
    )
    await client.close()


async def test_idle_timeout_mid_frame_counts_a_truncated_frame(start_gateway: Start) -> None:
    running = await start_gateway(idle_timeout_s=0.5)
    before = metric("relais_mllp_frame_rejections_total", reason="truncated")
    client = await Client.connect(running.port)
    client.writer.write(frame(message("CUT-1"))[:500])
    await client.expect_close(timeout=5)
    assert client.acks == []
    await eventually(
        lambda: metric("relais_mllp_frame_rejections_total", reason="truncated") == before + 1
    )
    await client.close()


async def test_slow_sender_still_gets_its_ack(start_gateway: Start) -> None:
    running = await start_gateway(idle_timeout_s=0.5)
    client = await Client.connect(running.port)
    data = frame(message("SLOW-1"))
    chunk = len(data) // 6 + 1
    for start in range(0, len(data), chunk):  # 6 pauses of 0.2 s: 1.2 s in all > the timeout
        client.writer.write(data[start : start + chunk])
        await client.writer.drain()
        await asyncio.sleep(0.2)
    (ack,) = await client.read_acks(1)
    assert msa(ack) == ("AA", "SLOW-1")
    await client.close()


async def test_binary_garbage_does_not_stop_the_server(gateway: Running) -> None:
    junk_before = metric("relais_mllp_frame_rejections_total", reason="junk")
    noise = bytes(range(256)).replace(b"\x0b", b"") * 8 + os.urandom(4096).replace(b"\x0b", b"")
    client = await Client.connect(gateway.port)
    client.writer.write(noise)
    await client.send(b"\x00\xff\xfe not HL7 at all")
    (ack,) = await client.read_acks(1)
    assert msa(ack) == ("AE", "")
    await client.close()
    raw = await Client.connect(gateway.port)
    raw.writer.write(os.urandom(65536))  # start blocks included: a frame that never ends
    await raw.close()
    assert metric("relais_mllp_frame_rejections_total", reason="junk") > junk_before
    assert msa(await round_trip(gateway.port, "ALIVE-1")) == ("AA", "ALIVE-1")


async def test_sender_leaving_before_its_ack_lets_the_handler_finish(gateway: Running) -> None:
    gateway.handler.gate = asyncio.Event()
    client = await Client.connect(gateway.port)
    await client.send(message("GONE-1"))
    await eventually(lambda: gateway.handler.started == 1)
    client.writer.transport.abort()  # the sender gives up: reset, no ACK read
    await asyncio.sleep(0)
    gateway.handler.gate.set()
    await eventually(lambda: gateway.handler.completed == 1)
    await eventually(lambda: gateway.gateway.connection_count == 0)
    assert msa(await round_trip(gateway.port, "NEXT-1")) == ("AA", "NEXT-1")


async def test_handler_error_closes_without_ack(gateway: Running) -> None:
    before = metric("relais_mllp_connections_total", outcome="handler-error")
    gateway.handler.fail = True
    client = await Client.connect(gateway.port)
    await client.send(message("FAIL-1"))
    await client.expect_close()
    assert client.acks == []
    gateway.handler.fail = False
    assert msa(await round_trip(gateway.port, "FAIL-2")) == ("AA", "FAIL-2")
    assert metric("relais_mllp_connections_total", outcome="handler-error") == before + 1


async def test_connections_over_the_limit_are_refused(start_gateway: Start) -> None:
    running = await start_gateway(max_connections=2)
    before = metric("relais_mllp_connections_total", outcome="too-many")
    first, second = await Client.connect(running.port), await Client.connect(running.port)
    await eventually(lambda: running.gateway.connection_count == 2)
    third = await Client.connect(running.port)
    await third.expect_close()
    assert metric("relais_mllp_connections_total", outcome="too-many") == before + 1
    await first.send(message("LIMIT-1"))
    assert msa((await first.read_acks(1))[0]) == ("AA", "LIMIT-1")
    for client in (first, second, third):
        await client.close()


async def test_stop_lets_the_message_in_progress_finish(start_gateway: Start) -> None:
    running = await start_gateway()
    running.handler.gate = asyncio.Event()
    busy, idle = await Client.connect(running.port), await Client.connect(running.port)
    await busy.send(message("STOP-1"))
    await eventually(lambda: running.handler.started == 1)
    stopping = asyncio.create_task(running.gateway.stop())
    await idle.expect_close()  # nothing in progress there: closed at once
    running.handler.gate.set()
    (ack,) = await busy.read_acks(1)
    assert msa(ack) == ("AA", "STOP-1")
    await stopping
    await busy.expect_close()
    for client in (busy, idle):
        await client.close()


async def test_stop_gives_up_on_a_handler_past_the_grace_period(start_gateway: Start) -> None:
    running = await start_gateway(shutdown_grace_s=0.2)
    running.handler.gate = asyncio.Event()  # never set: a handler stuck on its broker
    client = await Client.connect(running.port)
    await client.send(message("STUCK-1"))
    await eventually(lambda: running.handler.started == 1)
    async with asyncio.timeout(5):
        await running.gateway.stop()
    await client.expect_close()
    assert client.acks == []
    assert running.handler.completed == 0
    await client.close()


def test_ack_code_of() -> None:
    assert ack_code_of(b"MSH|^~\\&|\rMSA|AE|X\r") == "AE"
    assert ack_code_of(b"MSH|^~\\&|\r") == "unknown"


async def test_connections_over_the_per_peer_limit_are_refused(start_gateway: Start) -> None:
    """One address cannot hold more than its share; another address still gets in."""
    running = await start_gateway(max_connections_per_peer=2)
    before = metric("relais_mllp_connections_total", outcome="too-many-from-peer")
    first, second = await Client.connect(running.port), await Client.connect(running.port)
    await eventually(lambda: running.gateway.connection_count == 2)
    third = await Client.connect(running.port)
    await third.expect_close()
    assert third.acks == []
    assert metric("relais_mllp_connections_total", outcome="too-many-from-peer") == before + 1
    other_peer = await Client.connect(running.port, source="127.0.0.2")
    await other_peer.send(message("PEER-2"))
    assert msa((await other_peer.read_acks(1))[0]) == ("AA", "PEER-2")
    await first.close()  # a slot of 127.0.0.1 is free again
    await eventually(lambda: running.gateway.connection_count == 2)
    assert msa(await round_trip(running.port, "PEER-1")) == ("AA", "PEER-1")
    for client in (second, third, other_peer):
        await client.close()


async def test_a_trickling_frame_is_closed_at_its_deadline(start_gateway: Start) -> None:
    """A byte every 0.1 s keeps the idle timeout away, not the frame deadline."""
    running = await start_gateway(frame_timeout_s=1.0, idle_timeout_s=30)
    closed = metric("relais_mllp_connections_total", outcome="slow-frame")
    dropped = metric("relais_mllp_frame_rejections_total", reason="slow-frame")
    client = await Client.connect(running.port)
    data = frame(message("TRICKLE-1"))

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in data:
                client.writer.write(bytes([byte]))
                await client.writer.drain()
                await asyncio.sleep(0.1)

    trickling = asyncio.create_task(trickle())
    await client.expect_close(timeout=10)
    assert not trickling.done()  # closed while the frame was still coming
    trickling.cancel()
    assert client.acks == []
    assert running.handler.started == 0
    await eventually(
        lambda: metric("relais_mllp_connections_total", outcome="slow-frame") == closed + 1
    )
    assert metric("relais_mllp_frame_rejections_total", reason="slow-frame") == dropped + 1
    await client.close()


async def test_junk_trickled_between_frames_does_not_keep_a_connection(
    start_gateway: Start,
) -> None:
    running = await start_gateway(idle_timeout_s=0.5)
    idle = metric("relais_mllp_connections_total", outcome="idle-timeout")
    client = await Client.connect(running.port)

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(100):  # 10 s of junk if nothing closed it
                client.writer.write(b"\n")
                await client.writer.drain()
                await asyncio.sleep(0.1)

    trickling = asyncio.create_task(trickle())
    await client.expect_close(timeout=10)
    assert not trickling.done()
    trickling.cancel()
    await eventually(
        lambda: metric("relais_mllp_connections_total", outcome="idle-timeout") == idle + 1
    )
    await client.close()


# --- TLS ------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA, a server certificate for IP 127.0.0.1 and a client certificate."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _issue(
        "Relais test CA", ca_key, None, [(x509.BasicConstraints(ca=True, path_length=0), True)]
    )
    leaf = [(x509.BasicConstraints(ca=False, path_length=None), True)]
    server = _issue(
        "127.0.0.1",
        server_key,
        (ca.subject, ca_key),
        [
            *leaf,
            (
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    client = _issue(
        "SIL-TEST",
        client_key,
        (ca.subject, ca_key),
        [*leaf, (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )
    _write(folder / "ca", ca, None)
    _write(folder / "server", server, server_key)
    _write(folder / "client", client, client_key)
    return Pki(
        folder / "ca.crt",
        folder / "server.crt",
        folder / "server.key",
        folder / "client.crt",
        folder / "client.key",
    )


def client_tls(pki: Pki, *, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if with_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


async def test_tls_server_certificate(start_gateway: Start, pki: Pki) -> None:
    tls = server_tls_context(pki.server_cert, pki.server_key)
    running = await start_gateway(tls=tls)
    ack = await round_trip(running.port, "TLS-1", client_tls(pki, with_cert=False))
    assert msa(ack) == ("AA", "TLS-1")
    with pytest.raises(ssl.SSLCertVerificationError):
        await Client.connect(running.port, ssl.create_default_context())  # unknown CA


async def test_tls_client_certificate_required(start_gateway: Start, pki: Pki) -> None:
    tls = server_tls_context(pki.server_cert, pki.server_key, client_ca=pki.ca)
    running = await start_gateway(tls=tls)
    before = metric("relais_mllp_connections_total", outcome="tls-error")
    ack = await round_trip(running.port, "MTLS-1", client_tls(pki, with_cert=True))
    assert msa(ack) == ("AA", "MTLS-1")
    # Without a certificate: TLS 1.2 fails the handshake; TLS 1.3 lets the client finish
    # its side first, then the server's alert ends the connection before any ACK.
    try:
        anonymous = await Client.connect(running.port, client_tls(pki, with_cert=False))
        await anonymous.send(message("MTLS-2"))
        await anonymous.expect_close()
        assert anonymous.acks == []
        await anonymous.close()
    except (ssl.SSLError, ConnectionError):
        pass
    await eventually(
        lambda: metric("relais_mllp_connections_total", outcome="tls-error") == before + 1
    )
    assert running.handler.started == 1
