"""Dispatch what is due: tell each patient by their channel, then record it.

After each poll the sink asks every owned partition's ledger what is due. Per
patient, the rate limit may hold it back; otherwise one message by the patient's
channel covers every due document; then the ``SENT`` entries and statuses are
written. A transient channel failure keeps the entries pending and tries again after
a backoff (per patient, or the gateway's Retry-After); other patients are not held
up. Each send holds the sink's lock, so a rebalance waits for it and its entries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from consumers.notify import metrics
from consumers.notify.channels import Accepted, ChannelRejected, ChannelUnavailable
from consumers.notify.ledger_entry import Entry, Note, State
from consumers.notify.ledgers import PartitionLedgers
from consumers.notify.message import Notice, notice_of
from consumers.notify.preferences import Channel, Preference, Preferences
from consumers.notify.rate import RateLimit
from consumers.notify.records import FINAL, NotifyRecords
from consumers.notify.schedule import Batch, Ledger
from relais.backoff import exponential_backoff
from relais.deadletter import StageFailure
from relais.delivery_metrics import DELIVERIES
from relais.document_store.errors import StoreUnavailableError
from relais.envelope import EnvelopeError
from relais.keyring import Keyring, warm_patient_key
from relais.patient_traits import open_traits
from relais.sink_loop import Out

log = logging.getLogger(__name__)


class Sender(Protocol):
    """The seam to the channels (:class:`~consumers.notify.channels.Channels` in production)."""

    async def send(
        self,
        preference: Preference,
        notice: Notice,
        *,
        request_ids: list[str],
        ins: str | None,
        now: datetime,
    ) -> Accepted: ...


def reported(records: NotifyRecords, entry: Entry, note: Note, attempt: int) -> list[Out]:
    """:meth:`NotifyRecords.reports`; a final outcome also counts in the cross-sink view."""
    if note.outcome in FINAL:
        DELIVERIES.labels("NOTIFY", note.outcome).inc()
    return records.reports(entry, note, attempt)


@dataclass(frozen=True)
class InHand:
    """The batch being sent: one patient's due entries of one partition, and the attempt."""

    partition: int
    ledger: Ledger
    batch: Batch
    attempt: int


class Dispatcher:
    def __init__(
        self,
        *,
        sender: Sender,
        preferences: Preferences,
        rate: RateLimit,
        keyring: Keyring,
        ledgers: PartitionLedgers,
        records: NotifyRecords,
        emit: Callable[[Sequence[Out]], Awaitable[None]],
        lock: asyncio.Lock,
        clock: Callable[[], datetime],
    ) -> None:
        self.sender, self.preferences, self.rate = sender, preferences, rate
        self.keyring, self.ledgers, self.records = keyring, ledgers, records
        self.emit, self.lock, self.clock = emit, lock, clock
        self.backoffs: dict[str, Iterator[float]] = {}
        self.attempts: dict[str, int] = {}

    async def dispatch(self) -> None:
        """Send what is due in every owned partition, one batch at a time under the lock."""
        for partition, ledger in self.ledgers.items():
            due = ledger.due(self.clock(), self.rate)
            if due.rate_limited:
                metrics.RATE_LIMITED.inc(due.rate_limited)
            for batch in due.batches:
                async with self.lock:
                    if self.ledgers.get(partition) is not ledger:
                        break  # given away while we were sending
                    attempt = 1 + max(self.attempts.get(r, 0) for r in batch.request_ids)
                    await self._send(InHand(partition, ledger, batch, attempt))

    async def _send(self, hand: InHand) -> None:
        batch = hand.batch
        preference = self.preferences.of(batch.patient_key)
        notice = notice_of([e.kind for e in batch.entries])
        if preference.channel is Channel.NONE:
            note = Note("REJECTED", "OPTED_OUT", "the patient asked for no notifications")
            metrics.DELIVERIES.labels("none", "skipped").inc(len(batch.entries))
            await self._settle(hand, State.SKIPPED, note)
            return
        try:
            mss = preference.channel is Channel.MSSANTE
            ins = await self._ins(batch.entries[0]) if mss else None
            accepted = await self.sender.send(
                preference, notice, request_ids=batch.request_ids, ins=ins, now=self.clock()
            )
        except ChannelUnavailable as exc:
            await self._retry_later(hand, preference.channel, exc)
            return
        except ChannelRejected as exc:
            await self._refused(hand, preference.channel, exc)
            return
        await self._told(hand, accepted)

    async def _ins(self, entry: Entry) -> str | None:
        """The patient's INS, opened from the sealed identity the ledger keeps (the patient's
        key read into the cache off the event loop first: this runs from the timer too)."""
        if entry.identity is None:
            raise ChannelRejected("the ledger lost the sealed identity", code="NO_IDENTITY")
        try:
            await warm_patient_key(self.keyring, entry.patient_key, create=False)
            traits = open_traits(
                {"event_id": entry.event_id, "patient": {"identity": entry.identity}}, self.keyring
            )
        except StoreUnavailableError as exc:  # the patient key store, not the entry: later
            raise ChannelUnavailable(str(exc), code="KEY_STORE_UNAVAILABLE") from None
        except (EnvelopeError, StageFailure):
            raise ChannelRejected(
                "the patient identity does not open with this keyring", code="IDENTITY_UNREADABLE"
            ) from None
        ins = traits.get("ins")
        return str(ins) if ins else None

    async def _told(self, hand: InHand, accepted: Accepted) -> None:
        """The channel took the message: SENT entries, DELIVERED statuses, the metrics."""
        batch = hand.batch
        channel = accepted.channel.value
        detail = f"told by {channel}: one message for {len(batch.entries)} document(s)"
        note = Note("DELIVERED", accepted.code, detail)
        await self._settle(hand, State.SENT, note, channel=channel, code=accepted.code)
        metrics.MESSAGES.labels(channel).inc()
        metrics.DELIVERIES.labels(channel, "delivered").inc(len(batch.entries))
        now = self.clock()
        for entry in batch.entries:
            known_from = max(entry.submitted_at, entry.due_at)
            metrics.LATENCY.labels(channel).observe(max(0.0, (now - known_from).total_seconds()))
        self.backoffs.pop(batch.patient_key, None)

    async def _refused(self, hand: InHand, channel: Channel, exc: ChannelRejected) -> None:
        """The channel refused for good: FAILED entries, REJECTED statuses."""
        metrics.DELIVERIES.labels(channel.value, "rejected").inc(len(hand.batch.entries))
        log.warning("notification of %s refused: %s", hand.batch.request_ids, exc.code)
        await self._settle(hand, State.FAILED, Note("REJECTED", exc.code, str(exc)))

    async def _retry_later(self, hand: InHand, channel: Channel, exc: ChannelUnavailable) -> None:
        """Keep the entries pending, due again after a backoff; one RETRYING status each."""
        batch, attempt = hand.batch, hand.attempt
        backoff = self.backoffs.setdefault(batch.patient_key, exponential_backoff(1.0, 300.0))
        delay = exc.retry_after_s if exc.retry_after_s is not None else next(backoff)
        hand.ledger.postpone(batch.entries, self.clock() + timedelta(seconds=delay))
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
            await self.emit([o for e in batch.entries for o in self._reports(e, note, attempt)])

    async def _settle(self, hand: InHand, state: State, note: Note, **changes: Any) -> None:
        """Write the final entries and statuses; apply them once the broker has them."""
        now, attempt = self.clock(), hand.attempt
        entries = [e.moved(state, now, attempt=attempt, **changes) for e in hand.batch.entries]
        outputs = [self.records.ledger_record(e, hand.partition) for e in entries]
        outputs += [out for e in entries for out in self._reports(e, note, attempt)]
        await self.emit(outputs)
        for entry in entries:
            hand.ledger.apply(entry)
            self.attempts.pop(entry.request_id, None)

    def _reports(self, entry: Entry, note: Note, attempt: int) -> list[Out]:
        return reported(self.records, entry, note, attempt)
