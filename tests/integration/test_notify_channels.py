"""The notification channels against real servers on 127.0.0.1.

- SMTP: aiosmtpd with a test PKI made here: STARTTLS that *requires* a client
  certificate signed by the test CA (the MSSanté operator), and implicit TLS (an
  e-mail relay); a recorder that can answer 451 or 550 at RCPT;
- SMS: a small aiohttp gateway that records each POST, drops repeated
  Idempotency-Keys as a real gateway would, and can answer 500/429/400.

The helpers here (PKI, servers, request builder) are also used by test_notify_sink.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import hashlib
import ipaddress
import socket
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consumers.notify.channels import (
    ChannelConfig,
    ChannelRejected,
    Channels,
    ChannelUnavailable,
    email_server,
)
from consumers.notify.message import Kind, notice_of
from consumers.notify.preferences import Channel, Preference
from producers.hl7.message import PatientIdentity
from producers.submission import Delivery, DocumentInput, Origin, document_submitted
from relais.contracts import Record
from relais.keyring import Keyring
from relais.mail.smtp import SmtpConfig, SmtpServer

NOW = dt.datetime(2026, 11, 22, 9, 30, tzinfo=dt.UTC)
INS = "279035121518989"  # public test INS (STANDARDS.md §5)
FACILITY = "CENTRE-ONCOLOGIE-X"  # a sender's name alone can reveal a diagnosis
TYPE_LABEL = "CR d'examens biologiques"
MAILBOX_ONLY = {"DESTDMP": False, "DESTMSSANTEPAT": True}  # no DMP filing to wait for
HEALTH_WORDS = (INS, "PAT-TROIS", "DOMINIQUE", "19790328", FACILITY, TYPE_LABEL, "11502-2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# PKI -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *, require_client: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Relais notify test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> tuple:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert, key

    server, server_key = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client, client_key = leaf(
        "relais.mssante.fr", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("relais.mssante.fr")]
    )
    pem = serialization.Encoding.PEM
    paths = Pki(*(folder / n for n in ("ca.pem", "server.pem", "server.key", "c.pem", "c.key")))
    paths.ca.write_bytes(ca.public_bytes(pem))
    paths.server_cert.write_bytes(server.public_bytes(pem))
    paths.client_cert.write_bytes(client.public_bytes(pem))
    for path, key in ((paths.server_key, server_key), (paths.client_key, client_key)):
        path.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return paths


# SMTP ------------------------------------------------------------------------------


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    raw: bytes
    at: float

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]

    @property
    def text(self) -> str:
        body = self.message.get_body()
        assert body is not None
        return f"{self.message['Subject']}\n{body.get_content()}"


@dataclass
class MailRecorder:
    """An aiosmtpd handler: keeps what it accepts; ``refuse`` replies at RCPT first."""

    mails: list[Mail] = field(default_factory=list)
    refuse: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, _: Any
    ) -> str:
        with self.lock:
            if self.refuse:
                return self.refuse.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, time.time())
        with self.lock:
            self.mails.append(mail)
        return "250 2.0.0 Ok: queued"

    def clear(self) -> None:
        with self.lock:
            self.mails.clear()
            self.refuse.clear()


@dataclass
class MailServers:
    pki: Pki
    operator: MailRecorder  # MSSanté operator: STARTTLS + client certificate required
    operator_port: int
    relay: MailRecorder  # e-mail relay: implicit TLS
    relay_port: int


@pytest.fixture(scope="session")
def mail_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServers]:
    pki = make_pki(Path(tmp_path_factory.mktemp("notify-pki")))
    operator, relay = MailRecorder(), MailRecorder()
    op_port, relay_port = free_port(), free_port()
    starttls = Controller(
        operator,
        hostname="127.0.0.1",
        port=op_port,
        tls_context=pki.server_context(require_client=True),
        require_starttls=True,
    )
    implicit = Controller(
        relay,
        hostname="127.0.0.1",
        port=relay_port,
        ssl_context=pki.server_context(require_client=False),
        server_hostname="localhost",
    )
    starttls.start()
    implicit.start()
    try:
        yield MailServers(pki, operator, op_port, relay, relay_port)
    finally:
        starttls.stop()
        implicit.stop()


# SMS gateway -----------------------------------------------------------------------


@dataclass
class Gateway:
    """An SMS gateway: records POSTs; an Idempotency-Key seen before is not sent again."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    on_post: Callable[[int], None] | None = None  # called with the POST's number, before answering
    delay_s: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.append(
            {**body, "key": request.headers.get("Idempotency-Key"), "at": time.time()}
        )
        if self.on_post is not None:
            self.on_post(len(self.posts))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.answers:
            status, headers = self.answers.pop(0)
            return web.json_response({"error": "test"}, status=status, headers=headers)
        self.delivered.setdefault(str(request.headers.get("Idempotency-Key")), body)
        return web.json_response({"id": body["message_id"]}, status=202)

    def clear(self) -> None:
        self.posts.clear()
        self.delivered.clear()
        self.answers.clear()
        self.on_post, self.delay_s = None, 0.0


@pytest.fixture(scope="session")
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway()
    app = web.Application()
    app.router.add_post("/sms", gw.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    gw.url = f"http://127.0.0.1:{port}/sms"
    yield gw
    await runner.cleanup()


def channel_config(servers: MailServers, sms_url: str, **changes: Any) -> ChannelConfig:
    pki = servers.pki
    values: dict[str, Any] = {
        "mssante": SmtpConfig(
            server=SmtpServer("127.0.0.1", servers.operator_port, "starttls"),
            ca_file=pki.ca,
            client_cert=pki.client_cert,
            client_key=pki.client_key,
        ),
        "mssante_sender": "relais@relais.mssante.fr",
        "email": SmtpConfig(
            server=email_server(f"localhost:{servers.relay_port}/implicit"), ca_file=pki.ca
        ),
        "email_sender": "ne-pas-repondre@chu-x.example",
        "sms_url": sms_url,
        "ca_file": pki.ca,
        "timeout_s": 5.0,
    }
    return ChannelConfig(**{**values, **changes})


@pytest.fixture
async def channels(mail_servers: MailServers, gateway: Gateway) -> AsyncIterator[Channels]:
    mail_servers.operator.clear()
    mail_servers.relay.clear()
    gateway.clear()
    sender = Channels(channel_config(mail_servers, gateway.url))
    yield sender
    await sender.close()


# Requests --------------------------------------------------------------------------


def patient(ins: str = INS) -> PatientIdentity:
    return PatientIdentity(
        ins=ins,
        ins_oid="1.2.250.1.213.1.4.8",
        local_ids=(),
        birth_name="PAT-TROIS",
        given_names="DOMINIQUE",
        birth_date="19790328",
        sex="F",
        birthplace_code="51215",
        reliability="VALI",
    )


def notify_request(
    keyring: Keyring,
    *,
    who: PatientIdentity | None = None,
    visible_from: dt.datetime | None = NOW,
    action: str = "SUBMIT",
    unique_id: str | None = None,
    parent: str | None = None,
    flags: dict[str, bool] | None = None,
) -> Record:
    """A ``DeliveryRequest`` to NOTIFY, as the routing stage makes one.

    By default for a document sent to the patient's own mailbox and not to the DMP
    (``DESTDMP=N``): told without waiting for a DMP filing. The DMP gate's tests pass
    ``flags={"DESTDMP": True}`` (consumers/notify/dmp_gate.py)."""
    event = str(uuid.uuid4())
    doc_id = unique_id or f"1.2.250.1.999.1.{uuid.uuid4().int % 10**12}"
    submitted = document_submitted(
        DocumentInput(
            content=b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>",
            media_type="text/xml",
            type_code="11502-2",
            type_label=TYPE_LABEL,
            unique_id=doc_id,
            action=action,
            parent_unique_id=parent,
        ),
        patient=who or patient(),
        origin=Origin(FACILITY, "SIL-Y", "MSG-1", "ORU^R01"),
        delivery=Delivery(),
        sector="LAB",
        keyring=keyring,
        now=NOW,
        event_id=event,
    )
    return {
        "event_id": event,
        "request_id": hashlib.sha256(f"{doc_id}|{action}|NOTIFY".encode()).hexdigest()[:32],
        "destination": "NOTIFY",
        "requested_at": NOW,
        "submitted_at": NOW,
        "sector": "LAB",
        "source": submitted["source"],
        "patient": submitted["patient"],
        "document": submitted["document"],
        "recipient": None,
        "release": {
            "patient_visible_from": visible_from,
            "hidden_from_professionals": False,
            "hidden_from_legal_representatives": False,
            "explanation": "test",
        },
        "flags": dict(flags) if flags is not None else dict(MAILBOX_ONLY),
    }


def assert_no_health_data(text: str) -> None:
    for word in HEALTH_WORDS:
        assert word not in text, f"{word!r} leaked into a notification"


# Tests -----------------------------------------------------------------------------


async def test_mssante_mailbox_over_starttls_with_the_client_certificate(
    channels: Channels, mail_servers: MailServers
) -> None:
    notice = notice_of([Kind.NEW])
    accepted = await channels.send(
        Preference(Channel.MSSANTE), notice, request_ids=["r1"], ins=INS, now=NOW
    )
    assert (accepted.channel, accepted.code) == (Channel.MSSANTE, "250")
    [mail] = mail_servers.operator.mails
    assert mail.recipients == [f"{INS}@patient.mssante.fr"]
    assert mail.sender == "relais@relais.mssante.fr"
    message = mail.message
    assert message["X-MSS-MES"] == "FIN"
    assert message["Subject"] == "Nouveau document disponible dans Mon espace santé"
    assert "Un nouveau document est disponible" in mail.text
    assert_no_health_data(mail.text)  # the INS is only in the address, never in the words
    assert message["Message-ID"].endswith("@relais.mssante.fr>")
    assert mail_servers.relay.mails == []


async def test_email_over_implicit_tls_and_sms_by_webhook(
    channels: Channels, mail_servers: MailServers, gateway: Gateway
) -> None:
    notice = notice_of([Kind.NEW, Kind.UPDATED])
    by_mail = Preference(Channel.EMAIL, "marie@example.org")
    await channels.send(by_mail, notice, request_ids=["r1", "r2"], ins=INS, now=NOW)
    [mail] = mail_servers.relay.mails
    assert mail.recipients == ["marie@example.org"]
    assert mail.message["X-MSS-MES"] is None
    assert "2 nouveaux documents sont disponibles" in mail.text
    assert_no_health_data(mail.raw.decode())

    by_sms = Preference(Channel.SMS, "+33612345678")
    accepted = await channels.send(by_sms, notice, request_ids=["r1", "r2"], ins=INS, now=NOW)
    assert accepted.code == "202"
    [post] = gateway.posts
    assert post["to"] == "+33612345678"
    assert post["key"] == post["message_id"]
    assert post["text"].startswith("Mon espace santé : 2 documents sont disponibles.")
    assert_no_health_data(str(post))


async def test_failures_are_transient_or_permanent(
    channels: Channels, mail_servers: MailServers, gateway: Gateway
) -> None:
    notice = notice_of([Kind.NEW])
    mssante = Preference(Channel.MSSANTE)
    mail_servers.operator.refuse += ["451 4.3.0 try again later", "550 5.1.1 no such mailbox"]
    with pytest.raises(ChannelUnavailable) as transient:
        await channels.send(mssante, notice, request_ids=["r"], ins=INS, now=NOW)
    assert transient.value.code == "451 4.3.0"
    with pytest.raises(ChannelRejected) as permanent:
        await channels.send(mssante, notice, request_ids=["r"], ins=INS, now=NOW)
    assert permanent.value.code == "550 5.1.1"
    assert INS not in str(permanent.value)
    with pytest.raises(ChannelRejected, match="no valid matricule INS") as no_ins:
        await channels.send(mssante, notice, request_ids=["r"], ins=None, now=NOW)
    assert no_ins.value.code == "NO_PATIENT_MAILBOX"

    sms = Preference(Channel.SMS, "+33612345678")
    gateway.answers += [(429, {"Retry-After": "7"}), (503, {}), (400, {})]
    with pytest.raises(ChannelUnavailable) as limited:
        await channels.send(sms, notice, request_ids=["r"], ins=None, now=NOW)
    assert (limited.value.code, limited.value.retry_after_s) == ("429", 7.0)
    with pytest.raises(ChannelUnavailable, match="503"):
        await channels.send(sms, notice, request_ids=["r"], ins=None, now=NOW)
    with pytest.raises(ChannelRejected, match="400"):
        await channels.send(sms, notice, request_ids=["r"], ins=None, now=NOW)
    assert mail_servers.operator.mails == []
    assert gateway.delivered == {}


async def test_unreachable_or_untrusted_servers_are_transient(
    mail_servers: MailServers, tmp_path: Path
) -> None:
    closed = free_port()
    other_ca = make_pki(tmp_path / "other").ca
    config = channel_config(mail_servers, f"http://127.0.0.1:{closed}/sms")
    untrusted = channel_config(
        mail_servers,
        f"http://127.0.0.1:{closed}/sms",
        mssante=SmtpConfig(
            server=SmtpServer("127.0.0.1", mail_servers.operator_port, "starttls"),
            ca_file=other_ca,
        ),
    )
    anonymous = channel_config(
        mail_servers,
        f"http://127.0.0.1:{closed}/sms",
        mssante=SmtpConfig(
            server=SmtpServer("127.0.0.1", mail_servers.operator_port, "starttls"),
            ca_file=mail_servers.pki.ca,
        ),
    )
    notice = notice_of([Kind.NEW])
    for cfg, preference in (
        (config, Preference(Channel.SMS, "+33612345678")),
        (untrusted, Preference(Channel.MSSANTE)),  # the server's certificate is not trusted
        (anonymous, Preference(Channel.MSSANTE)),  # no client certificate: the operator refuses
    ):
        sender = Channels(cfg)
        try:
            with pytest.raises(ChannelUnavailable):
                await sender.send(preference, notice, request_ids=["r"], ins=INS, now=NOW)
        finally:
            await sender.close()
    assert mail_servers.operator.mails == []
