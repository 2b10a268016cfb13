"""The patient's MSSanté copy of an embargoed document waits for the release date.

The release policy may make a document visible to the patient only some days after its
validation (``release.patient_visible_from``, docs/embargo.md). The DMP files it
invisible to the patient until then and the notification waits; the copy for the
patient's own mailbox (``<INS>@patient.mssante.fr``, DESTMSSANTEPAT) honours the same
date. The MSSanté send worker hands such a request to :class:`PatientHolds`: the request,
as it came (sealed, encoded), is written to the compacted topic ``deliveries.held.v1``
(same partition number, keyed by request id) and acknowledged before the input offset is
committed — embargoes outlast the input's retention and a paused partition would hold
other patients up. After each poll, :meth:`PatientHolds.tick` reads back the holds of
the partitions the worker owns (after any restart) and hands each due request to the
worker's own handler, which mails it as any other; an SMTP outage keeps it held and tries
again after a backoff; once handled, its hold is removed (a tombstone). Professionals'
copies never wait. A tick hands over at most :data:`TICK_MAX` holds within
:data:`TICK_BUDGET_S` seconds (the rest at the next poll; each waits out its own SMTP
backoff): polling is never held up past the consumer's poll interval. A deletion that
cancels a held copy is recorded DONE in the delivery ledger (the deletion and the held
copies) *before* the holds are removed and its status reported, so a replayed deletion
finds it done instead of mailing the patient a withdrawal of a copy they never got, and a
hold a crash left behind is found done at its date instead of being mailed.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, Final

from aiokafka import TopicPartition

from mss_bridge.metrics import PATIENT_COPIES_HELD
from relais.backoff import exponential_backoff
from relais.contracts import Record
from relais.delivery_ledger import LedgerStore, Outcome, done
from relais.delivery_status import status_of
from relais.document_store.errors import StoreUnavailableError
from relais.kafka_clients import Target
from relais.sink_loop import GiveUp, Out, RetryLater, SinkLoop, SinkStage
from relais.topic_reader import read_to_end
from relais.topics import DELIVERY_HELD, DELIVERY_MSSANTE, DELIVERY_STATUS

log = logging.getLogger(__name__)
PATIENT_DOMAIN: Final = "patient.mssante.fr"
HOLD_VERSION: Final = 1
#: at most this many held copies, for at most this long, per tick (after each poll)
TICK_MAX: Final = 20
TICK_BUDGET_S: Final = 10.0
CANCELLED: Final = "HELD_COPY_CANCELLED"
Handler = Callable[[TopicPartition, Any], Awaitable[Sequence[Out] | RetryLater]]


def held_until(request: Record, recipient_domain: str, now: datetime) -> datetime | None:
    """The release date a patient's copy waits for; None: send it now (not the patient's
    mailbox, no embargo, or the date has come)."""
    if recipient_domain.lower() != PATIENT_DOMAIN or request["document"]["action"] == "DELETE":
        return None
    release = request.get("release")
    visible_from = release["patient_visible_from"] if release else None
    return visible_from if visible_from is not None and visible_from > now else None


@dataclass(frozen=True)
class Hold:
    """One held request: its record as it came, and when it may go."""

    request_id: str
    document_unique_id: str
    release_at: datetime
    key: bytes | None
    value: bytes  # the DeliveryRequest record, encoded and sealed as it came

    def to_bytes(self) -> bytes:
        body = {
            "v": HOLD_VERSION,
            "request_id": self.request_id,
            "document_unique_id": self.document_unique_id,
            "release_at": int(self.release_at.timestamp() * 1000),
            "key": None if self.key is None else base64.b64encode(self.key).decode(),
            "value": base64.b64encode(self.value).decode(),
        }
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Hold:
        body = json.loads(data)
        if body.get("v") != HOLD_VERSION:
            raise ValueError(f"held request of version {body.get('v')!r}: upgrade Relais")
        key = body["key"]
        return cls(
            request_id=str(body["request_id"]),
            document_unique_id=str(body["document_unique_id"]),
            release_at=datetime.fromtimestamp(int(body["release_at"]) / 1000, UTC),
            key=None if key is None else base64.b64decode(key),
            value=base64.b64decode(body["value"]),
        )


class PatientHolds:
    """The held patient copies of the partitions the MSSanté send worker owns."""

    def __init__(
        self,
        bootstrap: Target,
        stage: SinkStage,
        loop: SinkLoop,
        *,
        backoff: Callable[[], Iterator[float]] = exponential_backoff,
        ledger: LedgerStore | None = None,
    ) -> None:
        self.bootstrap, self.stage, self.loop, self.clock = bootstrap, stage, loop, stage.clock
        self.ledger = ledger  # the worker's delivery ledger: a cancellation is recorded DONE
        self.input_topic, self.backoff = DELIVERY_MSSANTE.name(stage.prefix), backoff
        self.topic = DELIVERY_HELD.name(stage.prefix)
        self.holds: dict[int, dict[str, Hold]] = {}
        self.not_before: dict[str, datetime] = {}
        self._delays: dict[str, Iterator[float]] = {}
        PATIENT_COPIES_HELD.set_function(lambda: sum(map(len, self.holds.values())))

    async def keep(self, request: Record, message: Any, domain: str, attempt: int) -> Out | None:
        """What becomes of a request for a mailbox of ``domain``: held (its RETRYING status),
        a deletion whose copy never left (cancelled, DELIVERED), or None: mail it now. A
        replacement or a deletion first cancels the copy still held of what it supersedes."""
        document = request["document"]
        superseded = {document["parent_unique_id"]} if document["action"] == "REPLACE" else set()
        if document["action"] == "DELETE":
            superseded = {document["unique_id"], document["parent_unique_id"]}
        await self._restored([message.partition])  # before its first tick, too
        held = self.holds.get(message.partition, {}).values()
        gone = [h.request_id for h in held if h.document_unique_id in superseded - {None}]
        if gone and document["action"] == "DELETE":
            await self._cancelled(message.partition, [*gone, request["request_id"]], attempt)
            await self._cancel(message.partition, gone)  # the ledger first: see _cancelled
            detail = "deleted before its release date: the patient's held copy was never sent"
            return self._status(request, "DELIVERED", CANCELLED, detail, attempt)
        await self._cancel(message.partition, gone)
        if (until := held_until(request, domain, self.clock())) is None:
            return None
        return await self.hold(request, message, until, attempt)

    async def _cancelled(self, partition: int, request_ids: list[str], attempt: int) -> None:
        """DONE in the delivery ledger (acknowledged) for the held copies a deletion cancels
        and for the deletion, *before* the holds go: a crash in between replays a deletion
        found done (reported again, never a withdrawal mailed) and a hold left behind is
        found done at its release date (never mailed)."""
        if self.ledger is None:
            return
        for request_id in request_ids:
            entry = done(request_id, Outcome.DELIVERED, CANCELLED, attempt, now=self.clock())
            await self.ledger.write(partition, entry)

    async def _cancel(self, partition: int, request_ids: list[str]) -> None:
        for request_id in request_ids:
            await self._write(partition, request_id, None)

    def _status(self, request: Record, outcome: str, code: str, detail: str, attempt: int) -> Out:
        status = status_of(
            request, outcome=outcome, code=code, detail=detail, attempt=attempt, now=self.clock()
        )
        codec = self.stage.codec
        return Out(DELIVERY_STATUS.name(self.stage.prefix), codec.encode("DeliveryStatus", status))

    async def hold(self, request: Record, message: Any, until: datetime, attempt: int) -> Out:
        """Keep the request until ``until`` (acknowledged): its RETRYING status to report."""
        unique_id = request["document"]["unique_id"]
        hold = Hold(request["request_id"], unique_id, until, message.key, message.value)
        await self._write(message.partition, hold.request_id, hold)
        detail = f"the patient's copy waits for the release date {until:%Y-%m-%d %H:%M} UTC"
        return self._status(request, "RETRYING", "EMBARGOED", detail, attempt)

    def is_held(self, partition: int, request_id: str) -> bool:
        return request_id in self.holds.get(partition, {})

    async def tick(self, handle: Handler) -> None:
        """Follow the worker's partitions, then hand each due request to ``handle``."""
        await self._follow()
        now = self.clock()
        deadline = time.monotonic() + TICK_BUDGET_S
        for partition, hold in self._ready(now)[:TICK_MAX]:
            if time.monotonic() >= deadline:
                return  # the rest at the next poll
            await self._release(partition, hold, handle)

    def _ready(self, now: datetime) -> list[tuple[int, Hold]]:
        """The due holds not waiting for a backoff, oldest release date first."""
        ready = [
            (partition, hold)
            for partition, holds in list(self.holds.items())
            for hold in holds.values()
            if hold.release_at <= now
            and ((wait := self.not_before.get(hold.request_id)) is None or wait <= now)
        ]
        return sorted(ready, key=lambda pair: pair[1].release_at)

    async def _release(self, partition: int, hold: Hold, handle: Handler) -> None:
        """Mail it now (the worker's handler); keep it when the operator cannot take it."""
        message = SimpleNamespace(
            topic=self.input_topic,
            partition=partition,
            offset=-1,
            key=hold.key,
            value=hold.value,
            headers=(),
        )
        try:
            outputs = await handle(TopicPartition(self.input_topic, partition), message)
        except GiveUp as given_up:
            outputs = [self.stage.dead_letter(given_up.failure, message, given_up.event_id)]
        except StoreUnavailableError:  # the document or key store: held, tried again later
            outputs = RetryLater()
        if isinstance(outputs, RetryLater):
            delay = next(self._delays.setdefault(hold.request_id, self.backoff()))
            self.not_before[hold.request_id] = self.clock() + timedelta(seconds=delay)
            await self.loop.emit(_keyed(outputs.outputs, hold.key))
            return
        await self.loop.emit(_keyed(outputs, hold.key))
        await self._write(partition, hold.request_id, None)  # released: the hold goes
        self.not_before.pop(hold.request_id, None)
        self._delays.pop(hold.request_id, None)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions assigned or revoked: their holds are read back before they are used."""
        for partition in partitions:
            self.holds.pop(partition, None)

    async def _follow(self) -> None:
        """Read back the holds of newly assigned partitions; forget those given away."""
        assigned = self.loop.consumer.assignment()
        owned = {tp.partition for tp in assigned if tp.topic == self.input_topic}
        for partition in set(self.holds) - owned:
            self.holds.pop(partition)
        await self._restored(owned)

    async def _restored(self, partitions: Iterable[int]) -> None:
        """Read back the holds of the given partitions not read yet."""
        if new := sorted(set(partitions) - set(self.holds)):
            wanted = [(self.topic, p) for p in new]
            records = await read_to_end(self.bootstrap, wanted, timeout_s=math.inf)
            for partition in new:
                self.holds[partition] = {}
            for record in records:
                self._restore(record.partition, record.key, record.value)

    def _restore(self, partition: int, key: bytes | None, raw: bytes | None) -> None:
        held = self.holds.setdefault(partition, {})
        if raw is None:  # a tombstone: released
            held.pop((key or b"").decode(errors="replace"), None)
            return
        try:
            hold = Hold.from_bytes(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("held requests partition %d: a record skipped (%s)", partition, exc)
            return
        held[hold.request_id] = hold

    async def _write(self, partition: int, request_id: str, hold: Hold | None) -> None:
        value = None if hold is None else hold.to_bytes()
        await self.loop.producer.send_and_wait(
            self.topic, value, key=request_id.encode(), partition=partition
        )
        if (held := self.holds.get(partition)) is not None:
            if hold is None:
                held.pop(request_id, None)
            else:
                held[request_id] = hold


def _keyed(outputs: Sequence[Out], key: bytes | None) -> list[Out]:
    """Outputs without a key of their own get the request's (the patient's pseudonym)."""
    return [out if out.key is not None else out._replace(key=key) for out in outputs]
