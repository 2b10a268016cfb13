"""Deliver documents received by MSSanté to the producer's DPI (LPS volet), then answer the mail.

Consumes ``mssante.inbound`` (the sink loop every sink shares, :mod:`relais.sink_loop`).
For each document: find the DPI of the mailbox that received it (``RELAIS_ACK_ROUTES``,
:func:`mss_bridge.lps_context.route_for`), build the MDM^T02 of the LPS volet
(:mod:`producers.hl7.lps_message`), send it over MLLP and wait for the DPI's ACK:

* ``AA``/``CA``: done; when it was the mail's last document, the MDN ``processed`` goes
  to the sender (only now: the DPI took responsibility);
* ``AR``/``CR``, a refused connection or a timeout: tried again later (the partition
  pauses with backoff, the others flow), nothing answered yet;
* ``AE`` (or any other answer): dead-lettered with the DPI's error codes, and the mail
  answered with the MDN ``processed/Error: <code>^<label>`` (or the plain error mail);
* no DPI for the receiving mailbox: dead-lettered (``no-lps-route``: add the route and
  replay) and the mail answered with an error MDN.

Logs and dead-letter reasons carry event ids, facility keys and the DPI's codes only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from aiokafka import TopicPartition

from mss_bridge.lps_context import MailContext, Route, context_of, mdn_due, open_context, route_for
from mss_bridge.replies import InboundSetup, send_reply
from producers.hl7.lps_message import DpiAnswer, LpsDocument, LpsMail, answer_of, build_lps_mdm
from producers.hl7.patient import PatientIdentity
from producers.mllp.ack_forwarder import send_mllp
from producers.mllp.ack_routes import Endpoint
from relais.contracts import Record
from relais.deadletter import Failure
from relais.delivery_metrics import DELIVERIES
from relais.document_store.bodies import inline_content
from relais.document_store.errors import StoreUnavailableError
from relais.envelope import Envelope, open_envelope
from relais.health import READINESS, broker_reachable
from relais.kafka_clients import Target
from relais.keyring import Keyring
from relais.mail.smtp import SmtpSender
from relais.metrics import StageMetrics
from relais.patient_traits import open_traits
from relais.sink_loop import GiveUp, Outputs, RetryLater, SinkLoop, SinkStage, decode_record
from relais.topics import MSSANTE_INBOUND

log = logging.getLogger(__name__)
STAGE = "lps-delivery"
DESTINATION = "LPS"


class LpsDelivery:
    def __init__(
        self,
        *,
        bootstrap: Target,
        prefix: str,
        keyring: Keyring,
        routes: Mapping[str, Endpoint],
        sender: SmtpSender,
        setup: InboundSetup,
        timeout_s: float = 10.0,
        session_timeout_s: float = 6.0,
    ) -> None:
        self.keyring, self.routes, self.timeout_s = keyring, routes, timeout_s
        self.sender, self.setup = sender, setup
        self.stage = SinkStage(STAGE, prefix, keyring, metrics=StageMetrics(STAGE))
        self.loop = SinkLoop(
            bootstrap,
            self.stage,
            group_id=f"{prefix}-lps-delivery",
            topics=[MSSANTE_INBOUND.name(prefix)],
            session_timeout_s=session_timeout_s,
        )
        self.answered: set[str] = set()  # mails answered with an error, documents to come
        READINESS.register("broker", broker_reachable(bootstrap))

    async def run(self, stop: asyncio.Event) -> None:
        await self.loop.run(stop, self._handle)

    async def _handle(self, tp: TopicPartition, message: Any) -> Outputs | RetryLater:
        record = self._decode(message)
        event_id = str(record["event_id"])
        context = self._context(message, event_id)
        route = route_for(self._mailboxes(record), self.routes)
        if route is None:
            await self._answered(record, context, ("no-lps-route", "no DPI for this mailbox"))
            reason = (
                "no DPI route for the mailbox that received this document: add the mailbox "
                "(or its domain) to RELAIS_ACK_ROUTES and replay this dead letter"
            )
            raise GiveUp(Failure("no-lps-route", reason), event_id)
        mdm = build_lps_mdm(
            self._document(record, context, route),
            control_id=event_id.replace("-", "")[:20],
            now=datetime.now(UTC),
        )
        try:
            answer = answer_of(await send_mllp(route.endpoint, mdm, self.timeout_s))
        except (OSError, TimeoutError) as exc:
            return self._later(event_id, route, type(exc).__name__)
        if answer.verdict == "retry":
            return self._later(event_id, route, answer.code)
        if answer.verdict == "refused":
            raise await self._refused(record, context, route, answer)
        DELIVERIES.labels(DESTINATION, "DELIVERED").inc()
        log.info("event %s delivered to DPI %s (%s)", event_id, route.facility, answer.code)
        await self._answered(record, context, None)
        return []

    def _decode(self, message: Any) -> Record:
        try:
            return decode_record(self.stage.codec, message, "DocumentSubmitted")
        except Exception as exc:  # unreadable: dead-lettered, never a crash
            raise GiveUp.because(exc) from exc

    def _context(self, message: Any, event_id: str) -> MailContext | None:
        """The mail around the document; None for a replayed dead letter (not answered again)."""
        sealed = context_of(message.headers)
        if sealed is None:
            log.info("event %s has no mail context (a replay): the mail is not answered", event_id)
            return None
        try:
            return open_context(self.keyring, sealed, event_id=event_id)
        except StoreUnavailableError:  # the key store down, a keyring to restart: retried
            raise
        except Exception as exc:  # an unreadable context only loses the answer
            log.warning("event %s: mail context unreadable (%s)", event_id, type(exc).__name__)
            return None

    def _mailboxes(self, record: Record) -> tuple[str, ...]:
        sealed = record["hints"].get("recipients")
        if not sealed:
            return ()
        try:
            plain = open_envelope(
                self.keyring,
                Envelope.from_record(sealed),
                event_id=record["event_id"],
                purpose="recipient",
            )
            return tuple(str(a) for a in json.loads(plain))
        except StoreUnavailableError:  # not the record's fault: retried, never dead-lettered
            raise
        except Exception as exc:
            raise GiveUp.because(exc, record["event_id"]) from exc

    def _document(self, record: Record, context: MailContext | None, route: Route) -> LpsDocument:
        try:
            traits = open_traits(record, self.keyring)
            document = record["document"]
            content = inline_content(self.keyring, document, event_id=record["event_id"])
            patient = _patient(traits)
        except StoreUnavailableError:  # not the record's fault: retried, never dead-lettered
            raise
        except Exception as exc:
            raise GiveUp.because(exc, record["event_id"]) from exc
        return LpsDocument(
            content=content,
            type_code=document["type_code"],
            type_label=document["type_label"],
            unique_id=document["unique_id"],
            patient=patient,
            mail=_mail(context, route),
            dpi_facility=route.facility,
            action=document["action"],
            parent_unique_id=document.get("parent_unique_id"),
        )

    def _later(self, event_id: str, route: Route, why: str) -> RetryLater:
        DELIVERIES.labels(DESTINATION, "RETRYING").inc()
        log.warning(
            "event %s: DPI %s not reached (%s); retrying later", event_id, route.facility, why
        )
        return RetryLater()

    async def _refused(
        self, record: Record, context: MailContext | None, route: Route, answer: DpiAnswer
    ) -> GiveUp:
        DELIVERIES.labels(DESTINATION, "REJECTED").inc()
        code, label = answer.error or (answer.code, "refused by the DPI")
        await self._answered(record, context, (code, label))
        reason = f"DPI {route.facility} refused the MDM with MSA-1 {answer.code}: {code} {label}"
        log.warning("event %s refused by DPI %s: %s", record["event_id"], route.facility, code)
        return GiveUp(Failure("lps-refused", reason), record["event_id"])

    async def _answered(
        self, record: Record, context: MailContext | None, error: tuple[str, str] | None
    ) -> None:
        """Answer the mail when this document decides it (:func:`mdn_due`)."""
        if context is None:
            return
        mail_id = str(record["source"]["message_control_id"])
        due = mdn_due(
            refused=error is not None, last=context.last, already_answered=mail_id in self.answered
        )
        if context.last:
            self.answered.discard(mail_id)
        elif due == "error":
            self.answered.add(mail_id)
        if due is not None:
            original, now = context.original(), datetime.now(UTC)
            await send_reply(self.sender, self.setup, original, mail_id, error=error, now=now)


def _patient(traits: Mapping[str, Any]) -> PatientIdentity:
    """The identity the watcher sealed (a :class:`PatientIdentity` as JSON)."""
    return PatientIdentity(
        ins=traits.get("ins"),
        ins_oid=traits.get("ins_oid"),
        local_ids=tuple((str(v), str(a)) for v, a in traits.get("local_ids") or ()),
        birth_name=str(traits.get("birth_name") or ""),
        given_names=str(traits.get("given_names") or ""),
        birth_date=str(traits.get("birth_date") or ""),
        sex=str(traits.get("sex") or ""),
        birthplace_code=traits.get("birthplace_code"),
        reliability=traits.get("reliability"),
    )


def _mail(context: MailContext | None, route: Route) -> LpsMail:
    if context is None:
        return LpsMail(sender=None, mailbox=route.mailbox)
    original = context.original()
    sender = original.get("From")
    reply_to = original.get("Reply-To")
    return LpsMail(
        sender=_address(sender),
        mailbox=route.mailbox,
        reply_to=_address(reply_to),
        subject=str(original.get("Subject", "")),
        body=context.body,
    )


def _address(value: object) -> str | None:
    return parseaddr(str(value))[1] or None if value else None
