"""The DMP sink: file each DMP delivery request once, then report and commit.

It runs on the loop every sink shares (:mod:`relais.sink_loop`, manual
commits). For each request it decrypts the document and the INS, files them
with :class:`DmpClient` (ITI-41), writes a ``DeliveryStatus`` (a dead letter
when the DMP refuses, a ZAM^Z01 when the producer asked for one), waits for
the broker's acknowledgement, and only then commits the offset. Transient
failures (DMP down, 5xx, timeouts) are retried with backoff on the same record
(partition paused, no hot loop), so nothing is skipped. The delivery ledger
(:mod:`relais.delivery_ledger`) makes every retry harmless: a request already
done is not sent again, and one whose send went unanswered is reconciled with
the DMP (ITI-18) first — the DMP never sees the same document filed twice, even
when the sink is killed between the send and the commit. The same request
with another content than what was filed (same document id) is refused, never
"already done" (:mod:`consumers.dmp.reuse`).

Before a patient's first filing the DMP is asked whether the patient's DMP exists, is open
and may be fed (TD0.2, :mod:`consumers.dmp.status`; an open DMP is trusted for
RELAIS_DMP_STATUS_CACHE_S): no DMP, a closed one, an objection or no right is a refusal with
the DMP's code. Replacements name the entryUUID of the parent's current version, asked of
the DMP's registry each time (ITI-18, ``DmpClient.current``): the DMP gives a new one per
version, so a kept one could only go stale. Whether a DMP code is retried
or refused is :mod:`consumers.dmp.error_codes`'s table; what is emitted for an outcome,
:mod:`consumers.dmp.report`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition

from consumers.dmp.client import DmpClient, DmpConfig
from consumers.dmp.consent import consent_refusal
from consumers.dmp.consent_table import ConsentTable, ConsentUnreadable
from consumers.dmp.error_codes import metric_label
from consumers.dmp.metrics import STATUS_CHECKS
from consumers.dmp.report import Reporter, Where
from consumers.dmp.request import patient_id_of, submission_of, xds_ids
from consumers.dmp.reuse import NON_IDENTICAL, content_key, filed_digest, reused
from consumers.dmp.status import StatusCache, verdict
from consumers.dmp.subject import subject_of
from consumers.dmp.submission import (
    DmpRejected,
    DmpUnavailable,
    Submission,
)
from consumers.dmp.visibility_lifts import VisibilityLifts
from consumers.ihe.vihf import Subject
from relais.contracts import Record
from relais.deadletter import REPLAY_HEADER
from relais.delivery_ledger import (
    Entry,
    LedgerStore,
    Met,
    Outcome,
    Step,
    done,
    next_step,
    sending,
)
from relais.delivery_metrics import DeliveryMetrics
from relais.document_store import DocumentStore, StoreUnavailableError
from relais.document_store.bodies import document_prefix, read_content
from relais.document_store.open import open_store
from relais.health import READINESS, Flag, broker_reachable
from relais.kafka_clients import Target
from relais.keyring import Keyring
from relais.metrics import StageMetrics
from relais.settings import Settings
from relais.sink_loop import (
    GiveUp,
    Hooks,
    Outputs,
    RetryLater,
    SinkLoop,
    SinkStage,
    decode_record,
)
from relais.topics import DELIVERY_DMP, DELIVERY_LEDGER

log = logging.getLogger(__name__)
STAGE = "dmp-sink"


class DmpSink:
    def __init__(
        self,
        *,
        bootstrap: Target,
        prefix: str,
        keyring: Keyring,
        client: DmpClient,
        session_timeout_s: float = 6.0,
        store: DocumentStore | None = None,
        concurrency: int = 1,
    ) -> None:
        self.prefix, self.keyring, self.client, self.store = prefix, keyring, client, store
        self.stage = SinkStage(STAGE, prefix, keyring, metrics=StageMetrics(STAGE), clock=_now)
        self.codec = self.stage.codec
        self.deliveries = DeliveryMetrics("DMP")
        hooks = Hooks(assigned=self._moved, revoked=self._moved, after_poll=self._refresh)
        self.loop = SinkLoop(
            bootstrap,
            self.stage,
            group_id=f"{prefix}-dmp-sink",
            topics=[DELIVERY_DMP.name(prefix)],
            session_timeout_s=session_timeout_s,
            hooks=hooks,
            concurrency=concurrency,  # partitions filed at once, each in its order
            commit_per_poll=True,  # the delivery ledger makes a replayed poll harmless
        )
        self.ledger = LedgerStore(bootstrap, DELIVERY_LEDGER.name(prefix), self.loop.producer)
        self.statuses = StatusCache(timedelta(seconds=client.config.status_cache_s))
        self.report = Reporter(self.stage, prefix, self.deliveries, _now)
        self.lifts = VisibilityLifts(  # embargoed documents: TD3.3b at the release date
            bootstrap=bootstrap, prefix=prefix, keyring=keyring, client=client, loop=self.loop,
            codec=self.codec, input_topic=DELIVERY_DMP.name(prefix),
            dmp_answered=lambda: self.dmp_state.set(True, "DMP answering"),  # its own backoff
        )  # fmt: skip
        self.consents = ConsentTable(bootstrap, prefix, self.codec)  # the patients' word now
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
        try:
            await self.loop.run(stop, self._handle)
        finally:
            await self.consents.close()

    async def _moved(self, partitions: frozenset[TopicPartition]) -> None:
        await self.ledger.moved(partitions)
        self.lifts.forget(tp.partition for tp in partitions)  # read back when needed

    async def _refresh(self) -> None:
        self.deliveries.refresh(_now(), self.ledger.size())
        await self.lifts.tick()  # the visibility updates due (consumers.dmp.visibility_lifts)

    async def _handle(self, tp: TopicPartition, message: Any) -> Outputs | RetryLater:
        """Records to emit for one request, or RetryLater on a transient DMP failure.

        The delivery ledger decides first: a request already DONE is reported
        again and never re-sent; one left SENDING (a crash or a timeout between
        the call and its answer) is reconciled with the DMP (ITI-18) before any
        resend; otherwise SENDING is recorded, the document filed, and DONE
        recorded with the outcome.
        """
        request, submission, patient_id = await self._open(message)
        rid = request["request_id"]
        await self.ledger.ensure(message.partition)
        entry = self.ledger.get(message.partition, rid)
        # an operator replays a refused document after a fix: it is filed again
        step = next_step(entry, Met.REPLAYED if _replayed(message) else Met.READ)
        if entry is not None and step is Step.ALREADY_DONE:
            if reused(self.ledger.get(message.partition, content_key(rid)), request):
                # same id, other content: refused; the ledger keeps what was filed
                where = Where(message, entry.attempt)
                return self.report.final(request, Outcome.REJECTED, NON_IDENTICAL, where)
            return self._already_done(request, entry, message)
        earlier = entry.attempt if entry is not None and step is Step.RECONCILE else 0
        where = Where(message, max(self.attempts.get(rid, 0), earlier) + 1)
        try:
            if submission is None:
                return await self._delete(request, patient_id, step, where)
            return await self._file(request, submission, step, where)
        except DmpUnavailable as exc:
            self._retrying(request, where.attempt, exc)
            return RetryLater()
        except DmpRejected as exc:
            return await self._done(request, Outcome.REJECTED, exc.code, where)

    async def _open(self, message: Any) -> tuple[Record, Submission | None, str]:
        """The request, what the DMP needs (None for a deletion) and the patient's XDS id;
        the document's bytes are fetched once, here."""
        event_id = None
        try:
            request = decode_record(self.codec, message, "DeliveryRequest")
            event_id = request["event_id"]
            if request["document"]["action"] == "DELETE":
                return request, None, patient_id_of(request, self.keyring)
            content = await read_content(
                self.store, self.keyring, request["document"], event_id=event_id
            )
            submission = submission_of(request, self.keyring, _now(), content)
        except StoreUnavailableError:
            raise  # the store, not the request: the sink loop tries it again later
        except Exception as exc:  # any unreadable request is dead-lettered, never a crash
            raise GiveUp.because(exc, event_id) from exc
        return request, submission, submission.patient_id  # it opened the identity already

    def _already_done(self, request: Record, entry: Entry, message: Any) -> Outputs:
        """Report again what the ledger says was done; nothing is sent."""
        detail = "already done (delivery ledger): not sent again"
        where = Where(message, entry.attempt)
        outcome = entry.outcome or Outcome.DELIVERED
        return self.report.final(request, outcome, entry.code, where, detail=detail, count=False)

    async def _file(
        self, request: Record, submission: Submission, step: Step, where: Where
    ) -> Outputs:
        """File (ITI-41), reconciling first (ITI-18) when an earlier send went unanswered, after
        TD0.2 said the DMP may be fed."""
        # the registry knows the XDS uniqueId (root^extension), not Relais's id
        xds_id = submission.metadata.unique_id if submission.metadata else submission.unique_id
        subject = subject_of(submission.metadata, submission.content)
        patient = submission.patient_id
        reconcile = step is Step.RECONCILE
        if reconcile and await self.client.holds(xds_id, patient, subject):
            await self.lifts.filed(request, submission, where.message.partition, where.message.key)
            detail = "reconciled: the DMP already held it after an unanswered send"
            return await self._done(request, Outcome.DELIVERED, None, where, detail)
        # the patient's word now (PAM FR ZFA; a replay too), before the DMP's (TD0.2)
        stop = consent_refusal(request, await self.consents.latest(_patient_key(request)))
        if stop is not None:
            raise DmpRejected(stop.detail, code=stop.code)
        await self._open_dmp(patient, subject, replayed=_replayed(where.message))
        submission = await self._with_parent(submission, subject, where)
        await self._sending(request, where)
        answer = await self.client.file(submission)
        await self.lifts.filed(request, submission, where.message.partition, where.message.key)
        outcome = Outcome.DELIVERED if answer.status == "success" else Outcome.DUPLICATE
        return await self._done(request, outcome, answer.code, where)

    async def _open_dmp(self, patient_id: str, subject: Subject | None, *, replayed: bool) -> None:
        """TD0.2 unless the patient's DMP was found open lately (a replay always asks):
        :class:`DmpRejected` with the DMP's code when it may not be fed."""
        if not replayed and self.statuses.fresh(patient_id, _now()):
            return
        code = await self.client.status(patient_id, subject)
        STATUS_CHECKS.labels(metric_label(code)).inc()
        self.statuses.answered(patient_id, code, _now())
        verdict(code)

    async def _with_parent(
        self, submission: Submission, subject: Subject | None, where: Where
    ) -> Submission:
        """A replacement names the entryUUID of its parent's current version (ITI-18)."""
        parent = submission.parent_unique_id
        if parent is None:
            return submission
        found = await self.client.current(parent, submission.patient_id, subject)
        if found is None:
            missing = "the document to replace is not in the DMP"
            raise DmpRejected(missing, code="UnresolvedReferenceException")
        return replace(submission, parent_entry_uuid=found.entry_uuid)

    async def _delete(self, request: Record, patient_id: str, step: Step, where: Where) -> Outputs:
        """Remove the document from the DMP (ITI-18 to find it, ITI-62 to delete it)."""
        found = await self.client.find(xds_ids(request["document"]["unique_id"]), patient_id)
        if not found:
            if step is Step.RECONCILE:  # our earlier delete went through, unanswered
                detail = "reconciled: the DMP no longer holds it after an unanswered delete"
                detail += await self._erase(request)
                return await self._done(request, Outcome.DELIVERED, None, where, detail)
            unresolved = "UnresolvedReferenceException"
            return await self._done(request, Outcome.REJECTED, unresolved, where)
        await self._sending(request, where)
        answer = await self.client.delete(found, patient_id)
        detail = "deleted from the DMP" + await self._erase(request)
        return await self._done(request, Outcome.DELIVERED, answer.code, where, detail)

    async def _erase(self, request: Record) -> str:
        """The document's life ends, so do its bodies; what the status says of it."""
        if self.store is None:
            return ""
        unique_id = str(request["document"]["unique_id"])
        try:
            erased = await self.store.erase(document_prefix(self.keyring, unique_id))
        except StoreUnavailableError as exc:  # deleted at the DMP all the same
            log.warning("dmp-sink: event %s: bodies not erased: %s", request["event_id"], exc)
            return "; stored bodies not erased (store unavailable): the retention removes them"
        return f"; stored bodies erased: {erased}"

    async def _sending(self, request: Record, where: Where) -> None:
        """Record SENDING (acknowledged) before the DMP is called."""
        entry = sending(request["request_id"], where.attempt, now=_now())
        await self.ledger.write(where.message.partition, entry)

    async def _done(
        self,
        request: Record,
        outcome: Outcome,
        code: str | None,
        where: Where,
        detail: str | None = None,
    ) -> Outputs:
        """Record DONE with the outcome in the ledger, then report it."""
        entry = done(request["request_id"], outcome, code, where.attempt, now=_now())
        await self.ledger.write(where.message.partition, entry)
        filed = filed_digest(request, now=_now()) if outcome != Outcome.REJECTED else None
        if filed is not None:  # what was filed under this id: other content is refused
            await self.ledger.write(where.message.partition, filed)
        self._settle(request)
        return self.report.final(request, outcome, code, where, detail=detail)

    def _retrying(self, request: Record, attempt: int, exc: DmpUnavailable) -> None:
        if not isinstance(exc, ConsentUnreadable):  # the patients' word unread: not the DMP
            self.dmp_state.set(False, f"DMP unavailable ({exc.code}): deliveries paused, retrying")
        self.attempts[request["request_id"]] = attempt
        self.deliveries.retrying(request["request_id"], request["submitted_at"])
        log.warning(
            "not filed yet, event %s (attempt %d): %s", request["event_id"], attempt, exc.code
        )

    def _settle(self, request: Record) -> None:
        self.dmp_state.set(True, "DMP answering")
        self.attempts.pop(request["request_id"], None)
        self.deliveries.settled(request["request_id"])


def _patient_key(request: Record) -> str:
    return str(request["patient"]["patient_key"])


def _replayed(message: Any) -> bool:
    """Whether ``relais dlq replay`` sent this record back (its ``relais-replay-of`` header)."""
    return any(key == REPLAY_HEADER for key, _ in (message.headers or ()))


def _now() -> datetime:
    return datetime.now(UTC)


async def run_dmp_sink(settings: Settings, keyring: Keyring, stop: asyncio.Event) -> None:
    """Run the sink until ``stop`` (set on SIGINT/SIGTERM); finish the record in hand, then stop."""
    client = DmpClient(DmpConfig.from_settings(settings))
    sink = DmpSink(
        bootstrap=settings.kafka.connection,
        prefix=settings.kafka.prefix,
        keyring=keyring,
        client=client,
        session_timeout_s=settings.kafka.session_timeout_s,
        store=open_store(settings),
        concurrency=settings.kafka.sink_concurrency,
    )
    try:
        await sink.run(stop)
    finally:
        await client.close()
