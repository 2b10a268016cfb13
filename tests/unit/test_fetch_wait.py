"""Every stage (Faust) and sink (aiokafka) consumer asks for the short fetch wait.

tansu sleeps about half of fetch.max.wait.ms on every Fetch, so this wait is each hop's
latency on the local broker (relais.fetch_wait; docs/performance.md, "Latency").
"""

from __future__ import annotations

from typing import Any

import faust

from relais import fetch_wait
from relais.fetch_wait import FETCH_MAX_WAIT_MS
from relais.sink_loop import sink_consumer


async def test_a_sink_consumer_waits_at_most_the_short_fetch_wait() -> None:
    consumer = sink_consumer("127.0.0.1:1", "g", session_timeout_s=6.0)
    try:
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS <= 100
    finally:
        await consumer.stop()


async def test_fausts_worker_consumer_gets_the_short_fetch_wait_not_its_1500_ms() -> None:
    fetch_wait.install_faust()
    fetch_wait.install_faust()  # idempotent: wrapped once
    app = faust.App("t-fetch-wait", broker="kafka://127.0.0.1:1", web_enabled=False)
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    finally:
        await consumer.stop()
