"""The notification sink: tell patients "a new document is available", once, when allowed.

The sink loop every sink shares (:mod:`relais.sink_loop`) over ``deliveries.notify.v1``
and ``deliveries.status.v1`` (manual commits), around the pure ledger of
:mod:`consumers.notify.schedule`. A document going to the DMP is told only once the DMP
filed it (under embargo: once the DMP made it visible to the patient, TD3.3b): its
request waits in the ledger for the DMP sink's status of the same event, and a refusal
cancels it (:mod:`consumers.notify.dmp_gate`, docs/embargo.md). Both topics are keyed by
the patient's pseudonym and have as many partitions; the range assignor gives one
worker the same partition numbers of both, so a request and its DMP status meet in one
ledger. Two steps, both in one task:

1. **Admit** each request: decide (schedule, duplicate, skip, cancel an earlier one),
   write the ledger entry to ``notify.ledger.v1`` (same partition number) and any
   ``DeliveryStatus``, wait for the broker's acknowledgements, then commit the input
   offset (one commit for what one poll brought). Admission never talks to a channel,
   so an SMTP or SMS outage never stalls the input, and a document under embargo is
   safe in the ledger, not in a paused partition (embargoes last weeks; input
   retention is a week).
2. **Dispatch** what is due, after each poll (:mod:`consumers.notify.dispatch`): per
   patient, the rate limit may hold it back; otherwise one message by the patient's
   channel covers every due document; then the ``SENT`` entries and statuses are
   written. A transient channel failure keeps the entries pending and tries again
   after a backoff (per patient, or the gateway's Retry-After); other patients are
   not held up.

When a partition is assigned, its ledger partition is read back from the start
(a compacted topic: the latest entry per request, :mod:`consumers.notify.ledgers`);
when it is revoked, the worker first finishes the message it is sending (a lock the
loop and the dispatcher share), so the next owner reads a ledger that says what was
sent. What the sink writes (ledger records, statuses, audit events) is built in
:mod:`consumers.notify.records`.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from consumers.notify import metrics
from consumers.notify.channels import ChannelConfig, Channels, email_server
from consumers.notify.dispatch import Dispatcher, Sender, reported
from consumers.notify.dmp_gate import dmp_outcome_of
from consumers.notify.ledger_entry import State
from consumers.notify.ledgers import PartitionLedgers
from consumers.notify.preferences import Preferences, load_preferences
from consumers.notify.rate import RateLimit
from consumers.notify.records import STAGE, NotifyRecords
from consumers.notify.schedule import Admission, Incoming, Ledger, incoming_of
from relais import kafka_clients
from relais.kafka_clients import Target
from relais.keyring import Keyring
from relais.mail.config import smtp_config
from relais.mail.smtp import SmtpConfig
from relais.metrics import StageMetrics
from relais.settings import Settings
from relais.sink_loop import (
    GiveUp,
    Hooks,
    Out,
    Outputs,
    SinkLoop,
    SinkStage,
    decode_record,
)
from relais.topics import DELIVERY_NOTIFY, DELIVERY_STATUS, NOTIFY_LEDGER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotifyConfig:
    channels: ChannelConfig
    preferences: Path | None
    rate: RateLimit

    @classmethod
    def from_settings(cls, s: Settings) -> NotifyConfig:
        """The MSSanté channel is mss_bridge's (RELAIS_MSS_*); the rest is RELAIS_NOTIFY_*."""
        email = SmtpConfig(server=email_server(s.notify.email_smtp), ca_file=s.notify.ca_file)
        channels = ChannelConfig(
            mssante=smtp_config(s),
            mssante_sender=s.mss.sender,
            email=email,
            email_sender=s.notify.email_from,
            sms_url=s.notify.sms_url,
            ca_file=s.notify.ca_file,
        )
        rate = RateLimit(s.notify.rate_limit, s.notify.rate_window_s)
        return cls(channels, s.notify.preferences, rate)


def _now() -> datetime:
    return datetime.now(UTC)


class NotifySink:
    def __init__(
        self,
        *,
        bootstrap: Target,
        prefix: str,
        keyring: Keyring,
        sender: Sender,
        preferences: Preferences,
        rate: RateLimit,
        session_timeout_s: float = 6.0,
        clock: Callable[[], datetime] = _now,
        group_id: str | None = None,
    ) -> None:
        self.prefix, self.keyring, self.clock = prefix, keyring, clock
        self.input = DELIVERY_NOTIFY.name(prefix)
        self.statuses = DELIVERY_STATUS.name(prefix)
        self.ledger_topic = NOTIFY_LEDGER.name(prefix)
        stage_metrics = StageMetrics(STAGE)
        self.stage = SinkStage(STAGE, prefix, keyring, metrics=stage_metrics, clock=clock)
        self.codec = self.stage.codec
        self.reader = kafka_clients.consumer(bootstrap, group_id=None, enable_auto_commit=False)
        self.ledgers = PartitionLedgers(bootstrap, self.ledger_topic, stage_metrics)
        self.records = NotifyRecords(prefix, self.ledger_topic, self.codec, clock)
        self.lock = asyncio.Lock()  # one admission, one send or one rebalance step at a time
        self.loop = self._sink_loop(
            bootstrap, group_id or f"{prefix}-notify-sink", session_timeout_s
        )
        self.dispatcher = Dispatcher(
            sender=sender,
            preferences=preferences,
            rate=rate,
            keyring=keyring,
            ledgers=self.ledgers,
            records=self.records,
            emit=self.loop.emit,
            lock=self.lock,
            clock=clock,
        )

    def _sink_loop(self, bootstrap: Target, group_id: str, session_timeout_s: float) -> SinkLoop:
        """Admission under the lock, one commit per poll; ledgers follow the partitions.

        Requests and DMP statuses of one partition number go to one worker (see above): the
        sink loop's consumer assigns by range (relais.sink_loop.sink_consumer).
        """
        hooks = Hooks(self.ledgers.assigned, self.ledgers.revoked, after_poll=self._after_poll)
        return SinkLoop(
            bootstrap,
            self.stage,
            group_id=group_id,
            topics=[self.input, self.statuses],
            session_timeout_s=session_timeout_s,
            max_records=200,
            hooks=hooks,
            lock=self.lock,
            commit_per_poll=True,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Admit, dispatch, until ``stop``; the message in hand is finished first."""
        metrics.started()
        await self.reader.start()
        try:
            await self._check_partitions()
            await self.loop.run(stop, self._admit)
        finally:
            await self.reader.stop()

    async def _check_partitions(self) -> None:
        await self.reader.topics()  # fetch metadata
        inputs = self.reader.partitions_for_topic(self.input)
        for other in (self.ledger_topic, self.statuses):
            found = self.reader.partitions_for_topic(other)
            if not inputs or not found or len(inputs) != len(found):
                raise RuntimeError(
                    f"{other} must exist with as many partitions as {self.input} "
                    f"({len(inputs or ())} and {len(found or ())} found): "
                    "run `relais topics create`"
                )

    async def _after_poll(self) -> None:
        await self.dispatcher.dispatch()
        self._observe()

    async def _admit(self, tp: TopicPartition, message: Any) -> Outputs:
        """Admit one request into its partition's ledger: the entries and statuses to write."""
        if tp.topic == self.statuses:
            return await self._dmp_status(tp, message)
        ledger = await self.ledgers.of(tp.partition)
        incoming = self._incoming(message)
        return self._written(ledger.admit(incoming, self.clock()), ledger, tp.partition)

    async def _dmp_status(self, tp: TopicPartition, message: Any) -> Outputs:
        """A DMP outcome: release or cancel the notifications waiting for it, or keep it."""
        try:
            outcome = dmp_outcome_of(decode_record(self.codec, message, "DeliveryStatus"))
        except Exception as exc:
            raise GiveUp.because(exc) from exc
        if outcome is None:
            return []
        ledger = await self.ledgers.of(tp.partition)
        admission, keep = ledger.dmp_outcome(outcome, self.clock())
        outputs = self._written(admission, ledger, tp.partition)
        if keep:
            outputs.append(Out(self.ledger_topic, outcome.to_bytes(), outcome.key, tp.partition))
        return outputs

    def _written(self, admission: Admission, ledger: Ledger, partition: int) -> Outputs:
        """Apply an admission's entries: the ledger records and statuses to write."""
        outputs: Outputs = []
        for entry in admission.writes:
            ledger.apply(entry)
            outputs.append(self.records.ledger_record(entry, partition))
            if entry.state is State.CANCELLED:
                metrics.DELIVERIES.labels("none", "cancelled").inc()
        for entry, note in admission.notes:
            if note.outcome == "DUPLICATE":
                metrics.DELIVERIES.labels(entry.channel or "none", "duplicate").inc()
            elif entry.state is State.SKIPPED and note.outcome == "REJECTED":
                metrics.DELIVERIES.labels("none", "rejected").inc()
            outputs += reported(self.records, entry, note, attempt=max(entry.attempt, 1))
        return outputs

    def _incoming(self, message: Any) -> Incoming:
        """The request as the ledger admits it; an unusable one is dead-lettered, never a crash."""
        event_id = None
        try:
            request = decode_record(self.codec, message, "DeliveryRequest")
            event_id = request["event_id"]
            return incoming_of(request)
        except Exception as exc:
            given_up = GiveUp.because(exc, event_id)
            log.warning(
                "request at %s[%s]@%s dead-lettered: %s",
                message.topic,
                message.partition,
                message.offset,
                given_up.failure.reason_code,
            )
            raise given_up from exc

    def _observe(self) -> None:
        now = self.clock()
        embargoed = due = entries = 0
        oldest = 0.0
        for ledger in self.ledgers.values():
            e, d, age = ledger.pending(now)
            embargoed, due, oldest = embargoed + e, due + d, max(oldest, age)
            entries += len(ledger.entries)
        metrics.observe(embargoed, due, oldest, entries)


async def run_notify_sink(settings: Settings, keyring: Keyring, stop: asyncio.Event) -> None:
    """Run the sink until ``stop`` (set on SIGINT/SIGTERM by :func:`relais.process.run_process`)."""
    config = NotifyConfig.from_settings(settings)
    channels = Channels(config.channels)
    sink = NotifySink(
        bootstrap=settings.kafka.connection,
        prefix=settings.kafka.prefix,
        keyring=keyring,
        sender=channels,
        preferences=load_preferences(config.preferences),
        rate=config.rate,
        session_timeout_s=settings.kafka.session_timeout_s,
    )
    try:
        await sink.run(stop)
    finally:
        with contextlib.suppress(Exception):
            await channels.close()
