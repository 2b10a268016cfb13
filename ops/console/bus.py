"""The console's side of the bus: its audit events, one dead letter read where the index
says it lies, and the dlq and identity tools it acts through (thin).

Every action and reveal of the console is an ``AuditEvent`` of component ``console``
with the signed-in operator's name (:func:`console_audit`); a replay is audited by
:class:`ops.dlq.shell.DlqBus` itself (component ``dlq``, action ``REPLAYED``, the
memory that refuses a second replay), with the same operator field.

A dead letter is read where the index says it lies and trusted only if it is the letter
the index names (:meth:`ConsoleBus.view_of`): a stale index is refused, nothing audited
nor sent.

A document's ``DocumentSubmitted`` record is found where its producer put it
(:meth:`ConsoleBus.submitted`): the partition of its patient key under the producer's
default partitioner, from a few seconds before it was received, a bounded read.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from ops.console.errors import Refused
from ops.dlq.letters import LetterView
from ops.dlq.shell import DlqBus, letter_view
from ops.identity.bus import IdentityBus
from ops.index.model import LetterRow
from relais import kafka_clients
from relais.audit import audit_event
from relais.contracts import Codec, ContractError, Record
from relais.kafka_clients import Target
from relais.keyring import Keyring
from relais.topics import AUDIT, DEADLETTER, SUBMITTED

COMPONENT = "console"
STALE = "the index is stale: relais index rebuild (RELAIS_INDEX_URL)"


def console_audit(
    *,
    operator: str,
    event_id: str,
    outcome: str,
    detail: str,
    now: datetime,
    document_unique_id: str | None = None,
) -> Record:
    """An operator's action or reveal in the console (each its own audit id: two reveals of
    the same document are two events)."""
    record = audit_event(
        event_id=event_id,
        component=COMPONENT,
        action="OTHER",
        outcome=outcome,
        now=now,
        document_unique_id=document_unique_id,
        detail=detail,
        operator=operator,
    )
    return {**record, "audit_id": str(uuid.uuid4())}


@dataclass
class ConsoleBus:
    """The broker the console writes to and reads dead letters' originals from."""

    bootstrap: Target
    prefix: str
    keyring: Keyring | None
    codec: Codec = field(default_factory=Codec)

    @property
    def dlq(self) -> DlqBus:
        return DlqBus(self.bootstrap, self.prefix, self.keyring, self.codec)

    @property
    def identity(self) -> IdentityBus:
        return IdentityBus(self.bootstrap, self.prefix, self.codec)

    async def audit(self, record: Record) -> None:
        """Write one audit event, acknowledged by every in-sync replica (raises if not)."""
        producer = kafka_clients.producer(self.bootstrap, acks="all")
        try:  # started inside: a broker that is not there leaks no client
            await producer.start()
            value = self.codec.encode("AuditEvent", record)
            await producer.send_and_wait(
                AUDIT.name(self.prefix), value, key=record["event_id"].encode()
            )
        finally:
            await producer.stop()

    async def letter(self, row: LetterRow, *, timeout_s: float = 10.0) -> LetterView:
        """The dead letter at the index's place, its original opened with the keyring;
        refused (:class:`Refused`) when what lies there is not the letter the index says."""
        value, key = await self.record_at(row, timeout_s=timeout_s)
        return self.view_of(row, value, key)

    async def record_at(self, row: LetterRow, *, timeout_s: float) -> tuple[bytes, bytes | None]:
        """The raw record at the index's partition and offset of the dead-letter topic."""
        tp = TopicPartition(DEADLETTER.name(self.prefix), row.topic_partition)
        consumer = kafka_clients.consumer(
            self.bootstrap, group_id=None, enable_auto_commit=False, fetch_max_bytes=64 << 20
        )
        try:  # started inside: a broker that is not there leaks no client
            await consumer.start()
            consumer.assign([tp])
            consumer.seek(tp, row.topic_offset)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                batches = await consumer.getmany(tp, timeout_ms=500)
                for message in batches.get(tp, []):
                    if message.offset == row.topic_offset:
                        return message.value or b"", message.key
        finally:
            await consumer.stop()
        raise Refused(
            f"dead letter {row.view.dead_letter_id} is no longer at {tp.topic} partition "
            f"{tp.partition} offset {row.topic_offset} (retention?): {STALE}"
        )

    def view_of(self, row: LetterRow, value: bytes, key: bytes | None) -> LetterView:
        """The letter of the record, if it is the one the index says lies there."""
        try:
            name, record = self.codec.decode(value)
        except ContractError:  # not a record of ours at all
            raise Refused(STALE) from None
        if name != "DeadLetter" or record.get("dead_letter_id") != row.view.dead_letter_id:
            raise Refused(STALE)
        return letter_view(self.codec, self.keyring, record, key)

    async def submitted(
        self, patient_key: str, event_id: str, since_ms: int, *, limit: int, timeout_s: float
    ) -> Record | None:
        """The ``DocumentSubmitted`` record of ``event_id``: read from ``since_ms`` on the
        partition the producer's default partitioner gives its patient key (the topic's own
        partition count), ``limit`` records or ``timeout_s`` at most (None: not found)."""
        topic, key = SUBMITTED.name(self.prefix), patient_key.encode()
        consumer = kafka_clients.consumer(
            self.bootstrap, group_id=None, enable_auto_commit=False, fetch_max_bytes=64 << 20
        )
        try:  # started inside: a broker that is not there leaks no client
            await consumer.start()
            await consumer.topics()  # the metadata: the topic's partitions, as the producer's
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
            if not partitions:
                return None
            tp = TopicPartition(topic, DefaultPartitioner()(key, partitions, partitions))
            consumer.assign([tp])
            found = (await consumer.offsets_for_times({tp: since_ms}))[tp]
            if found is None:  # nothing written since: the document is not there
                return None
            consumer.seek(tp, found.offset)
            return await self._find(consumer, tp, event_id, limit, timeout_s)
        finally:
            await consumer.stop()

    async def _find(
        self, consumer: Any, tp: TopicPartition, event_id: str, limit: int, timeout_s: float
    ) -> Record | None:
        deadline, read = time.monotonic() + timeout_s, 0
        while read < limit and time.monotonic() < deadline:
            batches = await consumer.getmany(tp, timeout_ms=500, max_records=500)
            messages = batches.get(tp, [])
            end = consumer.highwater(tp)
            if not messages and end is not None and await consumer.position(tp) >= end:
                return None  # read to the end: not there
            for message in messages[: limit - read]:
                if (record := self._submitted(message.value, event_id)) is not None:
                    return record
            read += len(messages)
        return None

    def _submitted(self, value: bytes | None, event_id: str) -> Record | None:
        try:
            name, record = self.codec.decode(value)
        except ContractError:  # not a record of ours: not the one
            return None
        return (
            record if name == "DocumentSubmitted" and record.get("event_id") == event_id else None
        )
