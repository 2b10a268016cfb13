"""The MSSanté send worker against real servers: tansu, Postfix (mutual TLS), Dovecot.

The test plays the operator and the recipients: it produces DeliveryRequest records
onto deliveries.mssante, runs the worker, then reads the delivered mail over IMAP
with its own client and checks the package, the headers and the attachments.
"""

from __future__ import annotations

import asyncio
import email
import hashlib
import io
import zipfile
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import default

import aiosmtplib
import pytest

from domain.mssante_address import parse_address
from mss_bridge.compose import ComposeConfig, pdf_copy
from mss_bridge.outbound import MssSendWorker
from mss_bridge.tracking import mail_signer, read_message_id
from mss_bridge.xdm_package import unpack_package
from relais.contracts import Codec
from relais.keyring import Keyring
from relais.mail.errors import SmtpError, SmtpPermanent, SmtpTransient
from relais.mail.smtp import SmtpConfig, SmtpSender, SmtpServer
from relais.topics import DEADLETTER, DELIVERY_MSSANTE, DELIVERY_STATUS
from tests.integration.mail_servers import (
    BUSY,
    DOCTOR,
    PATIENT,
    MailServers,
    new_topics,
    produce,
    read_records,
)
from tests.integration.mail_servers import (
    OUTBOX as RELAIS,
)
from tests.mss_records import LETTER_CDA, mss_request, sample_cda

CODEC = Codec()
KEYRING = Keyring.generate()


def smtp_config(servers: MailServers, **changes: object) -> SmtpConfig:
    config = SmtpConfig(
        server=SmtpServer("127.0.0.1", servers.smtp_port, "starttls"),
        ca_file=servers.pki.ca,
        client_cert=servers.pki.client_cert,
        client_key=servers.pki.client_key,
        max_attempts=2,
        backoff_base_s=0.05,
        backoff_cap_s=0.1,
    )
    return SmtpConfig(**{**config.__dict__, **changes})  # type: ignore[arg-type]


COMPOSE = ComposeConfig(
    sender=parse_address(RELAIS), product_nil="NIL-RELAIS-TEST", read_receipt=True
)


async def run_worker(
    servers: MailServers, bootstrap: str, prefix: str
) -> AsyncIterator[MssSendWorker]:
    sender = SmtpSender(smtp_config(servers))
    worker = MssSendWorker(
        bootstrap=bootstrap,
        prefix=prefix,
        keyring=KEYRING,
        sender=sender,
        compose_config=COMPOSE,
        retry_base_s=0.2,
        retry_cap_s=0.5,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await sender.close()


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


async def mail_of(servers: MailServers, user: str, event_id: str) -> EmailMessage:
    """The mail in ``user``'s inbox that carries ``event_id`` (other tests write there too)."""
    for _ in range(50):
        for raw in await servers.fetch_all(user):
            message = parse(raw)
            ref = read_message_id(message["Message-ID"], mail_signer(KEYRING))
            if ref is not None and ref.event_id == event_id:
                return message
        await asyncio.sleep(0.2)
    raise AssertionError(f"no mail for event {event_id} in {user}'s mailbox")


def attachments(message: EmailMessage) -> dict[str, bytes]:
    return {part.get_filename() or "": part.get_content() for part in message.iter_attachments()}


async def test_documents_reach_the_patient_and_the_doctor_as_mssante_mail(
    mss_mail_servers: MailServers, mss_broker: str
) -> None:
    prefix = await new_topics(mss_broker)
    lab = sample_cda()
    letter = sample_cda(LETTER_CDA)
    to_patient = mss_request(KEYRING, PATIENT, cda=lab)
    to_doctor = mss_request(KEYRING, DOCTOR, cda=letter, recipient_plain=f'["{DOCTOR}"]'.encode())
    await produce(
        mss_broker,
        DELIVERY_MSSANTE.name(prefix),
        [
            CODEC.encode("DeliveryRequest", to_patient),
            b"not an avro record",
            CODEC.encode("DeliveryRequest", to_doctor),
        ],
    )
    async for _ in run_worker(mss_mail_servers, mss_broker, prefix):
        statuses = await read_records(
            mss_broker, DELIVERY_STATUS.name(prefix), until=lambda r: len(r) >= 2
        )
        dead = await read_records(mss_broker, DEADLETTER.name(prefix), until=lambda r: len(r) >= 1)

    by_event = {s["event_id"]: s for s in statuses}
    assert {s["outcome"] for s in statuses} == {"DELIVERED"}
    assert by_event[to_patient["event_id"]]["code"].startswith("SMTP 250")
    assert by_event[to_doctor["event_id"]]["destination"] == "MSSANTE"
    assert [d["reason_code"] for d in dead] == ["undecodable-record"]

    # The patient's Mon espace santé mailbox, read with the test's own IMAP client.
    mail = await mail_of(mss_mail_servers, "279035121518989", to_patient["event_id"])
    assert mail["Subject"] == "XDM/1.0/DDM+CR d'examens biologiques PAT-TROIS DOMINIQUE 28/03/1979"
    assert mail["From"] == RELAIS
    assert mail["To"] == PATIENT
    assert mail["X-MSS-CODECDA"] == "11502-2"
    assert mail["X-MSS-INS"] == "O"
    assert mail["X-MSS-NIL"] == "NIL-RELAIS-TEST"
    assert mail["X-MSS-MES"] == "FIN"
    assert mail["Disposition-Notification-To"] == RELAIS
    ref = read_message_id(mail["Message-ID"], mail_signer(KEYRING))
    assert ref is not None
    assert ref.event_id == to_patient["event_id"]
    assert ref.control_id == "MSG-0001"
    assert ref.facility == "LABO-X"
    files = attachments(mail)
    assert set(files) == {"IHE_XDM.ZIP", "DOCUMENT.PDF"}
    names = zipfile.ZipFile(io.BytesIO(files["IHE_XDM.ZIP"])).namelist()
    assert {"INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML"} <= set(names)
    [document] = unpack_package(files["IHE_XDM.ZIP"])  # hash and size checked against METADATA
    assert document.content == lab
    assert document.metadata.hash_sha1 == hashlib.sha1(lab).hexdigest()
    assert document.metadata.patient_id.startswith("279035121518989^^^&1.2.250.1.213.1.4.10")
    assert files["DOCUMENT.PDF"] == pdf_copy(lab)
    assert files["DOCUMENT.PDF"].startswith(b"%PDF-")

    # The doctor's mailbox: the letter, no PDF copy (it has none), no X-MSS-MES.
    mail = await mail_of(mss_mail_servers, "dr.martin", to_doctor["event_id"])
    assert mail["X-MSS-CODECDA"] == "11490-0"
    assert mail["X-MSS-MES"] is None
    assert set(attachments(mail)) == {"IHE_XDM.ZIP"}
    assert unpack_package(attachments(mail)["IHE_XDM.ZIP"])[0].content == letter


async def test_refusals_are_rejected_and_a_busy_mailbox_is_retried(
    mss_mail_servers: MailServers, mss_broker: str
) -> None:
    prefix = await new_topics(mss_broker)
    outside = mss_request(KEYRING, "someone@elsewhere.mssante.fr")  # not relayed: 554
    busy = mss_request(KEYRING, BUSY)  # 450 at RCPT
    bad_ins = mss_request(KEYRING, "279035121518988@patient.mssante.fr")  # wrong INS key
    await produce(
        mss_broker,
        DELIVERY_MSSANTE.name(prefix),
        [
            CODEC.encode("DeliveryRequest", r) for r in (outside, bad_ins, busy)
        ],  # busy last: it holds its partition,
    )
    async for _ in run_worker(mss_mail_servers, mss_broker, prefix):
        statuses = await read_records(
            mss_broker,
            DELIVERY_STATUS.name(prefix),
            until=lambda r: (
                sum(s["event_id"] == busy["event_id"] for s in r) >= 2
                and len({s["event_id"] for s in r}) == 3
            ),
        )
        dead = await read_records(mss_broker, DEADLETTER.name(prefix), until=lambda r: len(r) >= 2)

    by_event: dict[str, list[dict[str, object]]] = {}
    for status in statuses:
        by_event.setdefault(status["event_id"], []).append(status)
    [rejected] = by_event[outside["event_id"]]
    assert rejected["outcome"] == "REJECTED"
    assert str(rejected["code"]).startswith("SMTP 554")
    [invalid] = by_event[bad_ins["event_id"]]
    assert invalid["outcome"] == "REJECTED"
    assert invalid["code"] == "mss-bad-address"
    assert "INS" in str(invalid["detail"])
    assert "279035121518988" not in str(invalid["detail"])
    retries = by_event[busy["event_id"]]
    assert {s["outcome"] for s in retries} == {"RETRYING"}
    assert retries[0]["code"] == "SMTP 450 4.2.1"
    assert [s["attempt"] for s in retries][:2] == [1, 2]
    assert sorted(d["reason_code"] for d in dead) == ["mss-bad-address", "smtp-rejected"]
    assert await mss_mail_servers.fetch_all("busy.doctor") == []


async def test_tls_is_verified_both_ways_and_implicit_tls_works(
    mss_mail_servers: MailServers,
) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        RELAIS,
        "secretariat@medecin.mssante.fr",
        "t",
    )
    message.set_content("tls check")

    implicit = SmtpSender(
        smtp_config(
            mss_mail_servers,
            server=SmtpServer("127.0.0.1", mss_mail_servers.smtps_port, "implicit"),
        )
    )
    sent = await implicit.send(message, sender=RELAIS, recipient="secretariat@medecin.mssante.fr")
    await implicit.close()
    assert sent.reply.startswith("2.0.0")
    assert sent.attempts == 1

    # A server whose certificate does not chain to the configured CA is not trusted.
    wrong_ca = SmtpSender(
        smtp_config(mss_mail_servers, ca_file=mss_mail_servers.pki.other_ca, max_attempts=1)
    )
    with pytest.raises(SmtpTransient) as caught:
        await wrong_ca.send(message, sender=RELAIS, recipient="secretariat@medecin.mssante.fr")
    assert caught.value.reason_code == "smtp-tls"

    # The submission port demands Relais's client certificate.
    with pytest.raises(aiosmtplib.SMTPException):
        await aiosmtplib.send(
            message,
            hostname="127.0.0.1",
            port=mss_mail_servers.smtp_port,
            start_tls=True,
            tls_context=mss_mail_servers.client_context(with_cert=False),
        )
    no_cert = SmtpSender(
        smtp_config(mss_mail_servers, client_cert=None, client_key=None, max_attempts=1)
    )
    with pytest.raises(SmtpError):
        await no_cert.send(message, sender=RELAIS, recipient="secretariat@medecin.mssante.fr")
    await no_cert.close()
    assert (
        len(await mss_mail_servers.wait_for_mail("secretariat")) == 1
    )  # only the implicit-TLS one


async def test_a_pooled_connection_carries_several_mails(mss_mail_servers: MailServers) -> None:
    sender = SmtpSender(smtp_config(mss_mail_servers, pool_size=1))
    for n in range(3):
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = RELAIS, DOCTOR, f"pool {n}"
        message.set_content("x")
        await sender.send(message, sender=RELAIS, recipient=DOCTOR)
    pool = next(iter(sender._pools.values()))
    assert len(pool.idle) == 1  # one connection, reused
    await sender.close()
    with pytest.raises(SmtpPermanent):
        await SmtpSender(smtp_config(mss_mail_servers)).send(
            message, sender=RELAIS, recipient="x@not-relayed.mssante.fr"
        )
