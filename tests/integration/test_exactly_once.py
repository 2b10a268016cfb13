"""The DMP never sees a document filed twice: outages, and a sink killed mid-delivery."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from click.testing import CliRunner

from ops.cli.main import main
from ops.demo.samples import DOMINIQUE, LAB, SARAH_LOU, sample
from ops.localstack import LocalStack, read_landing, scrape
from producers.publisher import Publisher
from relais.contracts import Codec
from relais.topics import BUSINESS_ACKS


@pytest.fixture(scope="module")
async def once_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("once")), prefix=f"o{uuid.uuid4().hex[:8]}"
    ) as local:
        yield local


async def _publish(stack: LocalStack, raw: bytes) -> str:
    s = stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
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
        s.kafka.bootstrap,
        s.kafka.prefix,
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
        s.kafka.bootstrap,
        s.kafka.prefix,
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


async def test_the_producer_gets_a_zam_z01_when_it_asked_for_the_dmp_reception(
    once_stack: LocalStack,
) -> None:
    s = once_stack.settings
    asked = b"OBX|3|CE|ACK_RECEPTION^Accuse de reception^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
    raw = sample(LAB, SARAH_LOU, 33) + asked
    event_id = await _publish(once_stack, raw)
    consumer = AIOKafkaConsumer(
        BUSINESS_ACKS.name(s.kafka.prefix),
        bootstrap_servers=s.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    acks: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 60
        while not any(a["event_id"] == event_id for a in acks) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            acks += [Codec().decode(m.value)[1] for b in batches.values() for m in b]
    finally:
        await consumer.stop()
    [ack] = [a for a in acks if a["event_id"] == event_id]
    assert (ack["kind"], ack["accepted"], ack["facility"]) == ("Z01", True, "RELAIS-DEMO")
    message = parse_message_segments(bytes(ack["message"]))  # type: ignore[arg-type]
    assert message["MSH"][8] == "ZAM^Z01^ZAM_Z01"
    assert message["OBX"][2].startswith("ACK_RECEPTION_DMP^")
    assert message["OBX"][3] == ack["original_control_id"] == "DEMO115022000033"
    assert message["OBX"][4].startswith("Y^")
    # documents that did not ask get none
    assert all(a["original_control_id"] != "DEMO115022000031" for a in acks)


def parse_message_segments(raw: bytes) -> dict[str, list[str]]:
    """Fields of the first segment of each kind (MSH-1 is the separator)."""
    found: dict[str, list[str]] = {}
    for line in raw.decode().split("\r"):
        if line:
            fields = line.split("|")
            found.setdefault(fields[0], fields[1:] if fields[0] != "MSH" else ["|", *fields[1:]])
    return found


async def test_a_document_the_dmp_refused_is_filed_once_when_replayed_after_the_fix(
    once_stack: LocalStack,
) -> None:
    sandbox, s = once_stack.sandbox, once_stack.settings
    before = set(sandbox.filed)
    sandbox.refuse_with = "XDSUnknownPatientId"  # e.g. the patient's DMP was not open yet
    try:
        event_id = await _publish(once_stack, sample(LAB, SARAH_LOU, 34))
        landing = await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            timeout_s=60,
            until=lambda lan: event_id in lan.delivered,
        )
    finally:
        sandbox.refuse_with = None
    refused = landing.delivered[event_id]
    assert (refused["outcome"], refused["code"]) == ("REJECTED", "XDSUnknownPatientId")
    assert set(sandbox.filed) == before
    env = {
        "RELAIS_BOOTSTRAP_SERVERS": s.kafka.bootstrap,
        "RELAIS_TOPIC_PREFIX": s.kafka.prefix,
        "RELAIS_KEYRING_FILE": str(s.keys.file),
        # the stack's document store, and so its patients' key store (the original is sealed
        # under the patient's data key)
        "RELAIS_DATA_DIR": str(s.process.data_dir),
    }
    args = ["dlq", "replay", event_id, "--stage", "dmp-sink", "--wait", "60"]
    result = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)
    assert result.exit_code == 0, result.output
    [unique_id] = set(sandbox.filed) - before
    assert sandbox.submissions[unique_id] == 1
    # replayed again (--again): the ledger now says DELIVERED, nothing is filed twice
    again = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--again"], env=env)
    assert again.exit_code == 0, again.output
    assert sandbox.submissions[unique_id] == 1
