"""The delivery ledger: what a sink already did, so that a retry never delivers twice.

One entry per delivery request (its ``request_id``: document unique id +
action + destination), on a compacted topic partitioned like the requests —
the shape of a Faust table, whose changelog this is. A sink writes
``SENDING`` (and waits for the broker's acknowledgement) before it calls the
destination, and ``DONE`` with the outcome after. When it meets a request
again — a redelivery after a crash, a rebalance, a timeout — the entry says
what to do (:func:`next_step`, reading :data:`TRANSITIONS`):

* no entry: send;
* ``DONE``: do not send again; report the recorded outcome and commit —
  unless an operator replays a request the destination refused (``relais dlq
  replay`` after a fix): then it is sent again;
* ``SENDING``: the previous owner died between the send and its answer, so the
  destination may or may not have the document: **reconcile** (ask the
  destination) before sending.

The entries a sink writes: ``SENDING`` before each call to the destination
(again after a reconciliation that found nothing), ``DONE`` once it answered
(or a reconciliation found the answer). The pure part is pure: the shell passes
the time (``now``). :class:`LedgerStore` restores a partition's entries from
the topic when the sink is given the partition and writes new ones.

The encoded entry is JSON with sorted keys (``at_ms``, ``attempt``, ``code``,
``outcome``, ``request_id``, ``state``); ledgers written by earlier versions read
the same.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from aiokafka import AIOKafkaProducer, TopicPartition

from relais.kafka_clients import Target
from relais.topic_reader import read_to_end

log = logging.getLogger(__name__)


class State(enum.StrEnum):
    SENDING = "SENDING"  # written (and acknowledged) before the destination is called
    DONE = "DONE"  # written once the destination answered, with the outcome


class Outcome(enum.StrEnum):
    DELIVERED = "DELIVERED"
    DUPLICATE = "DUPLICATE"  # the destination already had it (from another sender)
    REJECTED = "REJECTED"  # refused: never sent again, unless an operator replays it


class Met(enum.Enum):
    """How a sink meets a request."""

    READ = "read"  # the first time, or again after a crash, a rebalance, a timeout
    REPLAYED = "replayed"  # sent back from the dead letters by an operator (`relais dlq replay`)


class Step(enum.Enum):
    SEND = "send"
    RECONCILE = "reconcile"
    ALREADY_DONE = "already-done"


NEW = None  # no entry yet
SENDING, DONE = State.SENDING, State.DONE
DELIVERED, DUPLICATE, REJECTED = Outcome.DELIVERED, Outcome.DUPLICATE, Outcome.REJECTED
READ, REPLAYED = Met.READ, Met.REPLAYED

#: (the entry's state, its outcome, how the request is met) -> what the sink does.
TRANSITIONS: Final = MappingProxyType(
    {
        (NEW, None, READ): Step.SEND,
        (NEW, None, REPLAYED): Step.SEND,
        (SENDING, None, READ): Step.RECONCILE,
        (SENDING, None, REPLAYED): Step.RECONCILE,
        (DONE, DELIVERED, READ): Step.ALREADY_DONE,
        (DONE, DELIVERED, REPLAYED): Step.ALREADY_DONE,
        (DONE, DUPLICATE, READ): Step.ALREADY_DONE,
        (DONE, DUPLICATE, REPLAYED): Step.ALREADY_DONE,
        (DONE, REJECTED, READ): Step.ALREADY_DONE,
        (DONE, REJECTED, REPLAYED): Step.SEND,  # refused, fixed, replayed: send it again
    }
)


@dataclass(frozen=True)
class Entry:
    request_id: str
    state: State
    outcome: Outcome | None = None  # when DONE
    code: str | None = None  # the destination's answer code
    attempt: int = 1
    at_ms: int = 0

    def encode(self) -> bytes:
        fields: dict[str, Any] = asdict(self)
        fields["state"] = self.state.value
        fields["outcome"] = None if self.outcome is None else self.outcome.value
        return json.dumps(fields, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        """An entry :meth:`encode` wrote; ValueError or TypeError for anything else."""
        value = json.loads(raw)
        if not isinstance(value, dict) or value.get("state") not in {s.value for s in State}:
            raise ValueError("not a delivery ledger entry")
        state, outcome = State(value["state"]), value.get("outcome")
        if (state is DONE) != (outcome is not None):
            raise ValueError("not a delivery ledger entry: only a DONE entry has an outcome")
        outcome = None if outcome is None else Outcome(outcome)
        return cls(**{**value, "state": state, "outcome": outcome})


def next_step(entry: Entry | None, met: Met = READ) -> Step:
    """What to do with a request whose ledger entry is ``entry`` (None: none yet)."""
    if entry is None:
        return TRANSITIONS[NEW, None, met]
    return TRANSITIONS[entry.state, entry.outcome, met]


def sending(request_id: str, attempt: int, *, now: datetime) -> Entry:
    """The entry written before the destination is called."""
    return Entry(request_id, SENDING, attempt=attempt, at_ms=_ms(now))


def done(
    request_id: str, outcome: Outcome, code: str | None, attempt: int, *, now: datetime
) -> Entry:
    """The entry written once the destination answered."""
    return Entry(request_id, DONE, outcome, code, attempt, _ms(now))


def _ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


class LedgerStore:
    """The ledger entries of the partitions this sink owns, kept in memory, written through."""

    def __init__(self, bootstrap: Target, topic: str, producer: AIOKafkaProducer) -> None:
        self.bootstrap, self.topic, self.producer = bootstrap, topic, producer
        self.entries: dict[int, dict[str, Entry]] = {}

    def get(self, partition: int, request_id: str) -> Entry | None:
        return self.entries.get(partition, {}).get(request_id)

    def size(self) -> int:
        return sum(len(by_id) for by_id in self.entries.values())

    async def write(self, partition: int, entry: Entry) -> None:
        """Write ``entry`` on the ledger partition of its request; return once acknowledged."""
        await self.producer.send_and_wait(
            self.topic, key=entry.request_id.encode(), value=entry.encode(), partition=partition
        )
        held = self.entries.get(partition)
        if held is not None:  # a partition forgotten meanwhile is read back whole by ensure
            held[entry.request_id] = entry

    async def ensure(self, partition: int) -> None:
        """Restore ``partition`` unless it is already known (call before reading its entries)."""
        if partition not in self.entries:
            await self.restore([partition])

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.entries.pop(partition, None)

    async def moved(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions assigned or revoked: forget them; :meth:`ensure` reads them back."""
        self.forget(tp.partition for tp in partitions)

    async def restore(self, partitions: Iterable[int]) -> None:
        """Read the given ledger partitions from the start to their current end."""
        wanted = list(partitions)
        if not wanted:
            return
        # as long as it takes: a sink never handles a partition whose ledger it lacks
        records = await read_to_end(
            self.bootstrap, [(self.topic, p) for p in wanted], timeout_s=math.inf
        )
        for partition in wanted:
            self.entries[partition] = {}
        for record in records:
            self._apply(record.partition, record.value)

    def _apply(self, partition: int, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            entry = Entry.decode(raw)
        except (ValueError, TypeError):  # the ledger only ever holds what write() put there
            log.warning("delivery ledger partition %d: an unreadable entry skipped", partition)
            return
        self.entries.setdefault(partition, {})[entry.request_id] = entry
