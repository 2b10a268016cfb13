"""Issue 15, point 5 (the "LPS" bullet): documents received by MSSanté reach the DPI.

Real Postfix + Dovecot (Relais's mailbox, the doctor's), the real broker, the mailbox
watcher and the LPS delivery running; the producer's DPI is an MLLP listener of the test
that records each MDM and answers what the test tells it (AR, a held AA, AE).
"""

from __future__ import annotations

import asyncio
import base64
import email
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default

import pytest

from domain.mssante_address import parse_address
from mss_bridge.compose import ComposeConfig, compose
from mss_bridge.config import ImapConfig
from mss_bridge.imap_watcher import MailboxWatcher
from mss_bridge.inbound_worker import MailboxWorker
from mss_bridge.lps_delivery import LpsDelivery
from mss_bridge.replies import InboundSetup
from producers.hl7.segments import load_segments
from producers.mllp.ack_routes import Endpoint
from producers.mllp.framing import MllpDecoder, frame
from relais.keyring import Keyring
from relais.mail.smtp import SmtpConfig, SmtpSender, SmtpServer
from relais.topics import DEADLETTER
from tests.integration.mail_servers import DURAND as DOCTOR
from tests.integration.mail_servers import (
    PASSWORD,
    RELAIS,
    MailServers,
    free_port,
    new_topics,
    read_records,
)
from tests.mss_records import LETTER_CDA, NOW, mss_request, sample_cda

KEYRING = Keyring.generate()
# Folders of this module's own: the inbound tests count what lands in theirs.
PROCESSED, QUARANTINE = "Lps-Processed", "Lps-Quarantine"


@dataclass
class FakeDpi:
    """The producer's DPI: records each MDM, answers with the next code of ``answers``."""

    answers: list[str]
    hold: set[int] = field(default_factory=set)  # answers (by index) held until release
    released: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[bytes] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MllpDecoder(32 << 20)
        try:
            while data := await reader.read(65536):
                for message in decoder.feed(data):
                    index = len(self.received)
                    self.received.append(message)
                    if index in self.hold:
                        await self.released.wait()
                    writer.write(frame(ack(message, self.answers[index])))
                    await writer.drain()
        finally:
            writer.close()


def ack(message: bytes, code: str) -> bytes:
    control = load_segments(message.decode())[0].get(10)
    lines = [
        "MSH|^~\\&|DPI|CH-RELAIS|RELAIS|RELAIS|20261206093000||ACK^T02^ACK|A1|P|2.6",
        f"MSA|{code}|{control}",
    ]
    if code == "AE":
        lines.append("ERR||PID^1^3|204^Unknown key identifier^HL70357|E|902^Patient inconnu^L")
    return ("\r".join(lines) + "\r").encode()


def smtp(servers: MailServers) -> SmtpSender:
    pki = servers.pki
    return SmtpSender(
        SmtpConfig(
            server=SmtpServer("127.0.0.1", servers.smtp_port),
            ca_file=pki.ca,
            client_cert=pki.client_cert,
            client_key=pki.client_key,
        )
    )


async def running(
    servers: MailServers, bootstrap: str, prefix: str, dpi: FakeDpi
) -> AsyncIterator[None]:
    """The watcher, the LPS delivery (routes: Relais's mailbox -> the fake DPI), the DPI."""
    port = free_port()
    listener = await asyncio.start_server(dpi.serve, "127.0.0.1", port)
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - as the watcher's shell does

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=16 << 20)
    await producer.start()
    sender, setup = smtp(servers), InboundSetup(parse_address(RELAIS), "relais.test; Relais")
    worker = MailboxWorker(
        producer=producer, prefix=prefix, keyring=KEYRING, sender=sender, setup=setup
    )
    config = ImapConfig(
        host="127.0.0.1",
        port=servers.imaps_port,
        user="relais",
        password=PASSWORD,
        ca_file=servers.pki.ca,
        client_cert=servers.pki.client_cert,
        client_key=servers.pki.client_key,
        poll_s=1.0,
        processed_folder=PROCESSED,
        quarantine_folder=QUARANTINE,
    )
    delivery = LpsDelivery(
        bootstrap=bootstrap,
        prefix=prefix,
        keyring=KEYRING,
        routes={RELAIS: Endpoint("127.0.0.1", port)},
        sender=sender,
        setup=setup,
        timeout_s=10,
        session_timeout_s=4,
    )
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(MailboxWatcher(config, "INBOX", worker).run(stop)),
        asyncio.create_task(delivery.run(stop)),
    ]
    try:
        yield
    finally:
        stop.set()
        dpi.released.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        listener.close()
        await sender.close()
        await producer.stop()


async def doctor_sends(servers: MailServers) -> EmailMessage:
    """The doctor's software mails a discharge letter (IHE_XDM.ZIP) to Relais, asking an MDN."""
    letter = mss_request(
        KEYRING, RELAIS, cda=sample_cda(LETTER_CDA), recipient_plain=RELAIS.encode()
    )
    config = ComposeConfig(sender=parse_address(DOCTOR), product_nil="NIL-LGC", read_receipt=True)
    mail = compose(letter, KEYRING, config, NOW).message
    sender = smtp(servers)
    try:
        await sender.send(mail, sender=DOCTOR, recipient=RELAIS, request_dsn=False)
    finally:
        await sender.close()
    return mail


async def until(condition: object, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture
async def doctor_inbox(mss_mail_servers: MailServers) -> AsyncIterator[MailServers]:
    """The doctor's mailbox, emptied after the test (the inbound tests count what is there)."""
    assert await mss_mail_servers.fetch_all("dr.durand") == []
    yield mss_mail_servers
    client = await mss_mail_servers.imap("dr.durand")
    try:
        await client.select("INBOX")
        await client.uid("store", "1:*", "+FLAGS.SILENT (\\Deleted)")
        await client.expunge()
    finally:
        await client.logout()


async def test_lps_documents_received_by_mssante_reach_the_dpi_and_the_mdn_waits_for_its_ack(
    doctor_inbox: MailServers, mss_broker: str
) -> None:
    servers = doctor_inbox
    prefix = await new_topics(mss_broker)
    # The DPI first answers AR (busy: resend later), then AA, held until the test says so.
    dpi = FakeDpi(answers=["AR", "AA"], hold={1})
    async for _ in running(servers, mss_broker, prefix, dpi):
        mail = await doctor_sends(servers)
        await until(lambda: len(dpi.received) == 2)  # the AR was retried
        await asyncio.sleep(1.5)  # the watcher took the mail long ago; the DPI has not answered
        assert await servers.fetch_all("dr.durand") == []  # so no MDN yet
        dpi.released.set()
        [answer] = await servers.wait_for_mail("dr.durand")

    first, again = dpi.received
    segments = load_segments(first.decode())
    resent = load_segments(again.decode())
    assert resent[0].get(10) == segments[0].get(10)  # the same MDM (MSH-10), resent after the AR
    assert resent[7:] == segments[7:]
    by_name = {s.name: s for s in reversed(segments)}
    msh = by_name["MSH"]
    assert msh.render(9) == "MDM^T02^MDM_T02"
    assert msh.get(12) == "2.6"
    assert msh.render(21) == "1.1^CISIS_CDA_HL7_LPS"
    assert msh.get(6) == RELAIS  # the receiving mailbox's route key
    assert by_name["PV1"].get(2) == "N"
    assert by_name["PID"].get(3) == "279035121518989"
    assert base64.b64decode(by_name["OBX"].get(5, 5)) == sample_cda(LETTER_CDA)
    senders = [s.get(15, 4) for s in segments if s.name == "PRT" and s.get(4) == "SB"]
    assert senders == [DOCTOR]
    # The MDN "processed", only now, answering the doctor's mail.
    mdn = parse(answer)
    assert mdn.get_content_type() == "multipart/report"
    assert str(mdn["Subject"]).startswith("[OK Intégration système]")
    assert mdn["In-Reply-To"] == mail["Message-ID"]
    assert "; processed\r\n" in answer.decode() or "; processed\n" in answer.decode()
    assert "Error" not in answer.decode()
    assert await read_records(mss_broker, DEADLETTER.name(prefix), until=bool, timeout_s=1) == []


async def test_lps_a_dpi_refusal_dead_letters_and_answers_an_error_mdn(
    doctor_inbox: MailServers, mss_broker: str
) -> None:
    servers = doctor_inbox
    prefix = await new_topics(mss_broker)
    dpi = FakeDpi(answers=["AE"])
    async for _ in running(servers, mss_broker, prefix, dpi):
        await doctor_sends(servers)
        [answer] = await servers.wait_for_mail("dr.durand")
        dead = await read_records(mss_broker, DEADLETTER.name(prefix), until=bool)
        await asyncio.sleep(1.0)  # nothing else comes: no "processed" after the error
        assert len(await servers.fetch_all("dr.durand")) == 1

    assert len(dpi.received) == 1
    mdn = parse(answer)
    assert mdn.get_content_type() == "multipart/report"
    assert str(mdn["Subject"]).startswith("[KO Intégration système !][902]")
    assert "processed/Error: 902^Patient inconnu" in answer.decode()
    [letter] = dead
    assert (letter["stage"], letter["reason_code"]) == ("lps-delivery", "lps-refused")
    assert "902" in letter["reason"]
    assert "PAT-TROIS" not in letter["reason"]
