"""The MSSanté send worker: consume delivery requests, mail them, report, commit.

A consumer of ``deliveries.mssante`` on the loop every sink shares
(:mod:`relais.sink_loop`, manual commits), like the DMP sink. For each request
it composes the mail (:mod:`mss_bridge.compose`), sends it (:class:`SmtpSender`),
writes a ``DeliveryStatus``, waits for the broker's acknowledgement, and only
then commits:

- accepted by the operator's server: ``DELIVERED`` with the SMTP reply code (the
  recipient side's DSN and MDN follow as further statuses, see :mod:`inbound`);
- 5xx, or a request that can never make a mail (bad address, CDA without XDS
  metadata): ``REJECTED`` plus a dead letter with the reason;
- transient (4xx, timeout, server down, TLS trouble): ``RETRYING``, the partition
  is paused and rewound, and the same request is tried again after a backoff.

The delivery ledger (:mod:`relais.delivery_ledger`) records SENDING before
the SMTP transaction and DONE after: a request already done is reported again,
never mailed twice. SMTP has no way to ask whether a mail arrived, so a request
left SENDING by a crash is mailed again — with the same Message-ID (derived
from the request), which the recipient's software recognises as the same mail;
its status says so.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from mss_bridge.compose import ComposeConfig, ComposedMail, compose
from mss_bridge.patient_hold import PatientHolds
from relais.audit_records import delivery
from relais.backoff import exponential_backoff
from relais.contracts import Record
from relais.deadletter import Failure
from relais.delivery_ledger import Entry, LedgerStore, Outcome, Step, done, next_step, sending
from relais.delivery_metrics import DeliveryMetrics
from relais.delivery_status import status_of
from relais.document_store import DocumentStore, StoreUnavailableError
from relais.document_store.bodies import is_reference, read_content
from relais.health import READINESS, broker_reachable
from relais.kafka_clients import Target
from relais.keyring import Keyring
from relais.mail.errors import MssError, SmtpPermanent, SmtpTransient
from relais.mail.smtp import SmtpSender
from relais.metrics import StageMetrics
from relais.sink_loop import (
    GiveUp,
    Hooks,
    Out,
    Outputs,
    RetryLater,
    SinkLoop,
    SinkStage,
    decode_record,
)
from relais.topics import AUDIT, DELIVERY_LEDGER, DELIVERY_MSSANTE, DELIVERY_STATUS

log = logging.getLogger(__name__)
STAGE = "mss-sender"


class MssSendWorker:
    """Consume ``deliveries.mssante``, send each mail, write its status, then commit."""

    def __init__(
        self,
        *,
        bootstrap: Target,
        prefix: str,
        keyring: Keyring,
        sender: SmtpSender,
        compose_config: ComposeConfig,
        session_timeout_s: float = 6.0,
        retry_base_s: float = 0.5,
        retry_cap_s: float = 30.0,
        store: DocumentStore | None = None,
        concurrency: int = 1,
    ) -> None:
        self.prefix, self.keyring, self.sender = prefix, keyring, sender
        self.store = store
        self.compose_config = compose_config
        self.stage = SinkStage(STAGE, prefix, keyring, metrics=StageMetrics(STAGE), clock=_now)
        self.codec = self.stage.codec
        self.retry_base_s, self.retry_cap_s = retry_base_s, retry_cap_s
        self.loop = SinkLoop(
            bootstrap,
            self.stage,
            group_id=f"{prefix}-mss-sender",
            topics=[DELIVERY_MSSANTE.name(prefix)],
            session_timeout_s=session_timeout_s,
            max_records=20,
            backoff=lambda: exponential_backoff(retry_base_s, retry_cap_s),
            hooks=Hooks(assigned=self._moved, revoked=self._moved, after_poll=self._refresh),
            concurrency=concurrency,  # partitions mailed at once, each in its order
            commit_per_poll=True,  # the delivery ledger makes a replayed poll harmless
        )
        self.ledger = LedgerStore(bootstrap, DELIVERY_LEDGER.name(prefix), self.loop.producer)
        self.holds = PatientHolds(  # embargoed patients' copies
            bootstrap, self.stage, self.loop, ledger=self.ledger
        )
        self.deliveries = DeliveryMetrics("MSSANTE")
        self.attempts: dict[str, int] = {}
        READINESS.register("broker", broker_reachable(bootstrap))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, send, report, commit until ``stop``; an operator outage pauses, never blocks."""
        await self.loop.run(stop, self._handle)

    async def _moved(self, partitions: frozenset[TopicPartition]) -> None:
        await self.ledger.moved(partitions)
        self.holds.forget(tp.partition for tp in partitions)  # read back when needed

    async def _refresh(self) -> None:
        self.deliveries.refresh(_now(), self.ledger.size())
        await self.holds.tick(self._handle)  # the patients' copies whose release date came

    async def _handle(self, tp: TopicPartition, message: Any) -> Outputs | RetryLater:
        """Records to emit, or RetryLater with the RETRYING status (the partition pauses)."""
        try:
            request = decode_record(self.codec, message, "DeliveryRequest")
        except Exception as exc:  # an unreadable record is dead-lettered, never a crash
            raise GiveUp.because(exc) from exc
        await self.ledger.ensure(message.partition)
        entry = self.ledger.get(message.partition, request["request_id"])
        if entry is not None and next_step(entry) is Step.ALREADY_DONE:
            return [self._already_done(request, entry)]
        attempt = (
            max(self.attempts.get(request["request_id"], 0), entry.attempt if entry else 0) + 1
        )
        try:
            content = await self._content(request)
            mail = compose(request, self.keyring, self.compose_config, _now(), content)
        except StoreUnavailableError:
            raise  # the store, not the request: the sink loop tries it again later
        except MssError as exc:
            status, extra = self._rejected(request, exc, "compose", attempt, message)
            return [self._status(status), *extra]
        except Exception as exc:  # envelopes, contracts: dead-letter with the stage's reason
            raise GiveUp.because(exc, request["event_id"]) from exc
        if kept := await self.holds.keep(request, message, mail.recipient.domain, attempt):
            return [kept]  # the patient's copy under embargo (mss_bridge.patient_hold)
        resent = entry is not None  # SENDING: a crash left its fate unknown
        return await self._mail(request, mail, attempt, message, resent=resent)

    async def _content(self, request: Record) -> bytes | None:
        """The CDA, fetched once from the store (None for a withdrawal, or inline)."""
        document = request["document"]
        if document["action"] == "DELETE" or not is_reference(document["content"]):
            return None
        return await read_content(
            self.store, self.keyring, document, event_id=str(request["event_id"])
        )

    async def _mail(
        self, request: Record, mail: ComposedMail, attempt: int, message: Any, *, resent: bool
    ) -> Outputs | RetryLater:
        """SENDING in the ledger, the SMTP transaction, then DONE unless it must wait."""
        entry = sending(request["request_id"], attempt, now=_now())
        await self.ledger.write(message.partition, entry)
        status, extra = await self._send(request, mail, attempt, message)
        if status["outcome"] == "RETRYING":
            self.deliveries.retrying(request["request_id"], request["submitted_at"])
            return RetryLater([self._status(status)])
        final = Outcome(status["outcome"])
        audit = self.codec.encode("AuditEvent", delivery(status, component=STAGE))
        entry = done(request["request_id"], final, None, attempt, now=_now())
        await self.ledger.write(message.partition, entry)
        self.deliveries.settled(request["request_id"])
        self.deliveries.outcome(
            final,
            submitted_at=request["submitted_at"],
            now=_now(),
            sector=request["sector"],
            type_code=request["document"]["type_code"],
        )
        if resent and final == Outcome.DELIVERED:
            log.info("event %s mailed again after an unanswered send", request["event_id"])
        return [self._status(status), *extra, Out(AUDIT.name(self.prefix), audit)]

    def _already_done(self, request: Record, entry: Entry) -> Out:
        """The status of a request the ledger says is done: reported again, not mailed."""
        status = status_of(
            request,
            outcome=entry.outcome or Outcome.DELIVERED,
            code=entry.code,
            detail="already done (delivery ledger): not mailed again",
            attempt=entry.attempt,
            now=_now(),
        )
        return self._status(status)

    async def _send(
        self, request: Record, mail: ComposedMail, attempt: int, message: Any
    ) -> tuple[Record, Outputs]:
        """Send the mail: its status (RETRYING, DELIVERED, REJECTED) and any dead letter."""
        try:
            sent = await self.sender.send(
                mail.message,
                sender=str(self.compose_config.sender),
                recipient=str(mail.recipient),
                envelope_id=mail.envelope_id,
                notify_success=mail.delivery_receipt,
            )
        except SmtpTransient as exc:
            self.attempts[request["request_id"]] = attempt
            return self._not_yet(request, mail, attempt, exc), []
        except SmtpPermanent as exc:
            self.attempts.pop(request["request_id"], None)
            return self._rejected(request, exc, "smtp", attempt, message)
        self.attempts.pop(request["request_id"], None)
        return self._accepted(request, mail, attempt, sent.reply), []

    def _not_yet(
        self, request: Record, mail: ComposedMail, attempt: int, exc: SmtpTransient
    ) -> Record:
        """The RETRYING status of a mail the operator could not take now."""
        log.warning(
            "MSSanté mail for event %s to operator %s not sent yet (attempt %d): %s",
            request["event_id"],
            mail.recipient.domain,
            attempt,
            exc.reason_code,
        )
        return status_of(
            request,
            outcome="RETRYING",
            code=f"SMTP {exc.reply}",
            detail=exc.reason,
            attempt=attempt,
            now=_now(),
        )

    def _accepted(self, request: Record, mail: ComposedMail, attempt: int, reply: str) -> Record:
        """The DELIVERED status of a mail the operator's server accepted."""
        code = "SMTP 250" + (f" {reply.split(maxsplit=1)[0]}" if reply[:1].isdigit() else "")
        status = status_of(
            request,
            outcome="DELIVERED",
            code=code,
            detail=f"accepted by the MSSanté operator of {mail.recipient.domain}",
            attempt=attempt,
            now=_now(),
        )
        log.info(
            "MSSanté mail for event %s accepted by %s", request["event_id"], mail.recipient.domain
        )
        return status

    def _rejected(
        self, request: Record, exc: MssError, step: str, attempt: int, message: Any
    ) -> tuple[Record, Outputs]:
        """The REJECTED status and the dead letter of a request that can never be mailed."""
        code = f"SMTP {exc.reply}" if isinstance(exc, SmtpPermanent) else exc.reason_code
        status = status_of(
            request, outcome="REJECTED", code=code, detail=exc.reason, attempt=attempt, now=_now()
        )
        log.warning(
            "MSSanté delivery of event %s rejected at %s: %s", request["event_id"], step, code
        )
        failure = Failure(exc.reason_code, exc.reason)
        return status, [self.stage.dead_letter(failure, message, request["event_id"])]

    def _status(self, status: Record) -> Out:
        return Out(DELIVERY_STATUS.name(self.prefix), self.codec.encode("DeliveryStatus", status))


def _now() -> datetime:
    return datetime.now(UTC)
