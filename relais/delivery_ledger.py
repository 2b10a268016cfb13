"""The delivery ledger: what a sink already did, so that a retry never delivers twice.

One entry per delivery request (its ``request_id``: document unique id +
action + destination), on a compacted topic partitioned like the requests —
the shape of a Faust table, whose changelog this is. A sink writes
``SENDING`` (and waits for the broker's acknowledgement) before it calls the
destination, and ``DONE`` with the outcome after. When it meets a request
again — a redelivery after a crash, a rebalance, a timeout — the entry says
what to do (:func:`next_step`):

* no entry: send;
* ``DONE``: do not send again; report the recorded outcome and commit;
* ``SENDING``: the previous owner died between the send and its answer, so the
  destination may or may not have the document: **reconcile** (ask the
  destination) before sending.

The pure part is here; :class:`LedgerStore` restores a partition's entries
from the topic when the sink is given the partition and writes new ones.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import Enum

from aiokafka import AIOKafkaProducer

from relais.topic_reader import read_to_end


class Step(Enum):
    SEND = "send"
    RECONCILE = "reconcile"
    ALREADY_DONE = "already-done"


@dataclass(frozen=True)
class Entry:
    request_id: str
    state: str  # SENDING | DONE
    outcome: str | None = None  # DELIVERED | DUPLICATE | REJECTED, when DONE
    code: str | None = None  # the destination's answer code
    attempt: int = 1
    at_ms: int = 0

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        value = json.loads(raw)
        if not isinstance(value, dict) or value.get("state") not in {"SENDING", "DONE"}:
            raise ValueError("not a delivery ledger entry")
        return cls(**value)


def next_step(entry: Entry | None) -> Step:
    if entry is None:
        return Step.SEND
    if entry.state == "DONE":
        return Step.ALREADY_DONE
    return Step.RECONCILE


def sending(request_id: str, attempt: int) -> Entry:
    return Entry(request_id, "SENDING", attempt=attempt, at_ms=int(time.time() * 1000))


def done(request_id: str, outcome: str, code: str | None, attempt: int) -> Entry:
    return Entry(request_id, "DONE", outcome, code, attempt, int(time.time() * 1000))


class LedgerStore:
    """The ledger entries of the partitions this sink owns, kept in memory, written through."""

    def __init__(self, bootstrap: str, topic: str, producer: AIOKafkaProducer) -> None:
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
        self.entries.setdefault(partition, {})[entry.request_id] = entry

    async def ensure(self, partition: int) -> None:
        """Restore ``partition`` unless it is already known (call before reading its entries)."""
        if partition not in self.entries:
            await self.restore([partition])

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.entries.pop(partition, None)

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
        except (ValueError, TypeError):
            return  # not ours: the ledger only ever holds what write() put there
        self.entries.setdefault(partition, {})[entry.request_id] = entry
