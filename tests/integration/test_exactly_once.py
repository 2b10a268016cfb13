"""The DMP never sees a document filed twice: outages, and a sink killed mid-delivery."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from producers.publisher import Publisher
from relais.demo.samples import DOMINIQUE, LAB, SARAH_LOU, sample
from relais.localstack import LocalStack, read_landing, scrape


@pytest.fixture(scope="module")
async def once_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("once")), prefix=f"o{uuid.uuid4().hex[:8]}"
    ) as local:
        yield local


async def _publish(stack: LocalStack, raw: bytes) -> str:
    s = stack.settings
    async with Publisher(
        bootstrap=s.bootstrap_servers, keyring=stack.keyring, topic_prefix=s.topic_prefix
    ) as publisher:
        return (await publisher.submit_lab_result(raw))[0]


async def _until(condition: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.1)


def _sink_metric(stack: LocalStack, name: str) -> float:
    return scrape(stack.process("sink-dmp").metrics_port).get(name, 0.0)


RETRIES = 'relais_delivery_retries_total{destination="DMP"}'
OLDEST = 'relais_delivery_oldest_pending_age_seconds{destination="DMP"}'


async def test_a_dmp_outage_holds_the_document_and_delivers_it_once_after(
    once_stack: LocalStack,
) -> None:
    sandbox, s = once_stack.sandbox, once_stack.settings
    before = set(sandbox.filed)
    sandbox.unavailable = True
    try:
        event_id = await _publish(once_stack, sample(LAB, SARAH_LOU, 31))
        await _until(lambda: _sink_metric(once_stack, RETRIES) >= 2, 60)
        assert set(sandbox.filed) == before
        assert _sink_metric(once_stack, OLDEST) > 0  # the operator sees a stuck delivery
    finally:
        sandbox.unavailable = False
    landing = await read_landing(
        s.bootstrap_servers,
        s.topic_prefix,
        timeout_s=90,
        until=lambda lan: event_id in lan.delivered,
    )
    status = landing.delivered[event_id]
    assert status["outcome"] == "DELIVERED"
    assert status["attempt"] >= 2
    [unique_id] = set(sandbox.filed) - before
    assert sandbox.submissions[unique_id] == 1
    assert landing.doubled() == []
    await _until(lambda: _sink_metric(once_stack, OLDEST) == 0, 10)


async def test_a_sink_killed_between_send_and_commit_does_not_file_twice(
    once_stack: LocalStack,
) -> None:
    sandbox, s = once_stack.sandbox, once_stack.settings
    before = set(sandbox.filed)
    queries = sandbox.queries
    sandbox.hold_answers = asyncio.Event()  # the DMP files, then keeps its answer
    try:
        event_id = await _publish(once_stack, sample(LAB, DOMINIQUE, 32))
        await _until(lambda: set(sandbox.filed) - before, 60)
        # filed at the DMP, unanswered, uncommitted: the sink crashes now
        restarted = asyncio.create_task(once_stack.restart("sink-dmp", kill=True))
        await asyncio.sleep(0.5)
        sandbox.hold_answers.set()
        await restarted
    finally:
        sandbox.hold_answers.set()
        sandbox.hold_answers = None
    landing = await read_landing(
        s.bootstrap_servers,
        s.topic_prefix,
        timeout_s=90,
        until=lambda lan: event_id in lan.delivered,
    )
    [unique_id] = set(sandbox.filed) - before
    status = landing.delivered[event_id]
    assert status["outcome"] == "DELIVERED"
    assert "reconciled" in (status["detail"] or "")
    assert sandbox.submissions[unique_id] == 1  # never sent again
    assert sandbox.queries > queries  # the new sink asked the registry first
    assert landing.doubled() == []
