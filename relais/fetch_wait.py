"""How long a consumer's Fetch may wait at the broker: the latency of every hop.

A Kafka Fetch carries ``fetch.max.wait.ms`` and ``fetch.min.bytes``. Apache Kafka
answers as soon as ``fetch.min.bytes`` (1) are there, so the wait only bounds an
idle Fetch and costs no latency. tansu 0.6.0 (the local broker) does not: it
sleeps about half of ``max_wait`` on *every* Fetch, records or not, before it
answers. A record produced during that sleep waits for the next Fetch, so each
hop costs up to ``max_wait / 2``: aiokafka's default (500 ms) gave sink hops up
to 250 ms, and Faust's hard-coded 1,500 ms gave each stage up to 750 ms, most of
the 1.6 s end-to-end p50 at 10 documents/s (docs/performance.md, "Latency: where
the time went").

:data:`FETCH_MAX_WAIT_MS` is what every stage and sink consumer asks for, on any
broker: on tansu a hop then waits at most ~25 ms; on Apache Kafka an idle consumer
sends about 20 empty Fetches a second, which a broker does not notice. Lower costs
the local broker CPU for nothing (measured: 6 idle consumers of 12 partitions each
took 11 % of a core at 50 ms, 22 % at 20 ms, 1.8 % at 500 ms).
"""

from __future__ import annotations

from typing import Any

#: fetch.max.wait.ms of every stage (Faust) and sink (aiokafka) consumer
FETCH_MAX_WAIT_MS = 50

_installed: set[int] = set()


def install_faust(max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make Faust's worker consumer ask for ``max_wait_ms`` instead of its fixed 1,500 ms.

    faust-streaming 0.15 passes ``fetch_max_wait_ms=1500`` to aiokafka with no setting to
    change it; the consumer it builds is given ``max_wait_ms`` before it starts (aiokafka
    hands the value to its fetcher in ``start()``). Idempotent.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread  # noqa: PLC0415

    if max_wait_ms in _installed:
        return
    _installed.clear()
    _installed.add(max_wait_ms)
    original = getattr(
        AIOKafkaConsumerThread._create_worker_consumer,
        "__wrapped__",
        AIOKafkaConsumerThread._create_worker_consumer,
    )

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    _create_worker_consumer.__wrapped__ = original  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
