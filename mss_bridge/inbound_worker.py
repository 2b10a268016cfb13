"""The mailbox worker: what Relais does with each mail its watchers take.

- a DSN or MDN becomes ``DeliveryStatus`` records on ``deliveries.status`` (linked to
  the original document through its Message-ID) and ``BusinessAck`` records on
  ``acks.business``: the HL7 ZAM^Z02 (delivery) / ZAM^Z03 (read) for the producer;
- a document mail becomes one ``DocumentSubmitted`` per CDA on ``mssante.inbound``,
  with the mail's context (sealed, :mod:`mss_bridge.lps_context`); the MDN ``processed``
  is *not* sent here: the LPS delivery (:mod:`mss_bridge.lps_delivery`) sends it once the
  producer's DPI acknowledged the documents (LPS volet, STANDARDS.md §5);
- a mail that cannot be taken in is dead-lettered (the raw mail, sealed) with its
  reason, quarantined, and answered with an error MDN (or a plain error mail when no
  receipt was asked for); reports and auto-submitted mail are never answered.

Records are published with acks=all and awaited before the watcher moves the mail:
if the broker is down the mail stays in place and is tried again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from email.message import EmailMessage

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from domain.mssante_address import PATIENT_DOMAIN
from mss_bridge.acknowledgements import Acknowledgement
from mss_bridge.imap_watcher import Disposition
from mss_bridge.inbound import InboundMail, is_report, parse_mail, read_mail, submissions
from mss_bridge.lps_context import (
    HEADER,
    MailContext,
    header_block,
    mail_text,
    mailboxes,
    seal_context,
)
from mss_bridge.metrics import ACKNOWLEDGEMENTS, INBOUND_DOCUMENTS, INBOUND_MAILS
from mss_bridge.replies import InboundSetup, send_reply
from mss_bridge.status import status_of_ref
from mss_bridge.tracking import mail_signer
from producers.hl7.business_ack import BusinessAck, build_business_ack
from relais.contracts import Codec, Record
from relais.deadletter import Failure, Origin, dead_letter, derived_id
from relais.keyring import Keyring
from relais.mail.errors import AcknowledgementError, MssError
from relais.mail.smtp import SmtpSender
from relais.topics import BUSINESS_ACKS, DEADLETTER, DELIVERY_STATUS, MSSANTE_INBOUND

log = logging.getLogger(__name__)
STAGE = "mss-inbound"
Publication = tuple[str, str, dict[str, object], bytes | None]
__all__ = ["InboundSetup", "MailboxWorker"]


class MailboxWorker:
    """The handler a :class:`MailboxWatcher` calls for each mail."""

    def __init__(
        self,
        *,
        producer: AIOKafkaProducer,
        prefix: str,
        keyring: Keyring,
        sender: SmtpSender,
        setup: InboundSetup,
    ) -> None:
        self.producer, self.prefix, self.keyring = producer, prefix, keyring
        self.sender, self.setup = sender, setup
        self.codec = Codec()

    async def __call__(self, raw: bytes) -> Disposition:
        now = datetime.now(UTC)
        try:
            mail = read_mail(raw, mail_signer(self.keyring))
        except MssError as exc:
            return await self._refuse(raw, exc, now)
        try:
            if mail.acknowledgements:
                await self._acknowledgements(mail, now)
                INBOUND_MAILS.labels("acknowledgement").inc()
            else:
                await self._documents(mail, raw, now)
                INBOUND_MAILS.labels("processed").inc()
        except KafkaError as exc:
            log.warning(
                "broker unavailable for mail %s (%s); kept", _hash(mail), type(exc).__name__
            )
            return Disposition.RETRY
        return Disposition.PROCESSED

    async def _publish(
        self,
        records: list[Publication],
        headers: list[list[tuple[str, bytes]]] | None = None,
    ) -> None:
        sends = [
            await self.producer.send(
                topic,
                key=key,
                value=self.codec.encode(kind, record),
                headers=headers[i] if headers else None,
            )
            for i, (topic, kind, record, key) in enumerate(records)
        ]
        await asyncio.gather(*sends)

    async def _acknowledgements(self, mail: InboundMail, now: datetime) -> None:
        records: list[Publication] = []
        for ack in mail.acknowledgements:
            ACKNOWLEDGEMENTS.labels(ack.kind, ack.outcome).inc()
            status = status_of_ref(
                ack.ref, outcome=ack.outcome, code=ack.code, detail=ack.detail, now=now
            )
            records.append((DELIVERY_STATUS.name(self.prefix), "DeliveryStatus", status, None))
            zam = self._business_ack(ack, now)
            if zam is not None:
                records.append((BUSINESS_ACKS.name(self.prefix), "BusinessAck", zam, None))
            log.info("%s for event %s: %s", ack.kind, ack.ref.event_id, ack.code)
        await self._publish(records)

    def _business_ack(self, ack: Acknowledgement, now: datetime) -> Record | None:
        """The ``BusinessAck`` (ZAM^Z02 delivery / Z03 read) this acknowledgement makes."""
        if ack.receipt is None:
            return None
        ack_id = derived_id("zam", ack.ref.request_id, ack.receipt, ack.outcome, ack.recipient)
        # The ZAM carries no patient data: a patient's address is its INS, so it is left out.
        party = ack.recipient if ack.recipient and not _is_patient(ack.recipient) else None
        zam = build_business_ack(
            BusinessAck(
                kind=ack.receipt,
                accepted=ack.outcome == "DELIVERED",
                original_control_id=ack.ref.control_id,
                producer_application=ack.ref.application,
                producer_facility=ack.ref.facility,
                party_address=party,
                error=(ack.error_code, ack.detail[:80]) if ack.error_code else None,
            ),
            control_id=ack_id.replace("-", "")[:20],
            now=now,
        )
        return {
            "ack_id": ack_id,
            "event_id": ack.ref.event_id,
            "request_id": ack.ref.request_id,
            "kind": ack.receipt,
            "accepted": ack.outcome == "DELIVERED",
            "facility": ack.ref.facility,
            "application": ack.ref.application,
            "original_control_id": ack.ref.control_id,
            "message": zam,
            "at": now,
        }

    async def _documents(self, mail: InboundMail, raw: bytes, now: datetime) -> None:
        """One record per CDA, all keyed like the first (one partition: the mail's order),
        each with the mail's context; the mail is answered after the DPI's ACK."""
        # an intake point: the patient's key is made here if they have none, in a thread
        # (the key store's I/O never runs on the event loop)
        records, contexts = await asyncio.to_thread(self._sealed, mail, raw, now)
        key = str(records[0]["patient"]["patient_key"]).encode()
        topic = MSSANTE_INBOUND.name(self.prefix)
        await self._publish(
            [(topic, "DocumentSubmitted", r, key) for r in records],
            [[(HEADER, context)] for context in contexts],
        )
        INBOUND_DOCUMENTS.inc(len(records))
        for record in records:
            log.info(
                "document event %s received by mail from %s", record["event_id"], mail.sender_domain
            )

    def _sealed(
        self, mail: InboundMail, raw: bytes, now: datetime
    ) -> tuple[list[Record], list[bytes]]:
        """The mail's records and their sealed contexts, under the patient's key (made now
        when they have none: this is intake)."""
        keyring = self.keyring.minting()
        records = submissions(mail, keyring, now, mailboxes=mailboxes(mail.message))
        head, body = header_block(raw), mail_text(mail.message)
        contexts = [
            seal_context(
                keyring.for_patient(str(record["patient"]["patient_key"])),
                MailContext(head, body, index, len(records)),
                event_id=str(record["event_id"]),
            )
            for index, record in enumerate(records)
        ]
        return records, contexts

    async def _refuse(self, raw: bytes, exc: MssError, now: datetime) -> Disposition:
        try:
            message = parse_mail(raw)
        except MssError:
            message = EmailMessage()
        mail_id = str(message.get("Message-ID", "")) or _hash_bytes(raw)
        letter = dead_letter(
            self.keyring,
            stage=STAGE,
            failure=Failure(exc.reason_code, exc.reason),
            origin=Origin(f"mailbox:{self.setup.mailbox}"),
            original=raw,
            now=now,
            dead_letter_id=derived_id("mss-quarantine", mail_id),
        )
        try:
            await self._publish([(DEADLETTER.name(self.prefix), "DeadLetter", letter, None)])
        except KafkaError:
            return Disposition.RETRY
        INBOUND_MAILS.labels("quarantined").inc()
        log.warning("mail %s quarantined: %s", letter["dead_letter_id"], exc.reason_code)
        if not is_report(message) and not isinstance(exc, AcknowledgementError):
            error = (exc.reason_code, exc.reason[:200])
            await send_reply(self.sender, self.setup, message, mail_id, error=error, now=now)
        return Disposition.QUARANTINE


def _hash(mail: InboundMail) -> str:
    return _hash_bytes(mail.message_id.encode())


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _is_patient(address: str) -> bool:
    return address.lower().endswith("@" + PATIENT_DOMAIN)
