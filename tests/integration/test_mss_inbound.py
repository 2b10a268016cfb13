"""Relais's mailbox against real servers: DSNs, MDNs and documents arriving by mail.

The test plays the doctors and their software: it sends mail through Postfix into
Relais's Dovecot mailbox while the watcher runs (IDLE), and finds the outcome on
the bus (statuses, ZAM business acks, received documents, dead letters) and in the
mailboxes (processed and quarantine folders, the MDNs Relais sent back).
"""

from __future__ import annotations

import asyncio
import email
import io
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default

from aiokafka import AIOKafkaProducer

from domain.mssante_address import parse_address
from mss_bridge.acknowledgements import MdnRequest, build_mdn
from mss_bridge.compose import ComposeConfig, compose
from mss_bridge.config import ImapConfig
from mss_bridge.imap_watcher import MailboxWatcher
from mss_bridge.inbound_worker import InboundSetup, MailboxWorker
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from relais.mail.smtp import SmtpConfig, SmtpSender, SmtpServer
from relais.metrics import REGISTRY
from relais.topics import BUSINESS_ACKS, DEADLETTER, DELIVERY_STATUS, MSSANTE_INBOUND
from tests.integration.mail_servers import (
    DURAND as DOCTOR,
)
from tests.integration.mail_servers import (
    PASSWORD,
    RELAIS,
    MailServers,
    new_topics,
    read_records,
)
from tests.mss_records import LETTER_CDA, NOW, mss_request, sample_cda

KEYRING = Keyring.generate()
GHOST = "ghost@medecin.mssante.fr"  # relayed, but no such mailbox: Postfix bounces a DSN


def smtp(servers: MailServers) -> SmtpSender:
    return SmtpSender(
        SmtpConfig(
            server=SmtpServer("127.0.0.1", servers.smtp_port),
            ca_file=servers.pki.ca,
            client_cert=servers.pki.client_cert,
            client_key=servers.pki.client_key,
        )
    )


def imap_config(servers: MailServers) -> ImapConfig:
    return ImapConfig(
        host="127.0.0.1",
        port=servers.imaps_port,
        user="relais",
        password=PASSWORD,
        ca_file=servers.pki.ca,
        client_cert=servers.pki.client_cert,
        client_key=servers.pki.client_key,
        poll_s=1.0,
    )


async def watching(servers: MailServers, bootstrap: str, prefix: str) -> AsyncIterator[None]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=16 << 20)
    await producer.start()
    sender = smtp(servers)
    worker = MailboxWorker(
        producer=producer,
        prefix=prefix,
        keyring=KEYRING,
        sender=sender,
        setup=InboundSetup(parse_address(RELAIS), "relais.test; Relais 0.1"),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(MailboxWatcher(imap_config(servers), "INBOX", worker).run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await sender.close()
        await producer.stop()


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def doctor_compose() -> ComposeConfig:
    return ComposeConfig(sender=parse_address(DOCTOR), product_nil="NIL-CABINET", read_receipt=True)


def tampered(message: EmailMessage) -> EmailMessage:
    """The same mail with one byte of the CDA inside IHE_XDM.ZIP changed (hash mismatch)."""
    out = EmailMessage()
    for header in ("From", "To", "Subject", "Disposition-Notification-To"):
        out[header] = message[header]
    out["Message-ID"] = message["Message-ID"].replace("relais.", "tampered.")
    out.set_content("document joint")
    package = next(p for p in message.iter_attachments() if p.get_filename() == "IHE_XDM.ZIP")
    source = zipfile.ZipFile(io.BytesIO(package.get_content()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("DOC0001.XML"):
                data = data.replace(b"PAT-TROIS", b"PAT-TROIX", 1)
            target.writestr(info.filename, data)
    out.add_attachment(
        buffer.getvalue(), maintype="application", subtype="zip", filename="IHE_XDM.ZIP"
    )
    return out


async def test_acknowledgements_documents_and_bad_mail_in_relais_mailbox(
    mss_mail_servers: MailServers, mss_broker: str
) -> None:
    prefix = await new_topics(mss_broker)
    relais_config = ComposeConfig(sender=parse_address(RELAIS), product_nil="NIL-RELAIS-TEST")
    sender = smtp(mss_mail_servers)

    async for _ in watching(mss_mail_servers, mss_broker, prefix):
        # 1. Relais's own mails: one to a mailbox that does not exist, one to the doctor.
        to_ghost = mss_request(KEYRING, GHOST, control_id="CTL-GHOST")
        to_doctor = mss_request(KEYRING, DOCTOR, control_id="CTL-DOC")
        for request in (to_ghost, to_doctor):
            mail = compose(request, KEYRING, relais_config, NOW)
            await sender.send(
                mail.message,
                sender=RELAIS,
                recipient=str(mail.recipient),
                envelope_id=mail.envelope_id,
            )
        # 2. The doctor's software answers Relais's mail with an MDN "processed".
        [received] = await mss_mail_servers.wait_for_mail("dr.durand")
        mdn = build_mdn(
            MdnRequest(
                parse(received), parse_address(DOCTOR), "cabinet; LGC 1.0", datetime.now(UTC)
            ),
            message_id="<mdn-1@medecin.mssante.fr>",
        )
        await sender.send(mdn, sender=DOCTOR, recipient=RELAIS, request_dsn=False)
        # 3. The doctor sends a document to Relais, asking for a receipt; then a tampered copy.
        letter = mss_request(
            KEYRING, RELAIS, cda=sample_cda(LETTER_CDA), recipient_plain=RELAIS.encode()
        )
        document_mail = compose(letter, KEYRING, doctor_compose(), NOW).message
        await sender.send(document_mail, sender=DOCTOR, recipient=RELAIS, request_dsn=False)
        await sender.send(
            tampered(document_mail), sender=DOCTOR, recipient=RELAIS, request_dsn=False
        )

        wanted = {
            (to_ghost["event_id"], "DSN 5.1.1"),
            (to_doctor["event_id"], "DSN 2.0.0"),
            (to_doctor["event_id"], "MDN processed"),
        }
        statuses = await read_records(
            mss_broker,
            DELIVERY_STATUS.name(prefix),
            until=lambda r, w=wanted: w <= {(s["event_id"], s["code"]) for s in r},
        )
        acks = await read_records(
            mss_broker, BUSINESS_ACKS.name(prefix), until=lambda r: len(r) >= 3
        )
        inbound = await read_records(
            mss_broker, MSSANTE_INBOUND.name(prefix), until=lambda r: len(r) >= 1
        )
        dead = await read_records(mss_broker, DEADLETTER.name(prefix), until=lambda r: len(r) >= 1)
        # Relais's mail, the error MDN; no "processed" at receipt (issue 15: only after the
        # DPI's ACK, tests/integration/test_lps_delivery.py).
        doctor_mail = await mss_mail_servers.wait_for_mail("dr.durand", 2)
        connected = REGISTRY.get_sample_value("relais_mss_imap_connected", {"mailbox": "INBOX"})
    assert connected == 1  # while it watched
    assert REGISTRY.get_sample_value("relais_mss_imap_connected", {"mailbox": "INBOX"}) == 0
    sample = REGISTRY.get_sample_value
    assert (
        sample("relais_mss_acknowledgements_total", {"kind": "DSN", "outcome": "REJECTED"}) or 0
    ) >= 1
    assert (
        sample("relais_mss_acknowledgements_total", {"kind": "MDN", "outcome": "DELIVERED"}) or 0
    ) >= 1
    assert (sample("relais_mss_inbound_mails_total", {"outcome": "quarantined"}) or 0) >= 1
    assert (sample("relais_mss_mails_sent_total", {"operator": "medecin.mssante.fr"}) or 0) >= 2
    assert (sample("relais_mss_smtp_seconds_count", {"operator": "medecin.mssante.fr"}) or 0) >= 2

    # Acknowledgements became statuses of the right deliveries.
    by_code = {(s["event_id"], s["code"]): s for s in statuses}
    failed = by_code[(to_ghost["event_id"], "DSN 5.1.1")]
    assert failed["outcome"] == "REJECTED"
    assert failed["request_id"] == to_ghost["request_id"]
    assert "ghost" not in str(failed["detail"])
    assert by_code[(to_doctor["event_id"], "DSN 2.0.0")]["outcome"] == "DELIVERED"
    assert by_code[(to_doctor["event_id"], "MDN processed")]["outcome"] == "DELIVERED"
    # ... and ZAM business acks for the producer that sent each document.
    zams = {(a["kind"], a["original_control_id"]): a for a in acks}
    ghost_zam = zams[("Z02", "CTL-GHOST")]
    assert ghost_zam["accepted"] is False
    assert b"ZAM^Z02^ZAM_Z01" in ghost_zam["message"]
    assert b"ERR|||207^" in ghost_zam["message"]
    assert b"5.1.1" in ghost_zam["message"]
    assert zams[("Z02", "CTL-DOC")]["accepted"] is True
    read_zam = zams[("Z03", "CTL-DOC")]
    assert read_zam["accepted"] is True
    assert read_zam["facility"] == "LABO-X"
    assert b"LECTEUR_MSS" in read_zam["message"]
    assert DOCTOR.encode() in read_zam["message"]

    # The document mail: its CDA is on the bus, sealed, with the patient from the CDA.
    [document] = inbound
    assert document["sector"] == "MSSANTE"
    assert document["source"]["facility"] == "medecin.mssante.fr"
    assert document["document"]["type_code"] == "11490-0"
    content = open_envelope(
        KEYRING,
        Envelope.from_record(document["document"]["content"]),
        event_id=document["event_id"],
        purpose="content",
    )
    assert content == sample_cda(LETTER_CDA)
    # The tampered copy: dead-lettered with the reason, quarantined, answered with an error MDN.
    [letter_dead] = dead
    assert letter_dead["reason_code"] == "xdm-hash-mismatch"
    assert letter_dead["stage"] == "mss-inbound"
    assert await mss_mail_servers.fetch_all("relais") == []
    assert len(await mss_mail_servers.fetch_all("relais", "Relais-Quarantine")) == 1
    assert len(await mss_mail_servers.fetch_all("relais", "Relais-Processed")) == 4
    subjects = sorted(str(parse(m)["Subject"]) for m in doctor_mail)
    assert not any(s.startswith("[OK Intégration système]") for s in subjects)
    assert any(s.startswith("[KO Intégration système !][xdm-hash-mismatch]") for s in subjects)
    replies = [parse(m) for m in doctor_mail if parse(m).get_content_type() == "multipart/report"]
    assert len(replies) == 1
    assert all(r.get_param("report-type") == "disposition-notification" for r in replies)
    await sender.close()

    # A restart: a mail delivered while no watcher runs is taken, and nothing is taken twice.
    late = mss_request(KEYRING, RELAIS, recipient_plain=RELAIS.encode())
    late_mail = compose(late, KEYRING, doctor_compose(), NOW).message
    mss_mail_servers.deliver(RELAIS, late_mail.as_bytes())
    async for _ in watching(mss_mail_servers, mss_broker, prefix):
        inbound = await read_records(
            mss_broker, MSSANTE_INBOUND.name(prefix), until=lambda r: len(r) >= 2
        )
        await asyncio.sleep(1.5)  # a second round of the watcher, to see no repeat
        inbound = await read_records(
            mss_broker, MSSANTE_INBOUND.name(prefix), until=lambda r: len(r) >= 3, timeout_s=2
        )
    assert len(inbound) == 2
    assert len({r["event_id"] for r in inbound}) == 2
    assert len(await mss_mail_servers.fetch_all("relais", "Relais-Processed")) == 5
