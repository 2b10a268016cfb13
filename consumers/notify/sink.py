"""The notification sink: tell patients "a new document is available", once, when allowed.

A plain aiokafka consumer of ``deliveries.notify.v1`` (manual commits) around the
pure ledger of :mod:`consumers.notify.schedule`. Two steps, both in one task:

1. **Admit** each request: decide (schedule, duplicate, skip, cancel an earlier one),
   write the ledger entry to ``notify.ledger.v1`` (same partition number) and any
   ``DeliveryStatus``, wait for the broker's acknowledgements, then commit the input
   offset. Admission never talks to a channel, so an SMTP or SMS outage never stalls
   the input, and a document under embargo is safe in the ledger, not in a paused
   partition (embargoes last weeks; input retention is a week).
2. **Dispatch** what is due: per patient, the rate limit may hold it back; otherwise
   one message by the patient's channel covers every due document; then the ``SENT``
   entries and statuses are written. A transient channel failure keeps the entries
   pending and tries again after a backoff (per patient, or the gateway's
   Retry-After); other patients are not held up.

When a partition is assigned, its ledger partition is read back from the start
(a compacted topic: the latest entry per request); when it is revoked, the worker
first finishes the message it is sending (a lock), so the next owner reads a ledger
that says what was sent.

Exactly once, and its limit: a request in the ledger is never told twice; a
redelivered request is answered ``DUPLICATE``. The one window left is a crash after
the channel accepted a message and before its ``SENT`` entry is acknowledged (a few
milliseconds): the next owner sends it again, with the same Message-ID /
Idempotency-Key so the receiving system can drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from consumers.notify import metrics
from consumers.notify.channels import (
    Accepted,
    ChannelConfig,
    ChannelRejected,
    Channels,
    ChannelUnavailable,
    email_server,
)
from consumers.notify.message import Notice, notice_of
from consumers.notify.preferences import Channel, Preference, Preferences, load_preferences
from consumers.notify.rate import RateLimit
from consumers.notify.schedule import (
    Batch,
    Entry,
    Ledger,
    LedgerError,
    Note,
    State,
    incoming_of,
)
from relais.audit_records import delivery
from relais.backoff import exponential_backoff
from relais.contracts import Codec, Record
from relais.deadletter import Origin, StageFailure, dead_letter_output, failure_of
from relais.delivery_metrics import DELIVERIES
from relais.delivery_status import delivery_status
from relais.envelope import EnvelopeError
from relais.keyring import Keyring
from relais.mail.config import smtp_config
from relais.mail.smtp import SmtpConfig
from relais.metrics import StageMetrics
from relais.patient_traits import open_traits
from relais.settings import Settings
from relais.signals import stop_on_signals
from relais.sink_loop import commit_offset, decode_record, sink_consumer, sink_producer
from relais.topic_reader import read_to_end
from relais.topics import AUDIT, DELIVERY_NOTIFY, DELIVERY_STATUS, NOTIFY_LEDGER

log = logging.getLogger(__name__)
STAGE = "notify-sink"
Output = tuple[str, bytes | None, bytes, int | None]  # topic, key, value, partition


class Sender(Protocol):
    """The seam to the channels (:class:`Channels` in production)."""

    async def send(
        self,
        preference: Preference,
        notice: Notice,
        *,
        request_ids: list[str],
        ins: str | None,
        now: datetime,
    ) -> Accepted: ...


@dataclass(frozen=True)
class NotifyConfig:
    channels: ChannelConfig
    preferences: Path | None
    rate: RateLimit

    @classmethod
    def from_settings(cls, s: Settings) -> NotifyConfig:
        """The MSSanté channel is mss_bridge's (RELAIS_MSS_*); the rest is RELAIS_NOTIFY_*."""
        email = SmtpConfig(server=email_server(s.notify_email_smtp), ca_file=s.notify_ca_file)
        channels = ChannelConfig(
            mssante=smtp_config(s),
            mssante_sender=s.mss_sender,
            email=email,
            email_sender=s.notify_email_from,
            sms_url=s.notify_sms_url,
            ca_file=s.notify_ca_file,
        )
        rate = RateLimit(s.notify_rate_limit, s.notify_rate_window_s)
        return cls(channels, s.notify_preferences, rate)


def _now() -> datetime:
    return datetime.now(UTC)


class NotifySink:
    def __init__(
        self,
        *,
        bootstrap: str,
        prefix: str,
        keyring: Keyring,
        sender: Sender,
        preferences: Preferences,
        rate: RateLimit,
        session_timeout_s: float = 6.0,
        clock: Callable[[], datetime] = _now,
        group_id: str | None = None,
    ) -> None:
        self.bootstrap, self.prefix, self.keyring = bootstrap, prefix, keyring
        self.sender, self.preferences, self.rate = sender, preferences, rate
        self.clock = clock
        self.input = DELIVERY_NOTIFY.name(prefix)
        self.ledger_topic = NOTIFY_LEDGER.name(prefix)
        self.codec = Codec()
        self.stage_metrics = StageMetrics(STAGE)
        self.consumer = sink_consumer(
            bootstrap, group_id or f"{prefix}-notify-sink", session_timeout_s
        )
        self.reader = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        self.producer = sink_producer(bootstrap)
        self.ledgers: dict[int, Ledger] = {}
        self.lock = asyncio.Lock()  # one send or one rebalance step at a time
        self.backoffs: dict[str, Iterator[float]] = {}
        self.attempts: dict[str, int] = {}

    # -- running ------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Admit, dispatch, until ``stop``; the message in hand is finished first."""
        metrics.started()
        await self.producer.start()
        await self.reader.start()
        try:
            await self._check_partitions()
            self.consumer.subscribe([self.input], listener=_Rebalance(self))
            await self.consumer.start()
            try:
                while not stop.is_set():
                    batches = await self.consumer.getmany(timeout_ms=200, max_records=200)
                    for tp, messages in batches.items():
                        await self._admit_all(tp, messages)
                    await self._dispatch()
                    self._observe()
            finally:
                await self.consumer.stop()
        finally:
            await self.reader.stop()
            await self.producer.stop()

    async def _check_partitions(self) -> None:
        await self.reader.topics()  # fetch metadata
        inputs = self.reader.partitions_for_topic(self.input)
        ledger = self.reader.partitions_for_topic(self.ledger_topic)
        if not inputs or not ledger or len(inputs) != len(ledger):
            raise RuntimeError(
                f"{self.ledger_topic} must exist with as many partitions as {self.input} "
                f"({len(inputs or ())} and {len(ledger or ())} found): run `relais topics create`"
            )

    # -- rebalancing --------------------------------------------------------------
    async def assigned(self, partitions: set[TopicPartition]) -> None:
        async with self.lock:
            for tp in sorted(partitions):
                if tp.partition not in self.ledgers:
                    self.ledgers[tp.partition] = await self._recover(tp.partition)

    async def _ledger_for(self, tp: TopicPartition) -> Ledger | None:
        """The partition's ledger; read back now if its records came before the listener ran."""
        ledger = self.ledgers.get(tp.partition)
        if ledger is None and tp in self.consumer.assignment():
            ledger = self.ledgers[tp.partition] = await self._recover(tp.partition)
        return ledger

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        async with self.lock:  # waits for the message being sent and its ledger entry
            for tp in partitions:
                self.ledgers.pop(tp.partition, None)

    async def _recover(self, partition: int, timeout_s: float = 60.0) -> Ledger:
        """Read one ledger partition back from its start to its end."""
        records = await read_to_end(
            self.bootstrap, [(self.ledger_topic, partition)], timeout_s=timeout_s
        )
        ledger = Ledger()
        for message in records:
            if message.value is not None:
                self._restore(ledger, message)
        log.info("ledger partition %d read back: %d entries", partition, len(ledger.entries))
        return ledger

    def _restore(self, ledger: Ledger, message: Any) -> None:
        try:
            ledger.restore(Entry.from_bytes(message.value))
        except LedgerError as exc:  # never stop on it: count it and say where it is
            self.stage_metrics.failed("notify-ledger-unreadable", dead_lettered=False)
            log.error(
                "%s[%d]@%d skipped: %s", message.topic, message.partition, message.offset, exc
            )

    # -- admitting ----------------------------------------------------------------
    async def _admit_all(self, tp: TopicPartition, messages: list[Any]) -> None:
        async with self.lock:
            ledger = await self._ledger_for(tp)
            if ledger is None or not messages:
                return  # revoked meanwhile: the next owner reads them again
            outputs: list[Output] = []
            for message in messages:
                self.stage_metrics.received()
                with self.stage_metrics.timed():
                    outputs += self._admit(ledger, tp.partition, message)
            await self._emit(outputs)
        await commit_offset(self.consumer, tp, messages[-1].offset + 1)

    def _admit(self, ledger: Ledger, partition: int, message: Any) -> list[Output]:
        origin = Origin(self.input, message.partition, message.offset)
        try:
            request = decode_record(self.codec, message, "DeliveryRequest")
            origin = Origin(self.input, message.partition, message.offset, request["event_id"])
            incoming = incoming_of(request)
        except Exception as exc:  # an unusable request is dead-lettered, never a crash
            return [self._dead_letter(exc, origin, message)]
        admission = ledger.admit(incoming, self.clock())
        outputs: list[Output] = []
        for entry in admission.writes:
            ledger.apply(entry)
            outputs.append(self._ledger_record(entry, partition))
            if entry.state is State.CANCELLED:
                metrics.DELIVERIES.labels("none", "cancelled").inc()
        for entry, note in admission.notes:
            if note.outcome == "DUPLICATE":
                metrics.DELIVERIES.labels(entry.channel or "none", "duplicate").inc()
            elif entry.state is State.SKIPPED and note.outcome == "REJECTED":
                metrics.DELIVERIES.labels("none", "rejected").inc()
            outputs += self._reports(entry, note, attempt=max(entry.attempt, 1))
        return outputs

    # -- dispatching --------------------------------------------------------------
    async def _dispatch(self) -> None:
        for partition, ledger in list(self.ledgers.items()):
            due = ledger.due(self.clock(), self.rate)
            if due.rate_limited:
                metrics.RATE_LIMITED.inc(due.rate_limited)
            for batch in due.batches:
                async with self.lock:
                    if self.ledgers.get(partition) is not ledger:
                        break  # given away while we were sending
                    await self._send(partition, ledger, batch)

    async def _send(self, partition: int, ledger: Ledger, batch: Batch) -> None:
        preference = self.preferences.of(batch.patient_key)
        notice = notice_of([e.kind for e in batch.entries])
        attempt = 1 + max(self.attempts.get(r, 0) for r in batch.request_ids)
        if preference.channel is Channel.NONE:
            note = Note("REJECTED", "OPTED_OUT", "the patient asked for no notifications")
            metrics.DELIVERIES.labels("none", "skipped").inc(len(batch.entries))
            await self._settle(partition, ledger, batch, State.SKIPPED, note=note, attempt=attempt)
            return
        try:
            ins = self._ins(batch.entries[0]) if preference.channel is Channel.MSSANTE else None
            accepted = await self.sender.send(
                preference, notice, request_ids=batch.request_ids, ins=ins, now=self.clock()
            )
        except ChannelUnavailable as exc:
            await self._retry_later(ledger, batch, preference.channel, exc, attempt)
            return
        except ChannelRejected as exc:
            metrics.DELIVERIES.labels(preference.channel.value, "rejected").inc(len(batch.entries))
            log.warning("notification of %s refused: %s", batch.request_ids, exc.code)
            note = Note("REJECTED", exc.code, str(exc))
            await self._settle(partition, ledger, batch, State.FAILED, note=note, attempt=attempt)
            return
        channel = accepted.channel.value
        detail = f"told by {channel}: one message for {len(batch.entries)} document(s)"
        note = Note("DELIVERED", accepted.code, detail)
        await self._settle(
            partition,
            ledger,
            batch,
            State.SENT,
            note=note,
            attempt=attempt,
            channel=channel,
            code=accepted.code,
        )
        metrics.MESSAGES.labels(channel).inc()
        metrics.DELIVERIES.labels(channel, "delivered").inc(len(batch.entries))
        now = self.clock()
        for entry in batch.entries:
            known_from = max(entry.submitted_at, entry.due_at)
            metrics.LATENCY.labels(channel).observe(max(0.0, (now - known_from).total_seconds()))
        self.backoffs.pop(batch.patient_key, None)

    def _ins(self, entry: Entry) -> str | None:
        """The patient's INS, opened from the sealed identity the ledger keeps."""
        if entry.identity is None:
            raise ChannelRejected("the ledger lost the sealed identity", code="NO_IDENTITY")
        try:
            traits = open_traits(
                {"event_id": entry.event_id, "patient": {"identity": entry.identity}}, self.keyring
            )
        except (EnvelopeError, StageFailure):
            raise ChannelRejected(
                "the patient identity does not open with this keyring", code="IDENTITY_UNREADABLE"
            ) from None
        ins = traits.get("ins")
        return str(ins) if ins else None

    async def _retry_later(
        self, ledger: Ledger, batch: Batch, channel: Channel, exc: ChannelUnavailable, attempt: int
    ) -> None:
        backoff = self.backoffs.setdefault(batch.patient_key, exponential_backoff(1.0, 300.0))
        delay = exc.retry_after_s if exc.retry_after_s is not None else next(backoff)
        ledger.postpone(batch.entries, self.clock() + timedelta(seconds=delay))
        metrics.RETRIES.labels(channel.value).inc()
        metrics.DELIVERIES.labels(channel.value, "retrying").inc(len(batch.entries))
        log.warning(
            "notification of %s by %s not sent (%s), attempt %d; again in %.1f s",
            batch.request_ids,
            channel.value,
            exc.code,
            attempt,
            delay,
        )
        for request_id in batch.request_ids:
            self.attempts[request_id] = attempt
        if attempt == 1:  # one RETRYING status per request, not one per try
            note = Note("RETRYING", exc.code, str(exc))
            await self._emit([o for e in batch.entries for o in self._reports(e, note, attempt)])

    async def _settle(
        self,
        partition: int,
        ledger: Ledger,
        batch: Batch,
        state: State,
        *,
        note: Note,
        attempt: int,
        **changes: Any,
    ) -> None:
        """Write the final entries and statuses; apply them once the broker has them."""
        now = self.clock()
        entries = [e.moved(state, now, attempt=attempt, **changes) for e in batch.entries]
        outputs = [self._ledger_record(e, partition) for e in entries]
        outputs += [out for e in entries for out in self._reports(e, note, attempt)]
        await self._emit(outputs)
        for entry in entries:
            ledger.apply(entry)
            self.attempts.pop(entry.request_id, None)

    # -- records ------------------------------------------------------------------
    def _ledger_record(self, entry: Entry, partition: int) -> Output:
        return self.ledger_topic, entry.request_id.encode(), entry.to_bytes(), partition

    def _status_record(self, entry: Entry, note: Note, attempt: int) -> Record:
        return delivery_status(
            event_id=entry.event_id,
            request_id=entry.request_id,
            destination="NOTIFY",
            document_unique_id=entry.document_unique_id,
            outcome=note.outcome,
            code=note.code,
            detail=note.detail,
            attempt=attempt,
            now=self.clock(),
            submitted_at=entry.submitted_at,
        )

    def _reports(self, entry: Entry, note: Note, attempt: int) -> list[Output]:
        """The status, and for a final one the DELIVERED / DELIVERY_FAILED audit event."""
        record = self._status_record(entry, note, attempt)
        key = entry.patient_key.encode()
        status = self.codec.encode("DeliveryStatus", record)
        outputs: list[Output] = [(DELIVERY_STATUS.name(self.prefix), key, status, None)]
        if note.outcome in {"DELIVERED", "DUPLICATE", "REJECTED"}:
            DELIVERIES.labels("NOTIFY", note.outcome).inc()  # the cross-sink view
            audit = self.codec.encode("AuditEvent", delivery(record, component=STAGE))
            outputs.append((AUDIT.name(self.prefix), key, audit, None))
        return outputs

    def _dead_letter(self, exc: Exception, origin: Origin, message: Any) -> Output:
        failure = failure_of(exc)
        self.stage_metrics.failed(failure.reason_code, dead_lettered=True)
        log.warning(
            "request at %s[%s]@%s dead-lettered: %s",
            origin.topic,
            origin.partition,
            origin.offset,
            failure.reason_code,
        )
        topic, value = dead_letter_output(
            self.codec,
            self.keyring,
            self.prefix,
            stage=STAGE,
            failure=failure,
            origin=origin,
            original=message.value or b"",
            now=self.clock(),
        )
        return topic, message.key, value, None

    async def _emit(self, outputs: list[Output]) -> None:
        """Produce and wait for every acknowledgement (acks=all)."""
        futures = [
            await self.producer.send(topic, value, key=key, partition=partition)
            for topic, key, value, partition in outputs
        ]
        await asyncio.gather(*futures)
        for topic, *_ in outputs:
            self.stage_metrics.emitted(topic)

    def _observe(self) -> None:
        now = self.clock()
        embargoed = due = entries = 0
        oldest = 0.0
        for ledger in self.ledgers.values():
            e, d, age = ledger.pending(now)
            embargoed, due, oldest = embargoed + e, due + d, max(oldest, age)
            entries += len(ledger.entries)
        metrics.observe(embargoed, due, oldest, entries)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: NotifySink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.sink.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.sink.assigned(assigned)


async def run_notify_sink(settings: Settings, keyring: Keyring) -> None:
    """Run the sink until SIGINT/SIGTERM."""
    stop = stop_on_signals()
    config = NotifyConfig.from_settings(settings)
    channels = Channels(config.channels)
    sink = NotifySink(
        bootstrap=settings.bootstrap_servers,
        prefix=settings.topic_prefix,
        keyring=keyring,
        sender=channels,
        preferences=load_preferences(config.preferences),
        rate=config.rate,
        session_timeout_s=settings.session_timeout_s,
    )
    try:
        await sink.run(stop)
    finally:
        with contextlib.suppress(Exception):
            await channels.close()
