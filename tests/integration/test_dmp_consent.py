"""The patient's word on DMP feeding (PAM FR ZFA), end to end on the real broker.

An ADT with the patient's objection (ZFA-9 IO), then a lab result for that patient: not
filed in the DMP (the sandbox never sees it), REJECTED with the reason, a dead letter,
the producer's ZAM^Z01 N naming it, and the audit event of the change. An ADT lifting the
objection (ZFA-9 INO): the next document is filed, and the refused one once the operator
replays its dead letter.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ops.demo.samples import DOMINIQUE, LAB, sample
from ops.localstack import Landing, LocalStack, read_landing
from producers.publisher import Publisher
from relais import kafka_clients
from relais.contracts import Codec
from relais.topics import BUSINESS_ACKS
from tests.builders import adt_message

ACK_RECEPTION = (
    "OBX|3|CE|ACK_RECEPTION^Accuse de reception^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("consent")), prefix=f"c{uuid.uuid4().hex[:8]}"
    ) as local:
        yield local


def adt(feeding: str, msh7: str, control_id: str) -> bytes:
    """An ADT^A08 for DOMINIQUE (qualified) whose ZFA gives the patient's word ``feeding``."""
    raw = adt_message(DOMINIQUE, "A08", "QUAL", control_id=control_id)
    raw = raw.replace(b"|20261122||ADT^", f"|{msh7}||ADT^".encode(), 1)
    return raw + f"ZFA|ACTIF|{msh7}|||||||{feeding}|{msh7}|IC|{msh7}\r".encode()


def lab(n: int) -> bytes:
    """A lab result for DOMINIQUE asking for the DMP reception ZAM."""
    return sample(LAB, DOMINIQUE, n) + ACK_RECEPTION.encode()


async def landing(stack: LocalStack, until: Any) -> Landing:
    s = stack.settings
    return await read_landing(s.kafka.bootstrap, s.kafka.prefix, until=until, timeout_s=90)


def consent_audits(land: Landing) -> list[dict[str, Any]]:
    return [a for a in land.audits if a["action"] == "CONSENT_CHANGED"]


async def business_acks(stack: LocalStack, event_id: str) -> list[dict[str, Any]]:
    """The BusinessAck records of ``event_id`` (read from the start until one shows)."""
    s, codec = stack.settings, Codec()
    consumer = kafka_clients.consumer(
        s.kafka.bootstrap,
        BUSINESS_ACKS.name(s.kafka.prefix),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    found: list[dict[str, Any]] = []
    await consumer.start()
    try:
        deadline = time.monotonic() + 60
        while not found and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for message in (m for batch in batches.values() for m in batch):
                _, ack = codec.decode(message.value, expected="BusinessAck")
                if ack["event_id"] == event_id:
                    found.append(ack)
    finally:
        await consumer.stop()
    return found


async def replay(stack: LocalStack, dead_letter_id: str) -> tuple[int, str]:
    """``relais dlq replay`` (the real command line) of one dead letter, waiting for its fate."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        *("dlq", "replay", dead_letter_id, "--wait", "60", "--by", "ops"),
        env=stack.environment(0),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode()


def err(zam: bytes) -> list[str]:
    return next(s for s in zam.decode().split("\r") if s.startswith("ERR|")).split("|")


async def test_an_objection_stops_dmp_filing_until_it_is_lifted(stack: LocalStack) -> None:
    s = stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        objection = await publisher.submit_identity(adt("IO", "20261122090000", "ZFA1"))
        land = await landing(stack, consent_audits)
        [changed] = consent_audits(land)
        assert changed["event_id"] == objection
        assert changed["outcome"].startswith("dmp-consent:dmp_status=ACTIF")
        assert "feeding=IO" in changed["outcome"]
        assert DOMINIQUE.ins not in str(changed)
        assert DOMINIQUE.family not in str(changed)

        [refused] = await publisher.submit_lab_result(lab(1))
        land = await landing(stack, lambda lan: refused in lan.delivered)
        status = land.delivered[refused]
        assert status["outcome"] == "REJECTED"
        assert status["code"] == "DMPPatientOpposition"
        [letter] = [d for d in land.dead if d["event_id"] == refused]
        assert letter["stage"] == "dmp-sink"
        [ack] = await business_acks(stack, refused)
        assert not ack["accepted"]
        fields = err(ack["message"])
        assert fields[5] == "DMPPatientOpposition^Opposition du patient^DMPERRORCODE"
        assert DOMINIQUE.family.encode() not in ack["message"]
        assert not [u for u in stack.sandbox.submissions if u.endswith(".115022000001")]

        lifted = await publisher.submit_identity(adt("INO", "20261123090000", "ZFA2"))
        land = await landing(stack, lambda lan: len(consent_audits(lan)) == 2)
        assert consent_audits(land)[-1]["event_id"] == lifted
        assert "feeding=INO" in consent_audits(land)[-1]["outcome"]

        [filed] = await publisher.submit_lab_result(lab(2))
        land = await landing(stack, lambda lan: filed in lan.delivered)
    assert land.delivered[filed]["outcome"] == "DELIVERED"
    [ack] = await business_acks(stack, filed)
    assert ack["accepted"]
    assert [u for u in stack.sandbox.submissions if u.endswith(".115022000002")]

    # the objection lifted, the operator replays the refused document: it is filed
    code, out = await replay(stack, letter["dead_letter_id"])
    assert code == 0, out
    assert [u for u in stack.sandbox.submissions if u.endswith(".115022000001")]
