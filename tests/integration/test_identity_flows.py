"""The identity gate on the real broker: holds, ADT releases, merges, INSi outage, crash."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from ops.demo.samples import LAB, SARAH_LOU, Patient, sample
from ops.localstack import Landing, LocalStack, read_landing, scrape
from producers.publisher import Publisher
from relais.contracts import Codec
from relais.topics import IDENTITY_ALERTS
from tests.builders import adt_message, ipp_only

LEFEVRE = Patient(
    "162094410907193", "LEFEVRE", "JEROME FRANCOIS", "19620917", "M", "44109", reliability="VALI"
)
NDIAYE = Patient(
    "188119934112354", "N'DIAYE", "MAMADOU ABDOULAYE", "19881102", "M", "99341", reliability="PROV"
)
SANTONI = Patient(
    "155022A00403316", "SANTONI", "PAUL ANTOINE", "19550215", "M", "2A004", reliability="RECUP"
)


@pytest.fixture(scope="module")
async def gate(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("idf")), prefix=f"i{uuid.uuid4().hex[:8]}"
    ) as local:
        yield local


async def eventually(check: object, timeout_s: float = 30) -> None:
    """Poll ``check`` until it holds (the held gauge is refreshed by a 2 s timer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.25)


async def landing_until(stack: LocalStack, check: object, timeout_s: float = 90) -> Landing:
    s = stack.settings
    return await read_landing(s.kafka.bootstrap, s.kafka.prefix, until=check, timeout_s=timeout_s)


async def test_held_then_released_by_an_adt_update(gate: LocalStack) -> None:
    s = gate.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=gate.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        first = (await publisher.submit_lab_result(sample(LAB, SANTONI, 1)))[0]
        second = (await publisher.submit_lab_result(sample(LAB, SANTONI, 2)))[0]
        landing = await landing_until(gate, lambda lan: {first, second} <= set(lan.held))
        assert landing.held[first]["reason_code"] == "identity-not-qualified"
        assert landing.held[second]["reason_code"] == "behind-held-documents"
        await publisher.submit_identity(adt_message(SANTONI, "A08", "QUAL"))
        landing = await landing_until(gate, lambda lan: {first, second} <= set(lan.delivered))
    assert {first, second} <= set(landing.delivered)
    order = [status["event_id"] for status in landing.delivered.values()]
    assert order.index(first) < order.index(second)  # released in the order they came


async def test_merge_rekeys_a_held_document_to_the_surviving_identity(gate: LocalStack) -> None:
    s = gate.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=gate.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        orphan = (
            await publisher.submit_lab_result(ipp_only(sample(LAB, SARAH_LOU, 3), SARAH_LOU))
        )[0]
        landing = await landing_until(gate, lambda lan: orphan in lan.held)
        assert landing.held[orphan]["reason_code"] == "no-ins"
        merge = adt_message(SARAH_LOU, "A40", "QUAL", merged_ipp="000002^^^CHU-X&000897406&N^PI")
        await publisher.submit_identity(merge)
        landing = await landing_until(gate, lambda lan: orphan in lan.delivered)
    filed = gate.sandbox.filed[landing.delivered[orphan]["document_unique_id"]]
    assert filed.patient_id.startswith(SARAH_LOU.ins)


async def test_insi_outage_then_recovery_delivers_each_held_document_once(gate: LocalStack) -> None:
    s = gate.settings
    gate.insi.unavailable = True
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=gate.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        ids = [(await publisher.submit_lab_result(sample(LAB, LEFEVRE, n)))[0] for n in (4, 5, 6)]
    landing = await landing_until(gate, lambda lan: set(ids) <= set(lan.held))
    assert landing.held[ids[0]]["reason_code"] == "insi-unavailable"
    assert not set(ids) & set(landing.delivered)
    try:
        await eventually(
            lambda: (
                scrape(gate.process("identity").metrics_port)["relais_identity_held_documents"] >= 3
            )
        )
    finally:
        gate.insi.unavailable = False  # INSi is back: the breaker lets a trial through
    landing = await landing_until(gate, lambda lan: set(ids) <= set(lan.delivered), timeout_s=120)
    assert landing.doubled() == []
    assert all(landing.delivered[i]["outcome"] == "DELIVERED" for i in ids)
    metrics = scrape(gate.process("identity").metrics_port)
    assert metrics['relais_insi_calls_total{operation="verify",outcome="unavailable"}'] >= 1
    assert metrics["relais_identity_hold_seconds_count"] >= 3


async def test_a_killed_worker_keeps_its_holds(gate: LocalStack) -> None:
    s = gate.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=gate.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        held = (await publisher.submit_lab_result(sample(LAB, NDIAYE, 7)))[0]
        await landing_until(gate, lambda lan: held in lan.held)
        # Let Faust commit the input offset (every 2.8 s): after the crash the document is
        # not replayed, so only the table's changelog can remember that it is held.
        await asyncio.sleep(4)
        await gate.restart("identity", kill=True)  # SIGKILL: no clean shutdown
        await asyncio.sleep(1)
        await publisher.submit_identity(adt_message(NDIAYE, "A08", "QUAL"))
        landing = await landing_until(gate, lambda lan: held in lan.delivered, timeout_s=120)
    assert landing.delivered[held]["outcome"] == "DELIVERED"
    # Delivered once. (A replay after the crash may repeat the *hold* record; that is
    # at-least-once bookkeeping, not a second delivery.)
    assert [kind for kind, _ in landing.doubled() if kind == "status"] == []


async def test_insi_disagreeing_blocks_and_raises_an_alert(gate: LocalStack) -> None:
    s = gate.settings
    # The sender holds DURAND "MARIE HELENE"; INSi knows "HELENE MARIE" for this INS.
    durand = Patient(
        "291045935008808", "DURAND", "MARIE HELENE", "19910405", "F", "59350", reliability="VALI"
    )
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=gate.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        blocked = (await publisher.submit_lab_result(sample(LAB, durand, 8)))[0]
        later = (await publisher.submit_lab_result(sample(LAB, durand, 9)))[0]
    landing = await landing_until(gate, lambda lan: {blocked, later} <= set(lan.held))
    assert landing.held[blocked]["reason_code"] == "insi-disagrees"
    assert landing.held[later]["reason_code"] in {"identity-blocked", "behind-held-documents"}
    consumer = AIOKafkaConsumer(
        IDENTITY_ALERTS.name(s.kafka.prefix),
        bootstrap_servers=s.kafka.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3000)
    finally:
        await consumer.stop()
    alerts = [Codec().decode(m.value)[1] for b in batches.values() for m in b]
    assert [a["reason_code"] for a in alerts if a["event_id"] == blocked] == ["insi-disagrees"]
    metrics = scrape(gate.process("identity").metrics_port)
    assert metrics['relais_identity_alerts_total{reason="insi-disagrees"}'] == 1
