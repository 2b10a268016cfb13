"""The MSSanté send worker: consume delivery requests, mail them, report, commit.

A plain aiokafka consumer of ``deliveries.mssante`` with manual commits, shaped
like the DMP sink (:mod:`consumers.dmp.sink`). For each request it composes the
mail (:mod:`mss_bridge.compose`), sends it (:class:`SmtpSender`), writes a
``DeliveryStatus``, waits for the broker's acknowledgement, and only then commits:

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
from relais.audit_records import delivery
from relais.backoff import exponential_backoff
from relais.contracts import Codec, Record
from relais.deadletter import Failure, Origin, dead_letter_output, failure_of
from relais.delivery_ledger import LedgerStore, Step, done, next_step, sending
from relais.delivery_metrics import DeliveryMetrics
from relais.delivery_status import status_of
from relais.health import READINESS, broker_reachable
from relais.keyring import Keyring
from relais.mail.errors import MssError, SmtpPermanent, SmtpTransient
from relais.mail.smtp import SmtpSender
from relais.metrics import StageMetrics
from relais.partition_retry import PartitionRetry
from relais.sink_loop import SinkLoop, decode_record, sink_consumer, sink_producer
from relais.topics import AUDIT, DELIVERY_LEDGER, DELIVERY_MSSANTE, DELIVERY_STATUS

log = logging.getLogger(__name__)
STAGE = "mss-sender"
Outputs = list[tuple[str, bytes]]


class MssSendWorker:
    """Consume ``deliveries.mssante``, send each mail, write its status, then commit."""

    def __init__(
        self,
        *,
        bootstrap: str,
        prefix: str,
        keyring: Keyring,
        sender: SmtpSender,
        compose_config: ComposeConfig,
        session_timeout_s: float = 6.0,
        retry_base_s: float = 0.5,
        retry_cap_s: float = 30.0,
    ) -> None:
        self.prefix, self.keyring, self.sender = prefix, keyring, sender
        self.compose_config = compose_config
        self.codec = Codec()
        self.metrics = StageMetrics(STAGE)
        self.retry_base_s, self.retry_cap_s = retry_base_s, retry_cap_s
        self.consumer = sink_consumer(bootstrap, f"{prefix}-mss-sender", session_timeout_s)
        self.producer = sink_producer(bootstrap)
        self.retry = PartitionRetry(
            self.consumer, backoff=lambda: exponential_backoff(retry_base_s, retry_cap_s)
        )
        self.ledger = LedgerStore(bootstrap, DELIVERY_LEDGER.name(prefix), self.producer)
        self.deliveries = DeliveryMetrics("MSSANTE")
        self.attempts: dict[str, int] = {}
        READINESS.register("broker", broker_reachable(bootstrap))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, send, report, commit until ``stop``; an operator outage pauses, never blocks."""
        self.loop = SinkLoop(
            self.consumer,
            self.producer,
            self.retry,
            topics=[DELIVERY_MSSANTE.name(self.prefix)],
            max_records=20,
            partitions_moved=self.ledger.forget,
            after_batch=lambda: self.deliveries.refresh(_now(), self.ledger.size()),
        )
        await self.loop.run(stop, self._handle)

    async def _handle(self, tp: TopicPartition, message: Any) -> Outputs | None:
        """One request; None when it must be tried again later (partition paused)."""
        self.metrics.received()
        with self.metrics.timed():
            outputs, done = await self._outputs(message)
        for topic, _ in outputs:
            self.metrics.emitted(topic)
        if not done:
            await self.loop.emit(outputs, message.key)  # the RETRYING status, now
            return None
        return outputs

    async def _outputs(self, message: Any) -> tuple[Outputs, bool]:
        """Records to emit, and whether the request is finished (False: retry later)."""
        topic = DELIVERY_MSSANTE.name(self.prefix)
        origin = Origin(topic, message.partition, message.offset)
        try:
            request = decode_record(self.codec, message, "DeliveryRequest")
        except Exception as exc:  # an unreadable record is dead-lettered, never a crash
            return [self._dead_letter(failure_of(exc), origin, message)], True
        origin = Origin(topic, message.partition, message.offset, request["event_id"])
        await self.ledger.ensure(message.partition)
        entry = self.ledger.get(message.partition, request["request_id"])
        if entry is not None and next_step(entry) is Step.ALREADY_DONE:
            status = status_of(
                request,
                outcome=entry.outcome or "DELIVERED",
                code=entry.code,
                detail="already done (delivery ledger): not mailed again",
                attempt=entry.attempt,
                now=_now(),
            )
            return [self._status(status)], True
        attempt = (
            max(self.attempts.get(request["request_id"], 0), entry.attempt if entry else 0) + 1
        )
        try:
            mail = compose(request, self.keyring, self.compose_config, _now())
        except MssError as exc:
            status, extra = self._rejected(
                request, exc, "compose", attempt, origin=origin, message=message
            )
            return [self._status(status), *extra], True
        except Exception as exc:  # envelopes, contracts: dead-letter with the stage's reason
            failure = failure_of(exc)
            return [self._dead_letter(failure, origin, message)], True
        resent = entry is not None  # SENDING: a crash left its fate unknown
        await self.ledger.write(message.partition, sending(request["request_id"], attempt))
        status, extra = await self._send(request, mail, attempt, origin, message)
        outputs = [self._status(status), *extra]
        finished = status["outcome"] != "RETRYING"
        if finished:
            final = str(status["outcome"])
            audit = self.codec.encode("AuditEvent", delivery(status, component=STAGE))
            outputs.append((AUDIT.name(self.prefix), audit))
            await self.ledger.write(
                message.partition, done(request["request_id"], final, None, attempt)
            )
            self.deliveries.settled(request["request_id"])
            self.deliveries.outcome(
                final,
                submitted_at=request["submitted_at"],
                now=_now(),
                sector=request["sector"],
                type_code=request["document"]["type_code"],
            )
            if resent and final == "DELIVERED":
                log.info("event %s mailed again after an unanswered send", request["event_id"])
        else:
            self.deliveries.retrying(request["request_id"], request["submitted_at"])
        return outputs, finished

    async def _send(
        self, request: Record, mail: ComposedMail, attempt: int, origin: Origin, message: Any
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
            log.warning(
                "MSSanté mail for event %s to operator %s not sent yet (attempt %d): %s",
                request["event_id"],
                mail.recipient.domain,
                attempt,
                exc.reason_code,
            )
            status = status_of(
                request,
                outcome="RETRYING",
                code=f"SMTP {exc.reply}",
                detail=exc.reason,
                attempt=attempt,
                now=_now(),
            )
            return status, []
        except SmtpPermanent as exc:
            self.attempts.pop(request["request_id"], None)
            return self._rejected(request, exc, "smtp", attempt, origin=origin, message=message)
        self.attempts.pop(request["request_id"], None)
        code = "SMTP 250" + (f" {sent.reply.split()[0]}" if sent.reply[:1].isdigit() else "")
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
        return status, []

    def _rejected(
        self,
        request: Record,
        exc: MssError,
        step: str,
        attempt: int,
        *,
        origin: Origin,
        message: Any,
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
        return status, [self._dead_letter(failure, origin, message)]

    def _status(self, status: Record) -> tuple[str, bytes]:
        return DELIVERY_STATUS.name(self.prefix), self.codec.encode("DeliveryStatus", status)

    def _dead_letter(self, failure: Failure, origin: Origin, message: Any) -> tuple[str, bytes]:
        self.metrics.failed(failure.reason_code, dead_lettered=True)
        return dead_letter_output(
            self.codec,
            self.keyring,
            self.prefix,
            stage=STAGE,
            failure=failure,
            origin=origin,
            original=message.value or b"",
            now=_now(),
        )


def _now() -> datetime:
    return datetime.now(UTC)
