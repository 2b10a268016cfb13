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
The table keeps only what of each patient's word may refuse a filing
(:class:`~consumers.dmp.consent.KeptWord`: a few codes, no identity; one shared object for
every patient whose word refuses nothing). A partition is read from its beginning the first
time (``earliest``: a position the log no longer holds goes back to its start, never
silently to its end), then from where the last read stopped, saved after each batch: a
read cut short by its time limit goes on from there the next time. A broker that does not
answer, or a read that does not finish in time, is a transient failure
(:class:`ConsentUnreadable`, its own code): the request is tried again later, and the
sink does not take it for a DMP outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from consumers.dmp.consent import KeptWord, kept_word
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


class ConsentUnreadable(DmpUnavailable):
    """The patients' word could not be read in time: retried, never filed; not the DMP's
    outage (the sink's readiness and its visibility updates are not paused for it)."""


class ConsentTable:
    """Patient key -> what may refuse a filing of the patient's latest word, for the
    partitions read so far.

    ``timeout_s`` bounds one read (the next goes on from where it stopped), ``lock_wait_s``
    how long a filing waits for another partition's read (one reader) before it is retried.
    """

    def __init__(
        self,
        bootstrap: Target,
        prefix: str,
        codec: Codec,
        timeout_s: float = 10.0,
        lock_wait_s: float = 5.0,
    ):
        self.bootstrap, self.codec = bootstrap, codec
        self.timeout_s, self.lock_wait_s = timeout_s, lock_wait_s
        self.topic = IDENTITY_CONSENT.name(prefix)
        self.words: dict[str, KeptWord] = {}
        self.positions: dict[int, int] = {}  # partition -> next offset to read
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()  # one reader: the sink files partitions concurrently
        self._partition = DefaultPartitioner()

    async def latest(self, patient_key: str) -> Word | None:
        """The patient's current word (read up to now), None when the topic has none."""
        try:
            await asyncio.wait_for(self._lock.acquire(), self.lock_wait_s)
        except TimeoutError as exc:
            raise self._unreadable("another partition's read holds it") from exc
        try:
            await self._read_in_time(patient_key)
        except (KafkaError, TimeoutError, OSError) as exc:
            self._drop_consumer()  # a client that failed (a broker restart) starts afresh
            raise self._unreadable(type(exc).__name__) from exc
        finally:
            self._lock.release()
        word = self.words.get(patient_key)
        return word.as_record() if word is not None else None

    async def _read_in_time(self, patient_key: str) -> None:
        """The patient's partition read up to its end, or TimeoutError after ``timeout_s``.

        The read is not awaited once late: a client call wedged by a broker restart may
        not yield to its cancellation, and awaiting it would hold the sink's whole poll
        (every partition waits for this one). Cancelled and left behind, with its consumer,
        which the next read replaces."""
        read = asyncio.ensure_future(self._catch_up(patient_key))
        done, _ = await asyncio.wait({read}, timeout=self.timeout_s)
        if not done:
            read.cancel()
            read.add_done_callback(_retrieved)
            raise TimeoutError(f"no answer in {self.timeout_s:g} s")
        read.result()

    def _drop_consumer(self) -> None:
        """Forget the consumer (stopped in the background, never awaited here): the next
        read starts a fresh one, and goes on from the positions saved so far."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            stopping = asyncio.ensure_future(consumer.stop())
            stopping.add_done_callback(_retrieved)

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def _unreadable(self, why: str) -> ConsentUnreadable:
        text = f"the patients' DMP consent ({self.topic}) cannot be read: {why}"
        return ConsentUnreadable(text, code=UNREADABLE)

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
        if tp.partition in self.positions:
            consumer.seek(tp, self.positions[tp.partition])
        else:  # first read: from the log's start, wherever it is now
            await consumer.seek_to_beginning(tp)
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for message in batch.get(tp, ()):
                self._apply(message.key, message.value)
            # saved as it goes: a read cut short (its time limit) goes on from here
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
        word = kept_word(record["consent"])
        if word is None:
            self.words.pop(record["patient_key"], None)
        else:
            self.words[record["patient_key"]] = word

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = kafka_clients.consumer(
                self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a position gone from the log: its start
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Collect a left-behind task's outcome, so that asyncio does not report it unretrieved."""
    if not task.cancelled():
        task.exception()
