"""The DMP sink: file each DMP delivery request once, then report and commit.

A plain aiokafka consumer (manual commits). For each request it decrypts the
document and the INS, files them with :class:`DmpClient` (ITI-41), writes a
``DeliveryStatus`` (a dead letter when the DMP refuses, a ZAM^Z01 when the
producer asked for one), waits for the broker's acknowledgement, and only
then commits the offset. Transient failures (DMP down, 5xx, timeouts) are
retried with backoff on the same record (partition paused, no hot loop), so
nothing is skipped. The delivery ledger (:mod:`relais.delivery_ledger`)
makes every retry harmless: a request already done is not sent again, and
one whose send went unanswered is reconciled with the DMP (ITI-18) first —
the DMP never sees the same document filed twice, even when the sink is
killed between the send and the commit.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from consumers.dmp.business_ack import asked, business_ack
from consumers.dmp.client import DmpClient, DmpConfig
from consumers.dmp.submission import (
    DmpRejected,
    DmpUnavailable,
    Submission,
    patient_cx,
)
from domain.document_id import split_id
from domain.visibility import visibility_flags
from domain.xds.metadata import document_entry
from relais.audit_records import acknowledged, delivery
from relais.contracts import Codec, Record
from relais.deadletter import REPLAY_HEADER, Failure, Origin, dead_letter_output, failure_of
from relais.delivery_ledger import Entry, LedgerStore, Step, done, next_step, sending
from relais.delivery_metrics import DeliveryMetrics
from relais.delivery_status import status_of
from relais.envelope import Envelope, open_envelope
from relais.health import READINESS, Flag, broker_reachable
from relais.keyring import Keyring
from relais.metrics import StageMetrics
from relais.partition_retry import PartitionRetry
from relais.patient_traits import open_traits
from relais.settings import Settings
from relais.signals import stop_on_signals
from relais.sink_loop import SinkLoop, decode_record, sink_consumer, sink_producer
from relais.topics import (
    AUDIT,
    BUSINESS_ACKS,
    DELIVERY_DMP,
    DELIVERY_LEDGER,
    DELIVERY_STATUS,
)

log = logging.getLogger(__name__)
STAGE = "dmp-sink"


def submission_of(request: Record, keyring: Keyring, now: datetime | None = None) -> Submission:
    """Decrypt what the DMP needs from a ``DeliveryRequest``."""
    event_id = request["event_id"]
    document = request["document"]
    content = open_envelope(
        keyring, Envelope.from_record(document["content"]), event_id=event_id, purpose="content"
    )
    return Submission(
        unique_id=document["unique_id"],
        patient_id=_patient_id(request, keyring),
        type_code=document["type_code"],
        content=content,
        metadata=document_entry(
            content, visibility_flags(request.get("release"), now or datetime.now(UTC))
        ),
        parent_unique_id=document["parent_unique_id"] if document["action"] == "REPLACE" else None,
    )


def _patient_id(request: Record, keyring: Keyring) -> str:
    """The patient's XDS id (INS CX ^NH), from the request's sealed identity."""
    traits = open_traits(request, keyring)
    return patient_cx(str(traits["ins"]), str(traits["ins_oid"]))


def xds_ids(unique_id: str) -> tuple[str, ...]:
    """The XDS uniqueIds a document id may be filed under: itself, and ``root^extension``."""
    root, extension = split_id(unique_id)
    return (unique_id,) if extension is None else (unique_id, f"{root}^{extension}")


@dataclass(frozen=True)
class Where:
    """The request's place on the bus and the attempt being made."""

    origin: Origin
    message: Any
    attempt: int


class DmpSink:
    def __init__(
        self,
        *,
        bootstrap: str,
        prefix: str,
        keyring: Keyring,
        client: DmpClient,
        session_timeout_s: float = 6.0,
    ) -> None:
        self.prefix, self.keyring, self.client = prefix, keyring, client
        self.codec = Codec()
        self.metrics = StageMetrics(STAGE)
        self.deliveries = DeliveryMetrics("DMP")
        self.consumer = sink_consumer(bootstrap, f"{prefix}-dmp-sink", session_timeout_s)
        self.producer = sink_producer(bootstrap)
        self.ledger = LedgerStore(bootstrap, DELIVERY_LEDGER.name(prefix), self.producer)
        self.retry = PartitionRetry(self.consumer)
        self.attempts: dict[str, int] = {}
        self.dmp_state = Flag(True, "no DMP call yet")
        READINESS.register("broker", broker_reachable(bootstrap))
        READINESS.register("dmp", self.dmp_state)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, file, report, commit, until ``stop``; a DMP outage pauses, never blocks.

        On a transient failure the partition is paused and rewound to the
        request, and polling goes on (heartbeats and poll interval stay
        healthy); the partition resumes after its backoff delay and the same
        request is tried again. Other partitions keep flowing. The ledger of a
        partition is restored before its first request is handled.
        """
        loop = SinkLoop(
            self.consumer,
            self.producer,
            self.retry,
            topics=[DELIVERY_DMP.name(self.prefix)],
            partitions_moved=self.ledger.forget,
            after_batch=lambda: self.deliveries.refresh(_now(), self.ledger.size()),
        )
        await loop.run(stop, self._handle)

    async def _handle(self, tp: TopicPartition, message: Any) -> list[tuple[str, bytes]] | None:
        """Process one request; None when it must be retried later (partition paused)."""
        self.metrics.received()
        with self.metrics.timed():
            outputs = await self._outputs(message)
        for topic, _ in outputs or ():
            self.metrics.emitted(topic)
        return outputs

    async def _outputs(self, message: Any) -> list[tuple[str, bytes]] | None:
        """Records to emit for one request, or None on a transient DMP failure.

        The delivery ledger decides first: a request already DONE is reported
        again and never re-sent; one left SENDING (a crash or a timeout between
        the call and its answer) is reconciled with the DMP (ITI-18) before any
        resend; otherwise SENDING is recorded, the document filed, and DONE
        recorded with the outcome.
        """
        origin = Origin(message.topic, message.partition, message.offset)
        try:
            request = decode_record(self.codec, message, "DeliveryRequest")
            origin = Origin(message.topic, message.partition, message.offset, request["event_id"])
            if request["document"]["action"] == "DELETE":
                submission, patient_id = None, _patient_id(request, self.keyring)
            else:  # the submission opened the identity already
                submission = submission_of(request, self.keyring, _now())
                patient_id = submission.patient_id
        except Exception as exc:  # any unreadable request is dead-lettered, never a crash
            failure = failure_of(exc)
            return [self._dead_letter(failure, origin, message)]
        rid = request["request_id"]
        await self.ledger.ensure(message.partition)
        entry = self.ledger.get(message.partition, rid)
        if entry is not None and entry.outcome == "REJECTED" and _replayed(message):
            entry = None  # an operator replays a refused document after a fix: file it again
        if entry is not None and next_step(entry) is Step.ALREADY_DONE:
            detail = "already done (delivery ledger): not sent again"
            return self._final(
                request,
                entry.outcome or "DELIVERED",
                code=entry.code,
                attempt=entry.attempt,
                origin=origin,
                message=message,
                detail=detail,
                count=False,
            )
        attempt = max(self.attempts.get(rid, 0), entry.attempt if entry else 0) + 1
        where = Where(origin, message, attempt)
        try:
            if submission is None:
                return await self._delete(request, patient_id, entry, where)
            return await self._file(request, submission, entry, where)
        except DmpUnavailable as exc:
            self._retrying(request, attempt, exc)
            return None
        except DmpRejected as exc:
            return await self._done(request, "REJECTED", exc.code, where)

    async def _file(
        self, request: Record, submission: Submission, entry: Entry | None, where: Where
    ) -> list[tuple[str, bytes]]:
        """File (ITI-41), reconciling first (ITI-18) when an earlier send went unanswered."""
        # the registry knows the XDS uniqueId (root^extension), not Relais's id
        xds_id = submission.metadata.unique_id if submission.metadata else submission.unique_id
        reconcile = next_step(entry) is Step.RECONCILE
        if reconcile and await self.client.holds(xds_id, submission.patient_id):
            detail = "reconciled: the DMP already held it after an unanswered send"
            return await self._done(request, "DELIVERED", None, where, detail)
        await self._sending(request, where)
        answer = await self.client.file(submission)
        outcome = "DELIVERED" if answer.status == "success" else "DUPLICATE"
        return await self._done(request, outcome, answer.code, where)

    async def _delete(
        self, request: Record, patient_id: str, entry: Entry | None, where: Where
    ) -> list[tuple[str, bytes]]:
        """Remove the document from the DMP (ITI-18 to find it, ITI-62 to delete it)."""
        found = await self.client.find(xds_ids(request["document"]["unique_id"]), patient_id)
        if not found:
            if entry is not None:  # our earlier delete went through, unanswered
                detail = "reconciled: the DMP no longer holds it after an unanswered delete"
                return await self._done(request, "DELIVERED", None, where, detail)
            return await self._done(request, "REJECTED", "UnresolvedReferenceException", where)
        await self._sending(request, where)
        answer = await self.client.delete(found, patient_id)
        return await self._done(request, "DELIVERED", answer.code, where, "deleted from the DMP")

    async def _sending(self, request: Record, where: Where) -> None:
        """Record SENDING (acknowledged) before the DMP is called."""
        entry = sending(request["request_id"], where.attempt)
        await self.ledger.write(where.message.partition, entry)

    async def _done(
        self,
        request: Record,
        outcome: str,
        code: str | None,
        where: Where,
        detail: str | None = None,
    ) -> list[tuple[str, bytes]]:
        """Record DONE with the outcome in the ledger, then report it."""
        entry = done(request["request_id"], outcome, code, where.attempt)
        await self.ledger.write(where.message.partition, entry)
        self._settle(request)
        return self._final(
            request,
            outcome,
            code=code,
            attempt=where.attempt,
            origin=where.origin,
            message=where.message,
            detail=detail,
        )

    def _retrying(self, request: Record, attempt: int, exc: DmpUnavailable) -> None:
        self.dmp_state.set(False, f"DMP unavailable ({exc.code}): deliveries paused, retrying")
        self.attempts[request["request_id"]] = attempt
        self.deliveries.retrying(request["request_id"], request["submitted_at"])
        log.warning(
            "DMP unavailable for event %s (attempt %d): %s", request["event_id"], attempt, exc.code
        )

    def _settle(self, request: Record) -> None:
        self.dmp_state.set(True, "DMP answering")
        self.attempts.pop(request["request_id"], None)
        self.deliveries.settled(request["request_id"])

    def _final(
        self,
        request: Record,
        outcome: str,
        *,
        code: str | None,
        attempt: int,
        origin: Origin,
        message: Any,
        detail: str | None = None,
        count: bool = True,
    ) -> list[tuple[str, bytes]]:
        """The status (+ dead letter when refused, + ZAM^Z01 when asked) of a final outcome."""
        now = _now()
        if count:
            self.deliveries.outcome(
                outcome,
                submitted_at=request["submitted_at"],
                now=now,
                sector=request["sector"],
                type_code=request["document"]["type_code"],
            )
        outputs: list[tuple[str, bytes]] = []
        if outcome == "REJECTED":
            # The DMP's free text may echo identifiers: only its code travels in clear.
            detail = f"the DMP refused the document with code {code}"
            failure = Failure("dmp-rejected", detail)
            outputs.append(self._dead_letter(failure, origin, message))
        status = status_of(
            request, outcome=outcome, code=code, detail=detail, attempt=attempt, now=now
        )
        outputs.insert(
            0, (DELIVERY_STATUS.name(self.prefix), self.codec.encode("DeliveryStatus", status))
        )
        audit = AUDIT.name(self.prefix)
        outputs.append((audit, self.codec.encode("AuditEvent", delivery(status, component=STAGE))))
        if asked(request, "Z01"):
            ack = business_ack(
                request, kind="Z01", accepted=outcome != "REJECTED", now=now, code=code
            )
            outputs.append((BUSINESS_ACKS.name(self.prefix), self.codec.encode("BusinessAck", ack)))
            unique_id = request["document"]["unique_id"]
            acked = acknowledged(ack, component=STAGE, document_unique_id=unique_id)
            outputs.append((audit, self.codec.encode("AuditEvent", acked)))
        return outputs

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


def _replayed(message: Any) -> bool:
    """Whether ``relais dlq replay`` sent this record back (its ``relais-replay-of`` header)."""
    return any(key == REPLAY_HEADER for key, _ in (message.headers or ()))


def _now() -> datetime:
    return datetime.now(UTC)


async def run_dmp_sink(settings: Settings, keyring: Keyring) -> None:
    """Run the sink until SIGINT/SIGTERM; finish the record in hand, then stop."""
    stop = stop_on_signals()
    client = DmpClient(DmpConfig.from_settings(settings))
    sink = DmpSink(
        bootstrap=settings.bootstrap_servers,
        prefix=settings.topic_prefix,
        keyring=keyring,
        client=client,
        session_timeout_s=settings.session_timeout_s,
    )
    try:
        await sink.run(stop)
    finally:
        await client.close()
