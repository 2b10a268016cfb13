"""The DMP's error codes decide, through the real sink: a busy DMP is retried until it takes
the document; a code nobody classified is refused with the code quoted.

Real broker, the pipeline workers and the DMP sink as processes, the DMP sandbox over mutual
TLS in this loop (its ``refuse_with`` lever answers every ITI-41 with an XDS error code).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ops.demo.samples import DOMINIQUE, LAB, sample
from ops.localstack import Landing, LocalStack, read_landing
from producers.publisher import Publisher
from tests.shared_data import shared


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("errors")),
        prefix=f"e{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
    ) as local:
        yield local


async def submit(stack: LocalStack, raw: bytes) -> str:
    s = stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        [event_id] = await publisher.submit_lab_result(raw)
    return event_id


def final(landing: Landing, event_id: str) -> dict[str, Any] | None:
    statuses = landing.statuses.get((event_id, "DMP"), [])
    done = [s for s in statuses if s["outcome"] in {"DELIVERED", "DUPLICATE", "REJECTED"}]
    return done[-1] if done else None


async def landed(stack: LocalStack, until: Callable[[Landing], bool], timeout_s: float) -> Landing:
    s = stack.settings
    return await read_landing(s.kafka.bootstrap, s.kafka.prefix, timeout_s=timeout_s, until=until)


async def test_a_busy_dmp_is_retried_until_it_takes_the_document(stack: LocalStack) -> None:
    stack.sandbox.refuse_with = "XDSRepositoryBusy"  # ITI TF-3: cannot take it now
    try:
        event_id = await submit(stack, sample(LAB, DOMINIQUE, 51))
        deadline = asyncio.get_running_loop().time() + 60
        while stack.sandbox.rejections < 2:  # refused, then tried again: not dead-lettered
            assert asyncio.get_running_loop().time() < deadline, "the sink never retried"
            await asyncio.sleep(0.2)
        early = await landed(stack, lambda lan: final(lan, event_id) is not None, timeout_s=2)
        assert final(early, event_id) is None
        assert not [d for d in early.dead if d["event_id"] == event_id]
    finally:
        stack.sandbox.refuse_with = None
    landing = await landed(stack, lambda lan: final(lan, event_id) is not None, timeout_s=90)
    status = final(landing, event_id)
    assert status is not None
    assert status["outcome"] == "DELIVERED"
    assert status["attempt"] >= 2


async def test_an_unknown_dmp_code_is_refused_with_the_code_quoted(stack: LocalStack) -> None:
    stack.sandbox.refuse_with = "DMPSomethingNobodyListed"
    try:
        event_id = await submit(stack, sample(LAB, DOMINIQUE, 52))
        landing = await landed(stack, lambda lan: final(lan, event_id) is not None, timeout_s=90)
    finally:
        stack.sandbox.refuse_with = None
    status = final(landing, event_id)
    assert status is not None
    assert (status["outcome"], status["code"]) == ("REJECTED", "DMPSomethingNobodyListed")
    [letter] = [d for d in landing.dead if d["event_id"] == event_id]
    assert letter["reason_code"] == "dmp-rejected"
    assert "DMPSomethingNobodyListed" in letter["reason"]
    assert "not in Relais's table" in letter["reason"]
