"""The notification ledgers of the partitions this worker owns, read back from the bus.

When a partition is assigned, its ledger partition (``notify.ledger.v1``, same number)
is read back from the start — a compacted topic: the latest entry per request, and the
DMP outcomes no request had come for yet (:mod:`~consumers.notify.dmp_gate`) — into a
:class:`~consumers.notify.schedule.Ledger`; when it is revoked, the ledger is dropped.
The sink loop runs both under the sink's lock, so the message being sent and its ledger
entry are finished first and the next owner reads a ledger that says what was sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import TopicPartition

from consumers.notify.dmp_gate import DmpOutcome, is_gate_key
from consumers.notify.errors import LedgerError
from consumers.notify.ledger_entry import Entry
from consumers.notify.schedule import Ledger
from relais.kafka_clients import Target
from relais.metrics import StageMetrics
from relais.topic_reader import read_to_end

log = logging.getLogger(__name__)


class PartitionLedgers:
    """Partition number -> its :class:`Ledger`, for the partitions this worker owns."""

    def __init__(self, bootstrap: Target, topic: str, stage_metrics: StageMetrics) -> None:
        self.bootstrap, self.topic, self.stage_metrics = bootstrap, topic, stage_metrics
        self.by_partition: dict[int, Ledger] = {}

    def get(self, partition: int) -> Ledger | None:
        return self.by_partition.get(partition)

    def items(self) -> list[tuple[int, Ledger]]:
        return list(self.by_partition.items())

    def values(self) -> Iterable[Ledger]:
        return self.by_partition.values()

    async def of(self, partition: int) -> Ledger:
        """The partition's ledger; read back now if its records came before the listener ran."""
        ledger = self.by_partition.get(partition)
        if ledger is None:
            ledger = self.by_partition[partition] = await self.recover(partition)
        return ledger

    async def assigned(self, partitions: frozenset[TopicPartition]) -> None:
        for tp in sorted(partitions):
            if tp.partition not in self.by_partition:
                self.by_partition[tp.partition] = await self.recover(tp.partition)

    async def revoked(self, partitions: frozenset[TopicPartition]) -> None:
        for tp in partitions:
            self.by_partition.pop(tp.partition, None)

    async def recover(self, partition: int, timeout_s: float = 60.0) -> Ledger:
        """Read one ledger partition back from its start to its end."""
        records = await read_to_end(self.bootstrap, [(self.topic, partition)], timeout_s=timeout_s)
        ledger = Ledger()
        for message in records:
            if message.value is not None:
                self._restore(ledger, message)
        log.info("ledger partition %d read back: %d entries", partition, len(ledger.entries))
        return ledger

    def _restore(self, ledger: Ledger, message: Any) -> None:
        try:
            if is_gate_key(message.key):
                ledger.restore_outcome(DmpOutcome.from_bytes(message.value))
            else:
                ledger.restore(Entry.from_bytes(message.value))
        except LedgerError as exc:  # never stop on it: count it and say where it is
            self.stage_metrics.failed("notify-ledger-unreadable", dead_lettered=False)
            log.error(
                "%s[%d]@%d skipped: %s", message.topic, message.partition, message.offset, exc
            )
