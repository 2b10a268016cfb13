"""The patient's word on DMP feeding (PAM FR ZFA), end to end on the real broker.

An ADT with the patient's objection (ZFA-9 IO), then a lab result for that patient: not
filed in the DMP (the sandbox never sees it), REJECTED with the reason, a dead letter,
the producer's ZAM^Z01 N naming it, and the audit event of the change; replayed before
the objection is lifted, refused again. An ADT lifting the objection (ZFA-9 INO): the
next document is filed, and the refused one once the operator replays its dead letter.
A document stamped before an objection but filed after it (the DMP was down) is refused:
the sink checks the patient's word as it is when it files (identity.consent).
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

from ops.demo.samples import DOMINIQUE, LAB, SARAH_LOU, sample
from ops.localstack import Landing, LocalStack, read_landing
from producers.publisher import Publisher
from relais import kafka_clients
from relais.contracts import Codec
from relais.topics import BUSINESS_ACKS
from tests.builders import IPP, adt_message, ipp_only

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

        # replayed before the objection is lifted: checked like any filing, refused again
        code, out = await replay(stack, letter["dead_letter_id"])
        assert code != 0, out
        assert "rejected" in out, out
        land = await landing(stack, lambda lan: len(letters(lan, refused)) == 2)
        assert not [u for u in stack.sandbox.submissions if u.endswith(".115022000001")]
        letter = letters(land, refused)[-1]

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

    # the objection lifted, the operator replays the refused document: the patient's word
    # now (identity.consent) lets it be filed, though its stamp still says IO
    code, out = await replay(stack, letter["dead_letter_id"])
    assert code == 0, out
    assert [u for u in stack.sandbox.submissions if u.endswith(".115022000001")]


async def test_a_document_stamped_before_an_objection_and_filed_after_it_is_refused(
    stack: LocalStack,
) -> None:
    """The DMP is down: the document waits in the sink's retries while the patient objects."""
    s = stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        stack.sandbox.unavailable = True
        try:
            await publisher.submit_identity(adt("INO", "20261124090000", "ZFA3"))
            [waiting] = await publisher.submit_lab_result(lab(3))
            await landing(stack, lambda lan: decided(lan, waiting))  # stamped: not objected
            objection = await publisher.submit_identity(adt("IO", "20261125090000", "ZFA4"))
            await landing(
                stack, lambda lan: any(a["event_id"] == objection for a in consent_audits(lan))
            )
        finally:
            stack.sandbox.unavailable = False
        land = await landing(stack, lambda lan: waiting in lan.delivered)
    assert land.delivered[waiting]["outcome"] == "REJECTED"
    assert land.delivered[waiting]["code"] == "DMPPatientOpposition"
    assert not [u for u in stack.sandbox.submissions if u.endswith(".115022000003")]


async def test_an_objection_given_under_the_ipp_stays_when_the_ins_arrives(
    stack: LocalStack,
) -> None:
    """A01 with only the IPP and IO, then A08 with the INS and the IPP (no ZFA): the IPP's
    state is re-keyed to the INS patient, and its objection with it."""
    s = stack.settings
    a01 = ipp_only(adt_message(SARAH_LOU, "A01", "QUAL", control_id="IPP1"), SARAH_LOU)
    a08 = adt_message(SARAH_LOU, "A08", "QUAL", control_id="INS1", ipp=IPP)
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        before = len(consent_audits(await landing(stack, lambda lan: True)))
        await publisher.submit_identity(a01 + b"ZFA|ACTIF||||||||IO\r")
        await landing(stack, lambda lan: len(consent_audits(lan)) == before + 1)
        await publisher.submit_identity(a08)
        land = await landing(stack, lambda lan: len(consent_audits(lan)) == before + 2)
        assert "feeding=IO" in consent_audits(land)[-1]["outcome"]  # handed to the INS patient
        [document] = await publisher.submit_lab_result(
            sample(LAB, SARAH_LOU, 11) + ACK_RECEPTION.encode()
        )
        land = await landing(stack, lambda lan: document in lan.delivered)
    assert land.delivered[document]["outcome"] == "REJECTED"
    assert land.delivered[document]["code"] == "DMPPatientOpposition"
    assert not [u for u in stack.sandbox.submissions if u.endswith(".115022000011")]


async def test_a_word_given_under_the_old_ipp_after_the_merge_is_the_survivors(
    stack: LocalStack,
) -> None:
    """Review finding: after the INS arrived, an ADT naming only the old IPP changed the
    merged-away record, never the patient the documents are filed under."""
    s = stack.settings
    merge = adt_message(SARAH_LOU, "A08", "QUAL", control_id="INS2", ipp=IPP)

    def ipp_a08(feeding: str, msh7: str, control_id: str) -> bytes:
        raw = ipp_only(adt_message(SARAH_LOU, "A08", "QUAL", control_id=control_id), SARAH_LOU)
        raw = raw.replace(b"|20261122||ADT^", f"|{msh7}||ADT^".encode(), 1)
        return raw + f"ZFA|ACTIF||||||||{feeding}|{msh7}\r".encode()

    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        await publisher.submit_identity(merge)  # the IPP is the INS patient's (again)
        await publisher.submit_identity(ipp_a08("INO", "20261201090000", "IPP2"))
        land = await landing(stack, lambda lan: said(lan, "IPP2"))
        assert "feeding=INO" in said(land, "IPP2")[-1]["outcome"]
        [filed] = await publisher.submit_lab_result(lab_of(SARAH_LOU, 12))
        land = await landing(stack, lambda lan: filed in lan.delivered)
        assert land.delivered[filed]["outcome"] == "DELIVERED"
        await publisher.submit_identity(ipp_a08("IO", "20261202090000", "IPP3"))
        land = await landing(stack, lambda lan: said(lan, "IPP3"))
        assert "feeding=IO" in said(land, "IPP3")[-1]["outcome"]
        [refused] = await publisher.submit_lab_result(lab_of(SARAH_LOU, 13))
        land = await landing(stack, lambda lan: refused in lan.delivered)
    assert land.delivered[refused]["outcome"] == "REJECTED"
    assert land.delivered[refused]["code"] == "DMPPatientOpposition"
    assert [u for u in stack.sandbox.submissions if u.endswith(".115022000012")]
    assert not [u for u in stack.sandbox.submissions if u.endswith(".115022000013")]


def lab_of(patient: Any, n: int) -> bytes:
    return sample(LAB, patient, n) + ACK_RECEPTION.encode()


def said(land: Landing, control_id: str) -> list[dict[str, Any]]:
    """The CONSENT_CHANGED audits of the ADT whose MSH-10 is ``control_id``."""
    return [a for a in consent_audits(land) if f"MSH-10 {control_id}" in a["detail"]]


def letters(land: Landing, event_id: str) -> list[dict[str, Any]]:
    return [d for d in land.dead if d["event_id"] == event_id]


def decided(land: Landing, event_id: str) -> bool:
    """The identity stage forwarded the document (stamped with the word of that moment)."""
    return any(a["action"] == "IDENTITY_DECIDED" and a["event_id"] == event_id for a in land.audits)
