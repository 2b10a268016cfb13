"""The patients' current word on DMP feeding, as the DMP sink reads it when it files (shell).

The identity stage publishes each patient's DMP status and word on feeding it (PAM FR
ZFA) whenever it changes, on the compacted topic ``identity.consent`` keyed by the
patient's pseudonymous key (:func:`streams.identity.consent.consented`). The stamp a
delivery request carries is the word as it was when the identity stage forwarded the
document: a document that waited (a DMP outage, a dead letter replayed later, a document
processed before its ADT) must be checked against the word as it is *now*.

:class:`ConsentTable` follows that topic: before each filing the sink asks
:meth:`~ConsentTable.latest`, which first reads the patient's partition of
``identity.consent`` up to its current end (one long-lived consumer, no group; the
partition is the key's, as the producer's partitioner places it), then answers the
patient's latest word, or None when the topic has nothing for the patient (a word kept
before the topic existed: the stamp decides, :func:`consumers.dmp.consent.consent_refusal`).
The table keeps only each patient's current word (a few codes and dates, no identity).
A broker that does not answer is a transient failure: the request is tried again later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from consumers.dmp.submission import DmpUnavailable
from relais import kafka_clients
from relais.contracts import Codec, ContractError
from relais.kafka_clients import Target
from relais.tansu_quirks import fetched_end_offsets
from relais.topics import IDENTITY_CONSENT

log = logging.getLogger(__name__)
Word = Mapping[str, Any]
#: the code of the transient failure when the topic cannot be read (retried, never filed)
UNREADABLE = "consent-table-unavailable"


class ConsentTable:
    """Patient key -> latest ``DmpConsent`` record, for the partitions read so far."""

    def __init__(self, bootstrap: Target, prefix: str, codec: Codec, timeout_s: float = 30.0):
        self.bootstrap, self.codec, self.timeout_s = bootstrap, codec, timeout_s
        self.topic = IDENTITY_CONSENT.name(prefix)
        self.words: dict[str, Word | None] = {}
        self.positions: dict[int, int] = {}  # partition -> next offset to read
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()  # one reader: the sink files partitions concurrently
        self._partition = DefaultPartitioner()

    async def latest(self, patient_key: str) -> Word | None:
        """The patient's current word (read up to now), None when the topic has none."""
        try:
            async with self._lock:
                await asyncio.wait_for(self._catch_up(patient_key), self.timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:
            why = f"the patients' DMP consent ({self.topic}) cannot be read: {type(exc).__name__}"
            raise DmpUnavailable(why, code=UNREADABLE) from exc
        return self.words.get(patient_key)

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _catch_up(self, patient_key: str) -> None:
        consumer = await self._started()
        partitions = sorted(consumer.partitions_for_topic(self.topic) or ())
        if not partitions:
            await consumer.topics()  # fresh metadata: the topic may be new
            partitions = sorted(consumer.partitions_for_topic(self.topic) or ())
        if not partitions:
            raise KafkaError(f"topic {self.topic} not found")
        key = patient_key.encode()
        tp = TopicPartition(self.topic, self._partition(key, partitions, partitions))
        [end] = (await fetched_end_offsets(consumer, [tp])).values()
        consumer.assign([tp])
        consumer.seek(tp, self.positions.get(tp.partition, 0))
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for message in batch.get(tp, ()):
                self._apply(message.key, message.value)
        self.positions[tp.partition] = await consumer.position(tp)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:  # a tombstone (an erased patient): nothing kept
            self.words.pop(key.decode(), None)
            return
        try:
            _, record = self.codec.decode(value, expected="PatientConsent")
        except ContractError as exc:
            log.warning("%s: a record skipped: %s", self.topic, exc)
            return
        self.words[record["patient_key"]] = record["consent"]

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = kafka_clients.consumer(
                self.bootstrap, group_id=None, enable_auto_commit=False
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer
