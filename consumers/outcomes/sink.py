"""The outcomes sink: tell each sender what became of a document after its AA (thin shell).

It reads three topics on the loop every sink shares (:mod:`relais.sink_loop`):

* ``deadletter`` — each dead letter of a document, opened (its sealed original,
  bound to the dead letter's id) and decoded, becomes the ZAMs N and the audit
  event of :func:`consumers.outcomes.core.after_dead_letter`;
* ``identity.pending`` — a held document: ZAMs N "held" at once, and again
  (:class:`~consumers.outcomes.holds.HoldBook`) if it is still held
  ``RELAIS_HOLD_REMINDER_S`` later;
* ``audit`` — the identity stage's ``qualified:`` decisions: a held document
  that went on needs no reminder.

ZAMs go on ``acks.business`` (``relais acks forward`` sends them over MLLP),
audit events on ``audit``; both are acknowledged before the offset is
committed, and their ids derive from the cause, so a replay writes the same
records. A dead letter whose original cannot be read is counted and logged by
id, never dead-lettered again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from consumers.outcomes import metrics
from consumers.outcomes.core import (
    COMPONENT,
    Told,
    after_dead_letter,
    after_hold,
    open_original,
    ours,
)
from consumers.outcomes.holds import HoldBook
from relais.audit_records import identity_released
from relais.contracts import ContractError, Record
from relais.document_store.errors import StoreUnavailableError
from relais.envelope import EnvelopeError
from relais.health import READINESS, broker_reachable
from relais.kafka_clients import Target
from relais.keyring import Keyring
from relais.metrics import StageMetrics
from relais.settings import Settings
from relais.sink_loop import GiveUp, Hooks, Out, Outputs, SinkLoop, SinkStage, decode_record
from relais.topics import AUDIT, BUSINESS_ACKS, DEADLETTER, IDENTITY_PENDING

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class OutcomesSink:
    def __init__(
        self,
        *,
        bootstrap: Target,
        prefix: str,
        keyring: Keyring,
        reminder_s: float,
        session_timeout_s: float = 6.0,
    ) -> None:
        self.prefix, self.keyring = prefix, keyring
        self.stage = SinkStage(COMPONENT, prefix, keyring, metrics=StageMetrics(COMPONENT))
        self.codec = self.stage.codec
        self.holds = HoldBook(reminder_s)
        self.letters, self.pending = DEADLETTER.name(prefix), IDENTITY_PENDING.name(prefix)
        self.loop = SinkLoop(
            bootstrap,
            self.stage,
            group_id=f"{prefix}-outcomes",
            topics=[self.letters, self.pending, AUDIT.name(prefix)],
            session_timeout_s=session_timeout_s,
            hooks=Hooks(after_poll=self._remind),
        )
        READINESS.register("broker", broker_reachable(bootstrap))

    async def run(self, stop: asyncio.Event) -> None:
        await self.loop.run(stop, self._handle)

    async def _handle(self, tp: TopicPartition, message: Any) -> Outputs:
        try:
            if message.topic == self.letters:
                return self._dead_letter(message)
            if message.topic == self.pending:
                held = decode_record(self.codec, message, "IdentityHeld")
                self.holds.held(held)
                return self._outputs(after_hold(held, _now()))
            audit = decode_record(self.codec, message, "AuditEvent")
        except ContractError as exc:  # an unreadable record is dead-lettered, never a crash
            raise GiveUp.because(exc) from exc
        if identity_released(audit):
            self.holds.gone(audit["event_id"])
        return []

    def _dead_letter(self, message: Any) -> Outputs:
        letter = decode_record(self.codec, message, "DeadLetter")
        self.holds.gone(letter["event_id"])
        if not ours(letter["stage"], letter["reason_code"]):
            metrics.SKIPPED.labels("door" if letter["stage"] == "mllp" else "answered").inc()
            return []
        original = self._original(letter)
        if original is not None:  # the identity stage's letters name no event: the original does
            self.holds.gone(original.get("event_id"))
        told = None if original is None else after_dead_letter(letter, original, _now())
        if told is None and original is not None:
            metrics.SKIPPED.labels("not-a-document").inc()
        return self._outputs(told)

    def _original(self, letter: Record) -> Record | None:
        """The dead letter's original record, or None (counted, logged by id) when unreadable."""
        try:
            return open_original(letter, self.keyring, self.codec)
        except StoreUnavailableError:  # the key store down, a keyring to restart: retried
            raise
        except (ContractError, EnvelopeError):
            metrics.SKIPPED.labels("unreadable-original").inc()
            log.warning(
                "dead letter %s: original unreadable, sender not told", letter["dead_letter_id"]
            )
            return None

    def _outputs(self, told: Told | None) -> Outputs:
        metrics.WAITING.set(len(self.holds.waiting))
        if told is None:
            return []
        zam = "sent" if told.acks else "not-asked"
        metrics.OUTCOMES.labels(told.reason_code, told.facility, zam).inc()
        acks = [
            Out(BUSINESS_ACKS.name(self.prefix), self.codec.encode("BusinessAck", a))
            for a in told.acks
        ]
        return [*acks, Out(AUDIT.name(self.prefix), self.codec.encode("AuditEvent", told.audit))]

    async def _remind(self) -> None:
        """After each poll: the reminders due, sent and acknowledged."""
        now = _now()
        outputs = [
            out
            for held in self.holds.due(now)
            for out in self._outputs(after_hold(held, now, reminder=True))
        ]
        if outputs:
            await self.loop.emit(outputs)


async def run_outcomes_sink(settings: Settings, keyring: Keyring, stop: asyncio.Event) -> None:
    """Run the sink until ``stop`` (set on SIGINT/SIGTERM)."""
    sink = OutcomesSink(
        bootstrap=settings.kafka.connection,
        prefix=settings.kafka.prefix,
        keyring=keyring,
        reminder_s=settings.outcomes.hold_reminder_s,
        session_timeout_s=settings.kafka.session_timeout_s,
    )
    await sink.run(stop)
