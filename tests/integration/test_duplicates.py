"""A document sent twice is delivered once, also across an identity-worker restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from domain.document_id import cda_id
from ops.demo.samples import DOMINIQUE, LAB, SARAH_LOU, sample
from ops.localstack import Landing, LocalStack, read_landing, scrape
from producers.hl7.message import parse_message
from producers.ingest import Ingest
from producers.mllp.framing import MllpDecoder, frame
from producers.mllp.gateway import GatewayConfig, MllpGateway
from producers.publisher import Publisher


@pytest.fixture(scope="module")
async def own_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("dup")), prefix=f"d{uuid.uuid4().hex[:8]}"
    ) as local:
        yield local


def duplicates(landing: Landing) -> list[dict[str, object]]:
    return [a for a in landing.audits if a["action"] == "DUPLICATE_IGNORED"]


async def test_resent_message_and_resent_document_are_delivered_once(own_stack: LocalStack) -> None:
    s = own_stack.settings
    first = sample(LAB, DOMINIQUE, 1)
    # Same document (same CDA id), new MSH-10: a sender that re-exported it.
    reexported = first.replace(b"|DEMO115022000001|P|", b"|RESENT-000001|P|", 1)
    assert reexported != first
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=own_stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        original_id = (await publisher.submit_lab_result(first))[0]
        landing = await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            timeout_s=60,
            until=lambda lan: original_id in lan.delivered,
        )
        assert original_id in landing.delivered
        resent_id = (await publisher.submit_lab_result(first))[0]
        reexported_id = (await publisher.submit_lab_result(reexported))[0]
        other_id = (await publisher.submit_lab_result(sample(LAB, SARAH_LOU, 2)))[0]

        landing = await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            timeout_s=60,
            until=lambda lan: other_id in lan.delivered and len(duplicates(lan)) >= 2,
        )
        assert {a["event_id"] for a in duplicates(landing)} == {resent_id, reexported_id}
        assert all(a["outcome"] == f"duplicate-of:{original_id}" for a in duplicates(landing))
        assert resent_id not in landing.delivered
        assert reexported_id not in landing.delivered
        assert len(own_stack.sandbox.filed) == 2

        # The identity worker restarts: its table comes back from the changelog.
        await own_stack.restart("identity")
        after_restart_id = (await publisher.submit_lab_result(first))[0]
        landing = await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            # the restarted worker first recovers its tables from their changelogs: on a
            # loaded 2-core machine that has taken more than 90 s; a delivery ends it at once
            timeout_s=240,
            until=lambda lan: len(duplicates(lan)) >= 3 or after_restart_id in lan.delivered,
        )
    where = landing.where(after_restart_id)
    trail = [
        (a["component"], a["action"], a["outcome"])
        for a in landing.audits
        if a["event_id"] == after_restart_id
    ]
    assert after_restart_id in {a["event_id"] for a in duplicates(landing)}, (where, trail)
    assert after_restart_id not in landing.delivered
    assert len(own_stack.sandbox.filed) == 2
    assert landing.doubled() == []
    metrics = scrape(own_stack.process("identity").metrics_port)
    # the restarted worker counts the copy it just refused; records of before the restart
    # whose offsets were not yet committed are decided again (at least once) and counted too
    assert metrics['relais_stage_events_total{event="duplicate",stage="identity"}'] >= 1


async def test_sender_that_disconnects_before_its_ack_and_resends_gets_one_delivery(
    own_stack: LocalStack,
) -> None:
    s = own_stack.settings
    filed_before = len(own_stack.sandbox.filed)
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=own_stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        gateway = MllpGateway(GatewayConfig(port=0), Ingest(publisher))
        port = await gateway.start()
        try:
            raw = sample(LAB, SARAH_LOU, 7)
            # First attempt: the sender goes away right after writing the message.
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(frame(raw))
            await writer.drain()
            writer.close()
            # It never saw an ACK, so it resends the same message on a new connection.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(frame(raw))
            await writer.drain()
            decoder = MllpDecoder(1 << 20)
            acks: list[bytes] = []
            while not acks:
                acks = decoder.feed(await asyncio.wait_for(reader.read(65536), 30))
            writer.close()
            assert b"MSA|AA|" in acks[0]
        finally:
            await gateway.stop()

    unique_id = cda_id(parse_message(raw).documents[0].content)

    def settled(lan: Landing) -> bool:
        ours = [a for a in duplicates(lan) if a["document_unique_id"] == unique_id]
        return len(own_stack.sandbox.filed) > filed_before and len(ours) == 1

    landing = await read_landing(s.kafka.bootstrap, s.kafka.prefix, timeout_s=60, until=settled)
    assert settled(landing), "expected one filing and one duplicate for the resent message"
    assert len(own_stack.sandbox.filed) == filed_before + 1
    assert landing.doubled() == []
