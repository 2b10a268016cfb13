"""Retry a record later without blocking the others: pause its partition, resume after a backoff.

The sink loop (:mod:`relais.sink_loop`) uses it for every sink: when a record
fails transiently (destination down, timeout), :meth:`PartitionRetry.later`
pauses its partition and rewinds to it; polling goes on (heartbeats stay
healthy, other partitions flow); :meth:`resume_due`, called before each poll,
resumes partitions whose delay (exponential backoff with jitter) has passed,
and the record is tried again. :meth:`succeeded` resets a partition's backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from relais.backoff import exponential_backoff


class PartitionRetry:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        backoff: Callable[[], Iterator[float]] = exponential_backoff,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer, self.backoff, self.clock = consumer, backoff, clock
        self.retry_at: dict[TopicPartition, float] = {}
        self.backoffs: dict[TopicPartition, Iterator[float]] = {}

    def later(self, tp: TopicPartition, offset: int) -> float:
        """Pause ``tp`` and rewind it to ``offset``; return the delay before the retry."""
        delays = self.backoffs.setdefault(tp, self.backoff())
        delay = next(delays)
        self.consumer.pause(tp)
        self.consumer.seek(tp, offset)
        self.retry_at[tp] = self.clock() + delay
        return delay

    def resume_due(self) -> None:
        now = self.clock()
        assigned = self.consumer.assignment()
        for tp, due in list(self.retry_at.items()):
            if tp not in assigned:
                del self.retry_at[tp]  # revoked: the new owner retries it
            elif due <= now:
                del self.retry_at[tp]
                self.consumer.resume(tp)

    def succeeded(self, tp: TopicPartition) -> None:
        self.backoffs.pop(tp, None)

    @property
    def waiting(self) -> int:
        """Partitions paused for a retry."""
        return len(self.retry_at)
