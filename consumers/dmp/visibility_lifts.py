"""The DMP sink's visibility lifts: kept on the bus, sent at the release date (async shell).

:class:`VisibilityLifts` is the thin shell around :mod:`consumers.dmp.visibility`. The DMP
sink calls :meth:`~VisibilityLifts.filed` after it filed an embargoed document (the lift
is written to ``deliveries.visibility.v1`` and acknowledged before the filing is recorded
DONE, so a crash cannot lose it) and :meth:`~VisibilityLifts.tick` after each poll: the
lifts of the partitions the sink owns are read back from the compacted topic when a
partition is assigned (after any restart), and each due one is sent — the entryUUID the
DMP holds for the document (ITI-18), then ITI-57 with its current confidentiality codes
without ``INVISIBLE_PATIENT`` — and reported as a ``DeliveryStatus``
(``<request id>|visibility``) with its audit event. A DMP outage leaves the lift pending
and tries again after a backoff (per lift; other work goes on); a refusal ends it REJECTED
with the DMP's code, which cancels the notification. The patient's id and the entry as
filed travel sealed in the lift (the patient's key).

A tick never holds polling up for long: it sends at most :data:`TICK_MAX` lifts within
:data:`TICK_BUDGET_S` seconds (the others wait for the next poll), and none while a lift
waits out an outage (the DMP, the key store, the broker or the network: its own backoff,
never the filings' readiness flag; a lift's answered ITI-18/ITI-57 sets that flag back).
The status and its audit event are acknowledged *before* the lift is written DONE: a crash
in between sends the status again (the notify gate takes a duplicate as the same answer),
and a failed acknowledgement reports the same decision again, never decides anew. A DONE
lift is removed from the topic (a tombstone) :data:`DONE_HORIZON` after, within the same
budget.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from aiokafka.errors import KafkaError

from consumers.dmp.client import DmpClient
from consumers.dmp.metrics import VISIBILITY_PENDING, VISIBILITY_UPDATES
from consumers.dmp.subject import subject_of
from consumers.dmp.submission import Answer, DmpRejected, DmpUnavailable, Submission
from consumers.dmp.visibility import (
    STAGE,
    Decision,
    Lift,
    Plan,
    State,
    VisibilityError,
    due,
    envelope_fields,
    envelope_of,
    expired,
    lift_of,
    lifted_codes,
    opened,
    payload,
    plan,
    release_date,
    settled,
    status_of,
)
from consumers.ihe import iti18, iti57
from domain.xds.metadata import DocumentEntry
from relais.audit_records import delivery
from relais.backoff import exponential_backoff
from relais.contracts import Codec, Record
from relais.document_store.errors import StoreUnavailableError
from relais.envelope import EnvelopeError, open_envelope, seal
from relais.kafka_clients import Target
from relais.keyring import Keyring, warm_patient_key
from relais.sink_loop import Out, SinkLoop
from relais.topic_reader import read_to_end
from relais.topics import AUDIT, DELIVERY_STATUS, DMP_VISIBILITY

log = logging.getLogger(__name__)
PURPOSE = "visibility-lift"
#: at most this many lifts, for at most this long, per tick (after each poll)
TICK_MAX: Final = 20
TICK_BUDGET_S: Final = 10.0
#: the broker or the network failed: an outage (the lift is tried again), never an ending
_OUTAGES: Final = (KafkaError, OSError, TimeoutError)
_T = TypeVar("_T")


def _now() -> datetime:
    return datetime.now(UTC)


class VisibilityLifts:
    """The lifts of the partitions the DMP sink owns (partition -> request id -> lift)."""

    def __init__(
        self,
        *,
        bootstrap: Target,
        prefix: str,
        keyring: Keyring,
        client: DmpClient,
        loop: SinkLoop,
        codec: Codec,
        input_topic: str,
        clock: Callable[[], datetime] = _now,
        backoff: Callable[[], Iterator[float]] = exponential_backoff,
        dmp_answered: Callable[[], None] = lambda: None,
    ) -> None:
        self.bootstrap, self.prefix, self.keyring = bootstrap, prefix, keyring
        self.client, self.loop, self.codec, self.clock = client, loop, codec, clock
        self.input_topic, self.backoff = input_topic, backoff
        self.dmp_answered = dmp_answered  # a lift's ITI-18/ITI-57 answered: the DMP is up
        self.down_until: datetime | None = None  # a lift met an outage: none before then
        self.topic = DMP_VISIBILITY.name(prefix)
        self.lifts: dict[int, dict[str, Lift]] = {}
        self.not_before: dict[str, datetime] = {}  # request id -> retry time (an outage)
        self._delays: dict[str, Iterator[float]] = {}
        #: request id -> (partition, how it ends) decided but not acknowledged yet
        self.decided: dict[str, tuple[int, Decision]] = {}
        VISIBILITY_PENDING.set_function(self.pending)

    # -- after a filing ----------------------------------------------------------------
    async def filed(
        self, request: Record, submission: Submission, partition: int, key: bytes | None
    ) -> None:
        """Keep the lift of an embargoed request just filed (nothing for the others)."""
        entry = submission.metadata
        if entry is None or release_date(request) is None:
            return
        await self._restored([partition])  # what an earlier owner wrote, before its first tick
        known = self.lifts.get(partition, {}).get(request["request_id"])
        if known is not None and known.state is not State.PENDING:
            return  # a resend of the filing: the lift is under way or done
        keyring = self.keyring.for_existing_patient(request["patient"]["patient_key"])
        sealed = seal(
            keyring,
            payload(submission.patient_id, entry),
            event_id=request["event_id"],
            purpose=PURPOSE,
        )
        fields = envelope_fields(sealed)
        text_key = (key or b"").decode("ascii", errors="replace")
        lift = lift_of(request, entry, fields, key=text_key, now=self.clock())
        if lift is not None:
            await self._write(partition, lift)
            log.info(
                "event %s: filed invisible to the patient until %s", lift.event_id, lift.release_at
            )

    # -- after each poll ---------------------------------------------------------------
    async def tick(self) -> None:
        """Follow the sink's partitions, send what is due, then remove the old DONE lifts
        (within the tick's budget; no lift while one waits out an outage)."""
        await self._follow()
        now = self.clock()
        deadline = time.monotonic() + TICK_BUDGET_S
        if self.down_until is not None and now >= self.down_until:
            self.down_until = None
        for partition, lift in self._ready(now)[:TICK_MAX]:
            if time.monotonic() >= deadline or self.down_until is not None:
                break  # the rest at the next poll
            await self._lift(partition, lift)
        await self._sweep(now, deadline)

    def _ready(self, now: datetime) -> list[tuple[int, Lift]]:
        """The due lifts not waiting for a backoff, oldest release date first."""
        ready = [
            (partition, lift)
            for partition, lifts in list(self.lifts.items())
            for lift in due(lifts, now)
            if (wait := self.not_before.get(lift.request_id)) is None or wait <= now
        ]
        return sorted(ready, key=lambda pair: pair[1].release_at)

    async def _sweep(self, now: datetime, deadline: float) -> None:
        """Tombstones for the DONE lifts past :data:`DONE_HORIZON` (memory and topic), at most
        :data:`TICK_MAX` before ``deadline``; a broker failure leaves the rest for later."""
        old = [(p, x) for p, lifts in list(self.lifts.items()) for x in expired(lifts, now)]
        for partition, lift in old[:TICK_MAX]:
            if time.monotonic() >= deadline:
                return
            try:
                await self.loop.producer.send_and_wait(
                    self.topic, None, key=lift.key, partition=partition
                )
            except _OUTAGES as exc:
                log.warning("visibility lifts: tombstones later (%s)", type(exc).__name__)
                return
            self.lifts.get(partition, {}).pop(lift.request_id, None)

    def pending(self) -> int:
        return sum(
            1 for lifts in self.lifts.values() for x in lifts.values() if x.state is not State.DONE
        )

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions assigned or revoked: their lifts are read back before they are used."""
        for partition in partitions:
            self.lifts.pop(partition, None)

    async def _follow(self) -> None:
        """Read back the lifts of newly assigned partitions; forget those given away."""
        owned = {
            tp.partition for tp in self.loop.consumer.assignment() if tp.topic == self.input_topic
        }
        for partition in set(self.lifts) - owned:
            self.lifts.pop(partition)
        await self._restored(owned)
        self.decided = {  # only for the lifts still held, and not done
            rid: (p, decision)
            for rid, (p, decision) in self.decided.items()
            if (held := self.lifts.get(p, {}).get(rid)) is not None and held.state is not State.DONE
        }

    async def _restored(self, partitions: Iterable[int]) -> None:
        """Read back the lifts of the given partitions not read yet."""
        if new := sorted(set(partitions) - set(self.lifts)):
            wanted = [(self.topic, p) for p in new]
            records = await read_to_end(self.bootstrap, wanted, timeout_s=math.inf)
            for partition in new:
                self.lifts[partition] = {}
            for record in records:
                self._restore(record.partition, record.key, record.value)

    def _restore(self, partition: int, key: bytes | None, raw: bytes | None) -> None:
        if raw is None:  # a tombstone: a DONE lift removed after DONE_HORIZON
            self.lifts.setdefault(partition, {}).pop((key or b"").decode(errors="replace"), None)
            return
        try:
            lift = Lift.from_bytes(raw)
        except VisibilityError as exc:
            log.warning("visibility lifts partition %d: a record skipped: %s", partition, exc)
            return
        self.lifts.setdefault(partition, {})[lift.request_id] = lift

    async def _write(self, partition: int, lift: Lift) -> None:
        """Write ``lift`` on its partition and wait for the broker's acknowledgement."""
        await self.loop.producer.send_and_wait(
            self.topic, lift.to_bytes(), key=lift.key, partition=partition
        )
        if (held := self.lifts.get(partition)) is not None:
            held[lift.request_id] = lift

    # -- one lift ----------------------------------------------------------------------
    async def _lift(self, partition: int, lift: Lift) -> None:
        """One attempt: the decision, then its status and DONE. An outage (the DMP, the key
        store, the broker, the network) leaves the lift due, tried again after a backoff; a
        decision already made is reported as made, never decided again."""
        try:
            kept = self.decided.get(lift.request_id)
            decision = kept[1] if kept is not None else await self._decide(partition, lift)
            self.decided[lift.request_id] = (partition, decision)
            await self._finish(partition, decision)
        except DmpUnavailable as exc:
            self._later(lift, f"DMP unavailable ({exc.code})", everything=True)
        except StoreUnavailableError:  # the patient key store: as an outage of the DMP
            self._later(lift, "patient key store unavailable", everything=True)
        except _OUTAGES as exc:  # the broker or the network: the same lift later
            self._later(lift, f"unavailable ({type(exc).__name__})", everything=True)

    def _later(self, lift: Lift, why: str, *, everything: bool = False) -> None:
        """Try ``lift`` again after its next backoff delay (with ``everything``: no lift
        before then, the DMP, the key store or the broker is down)."""
        delay = next(self._delays.setdefault(lift.request_id, self.backoff()))
        self.not_before[lift.request_id] = self.clock() + timedelta(seconds=delay)
        if everything:
            self.down_until = self.not_before[lift.request_id]
        log.warning("TD3.3b for event %s: %s, retried in %.1f s", lift.event_id, why, delay)

    async def _decide(self, partition: int, lift: Lift) -> Decision:
        """Plan, then send (SENDING written first, outside the guard: a broker failure is an
        outage) or settle: how the lift ends once the DMP answered."""
        planned = await self._guarded(lift, self._plan(lift))
        if isinstance(planned, Decision):
            return planned
        step, current = planned
        if step is not Plan.SEND or current is None:
            return settled(lift, step)
        attempt = lift.attempt + 1
        lift = replace(lift, state=State.SENDING, lid=current.lid, attempt=attempt, at=self.clock())
        await self._write(partition, lift)
        answer = await self._guarded(lift, self._update(lift, current))
        if isinstance(answer, Decision):
            return answer
        return Decision(lift, "DELIVERED", answer.code, "visible to the patient: TD3.3b confirmed")

    async def _guarded(self, lift: Lift, step: Awaitable[_T]) -> _T | Decision:
        """``step``'s result, or how a refusal, an unreadable lift or an unexpected failure
        ends ``lift``; outages (the DMP, the key store, the broker, the network) go through."""
        try:
            return await step
        except (DmpUnavailable, StoreUnavailableError, *_OUTAGES):
            raise
        except DmpRejected as exc:
            self._answered()
            return Decision(lift, "REJECTED", exc.code, "the DMP refused the visibility update")
        except (EnvelopeError, VisibilityError) as exc:  # an erased patient: nothing to send
            detail = f"the lift cannot be opened ({type(exc).__name__}): not made visible"
            return Decision(lift, "REJECTED", "lift-unreadable", detail)
        except Exception as exc:  # a lift this release cannot handle: never a crash loop
            log.error("TD3.3b for event %s: %s, lift ended", lift.event_id, type(exc).__name__)
            detail = f"the visibility update failed ({type(exc).__name__}): not made visible"
            return Decision(lift, "REJECTED", "lift-error", detail)

    def _answered(self) -> None:
        """A lift's ITI-18 or ITI-57 was answered: the DMP is up (the sink's readiness)."""
        self.dmp_answered()

    def _open(self, lift: Lift) -> tuple[str, DocumentEntry]:
        sealed = envelope_of(lift.sealed)
        plain = open_envelope(self.keyring, sealed, event_id=lift.event_id, purpose=PURPOSE)
        return opened(plain)

    async def _plan(self, lift: Lift) -> tuple[Plan, iti18.Found | None]:
        """The plan, and the DMP's current version of the document (ITI-18 LeafClass)."""
        if not lift.invisible:
            return plan(lift, None), None
        await warm_patient_key(self.keyring, lift.patient_key or None, create=False)
        patient_id, entry = self._open(lift)
        current = await self.client.current(lift.document_unique_id, patient_id, subject_of(entry))
        self._answered()
        return plan(lift, current), current

    async def _update(self, lift: Lift, current: iti18.Found) -> Answer:
        """Send ITI-57: the entry as filed with the current version's confidentiality codes
        without INVISIBLE_PATIENT (a MASQUE_PS added meanwhile stays), as the next version of
        the DMP's current one (its lid, its version, its repositoryUniqueId)."""
        patient_id, entry = self._open(lift)
        if not current.repository_unique_id:
            raise DmpRejected("the DMP gave no repositoryUniqueId", code="XDSRegistryError")
        codes = lifted_codes(entry.confidentiality, current.confidentiality)
        update = iti57.Update(
            iti57.with_confidentiality(entry, codes),
            current.lid,
            current.version,
            current.repository_unique_id,
        )
        answer = await self.client.update(update, patient_id, self.clock(), subject_of(entry))
        self._answered()
        return answer

    async def _finish(self, partition: int, decision: Decision) -> None:
        """The status and its audit event (acknowledged), then DONE (the sealed payload
        dropped): a crash in between reports it again, never loses it."""
        lift, outcome, code = decision.lift, decision.outcome, decision.code
        done = replace(
            lift, state=State.DONE, outcome=outcome, code=code, sealed={}, at=self.clock()
        )
        status = status_of(
            done, outcome=outcome, code=code, detail=decision.detail, now=self.clock()
        )
        key = lift.patient_key.encode() or None
        await self.loop.emit(
            [
                Out(
                    DELIVERY_STATUS.name(self.prefix),
                    self.codec.encode("DeliveryStatus", status),
                    key,
                ),
                Out(
                    AUDIT.name(self.prefix),
                    self.codec.encode("AuditEvent", delivery(status, component=STAGE)),
                    key,
                ),
            ]
        )
        await self._write(partition, done)
        self.decided.pop(lift.request_id, None)
        self.not_before.pop(lift.request_id, None)
        self._delays.pop(lift.request_id, None)
        VISIBILITY_UPDATES.labels(outcome).inc()
        log.info("TD3.3b for event %s: %s %s", lift.event_id, outcome, code or "")
