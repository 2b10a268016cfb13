"""The door, through the real gateway process (``relais mllp``) on the real broker (issue 15).

Each test is one bullet of the issue's "Why": what used to get an AA and then a dead letter,
a hold, a wrong filing or nothing at all is now answered at the door, AE with an ERR that
names the field and the rule, with a dead letter carrying the same reason. What is
accepted is on the bus; test messages on the test topic only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from ops.demo import samples
from ops.localstack import LocalStack
from ops.ports import free_port
from producers.mllp.framing import frame
from relais.contracts import Codec
from relais.topics import DEADLETTER, SUBMITTED, TEST_DOCUMENTS
from tests.integration.mllp_client import exchange
from tests.shared_data import shared

CODEC = Codec()


@dataclass
class Door:
    stack: LocalStack
    port: int

    async def send(self, message: bytes) -> dict[str, list[str]]:
        """Send one message; its ACK's segments by name (MSA, ERR)."""
        ack = await exchange(self.port, message)
        return {s.split("|")[0]: s.split("|") for s in ack.decode().strip("\r").split("\r")}

    async def topic(self, spec: object, count: int, timeout_s: float = 15) -> list[dict]:
        consumer = AIOKafkaConsumer(
            spec.name(self.stack.prefix),  # type: ignore[attr-defined]
            bootstrap_servers=self.stack.broker.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        found: list[dict] = []
        try:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while len(found) < count and asyncio.get_running_loop().time() < deadline:
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    found += [CODEC.decode(m.value)[1] for m in batch]
        finally:
            await consumer.stop()
        return found


@pytest.fixture(scope="module")
async def door(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Door]:
    port = free_port()
    stack = LocalStack(
        Path(tmp_path_factory.mktemp("door")),
        prefix=f"d{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        workers=(("mllp", "--host", "127.0.0.1", "--port", str(port)),),
        extra_environment={
            "RELAIS_MLLP_TEST_MESSAGES": "accept,REFUSING-LAB=refuse",
            "RELAIS_MLLP_MAX_CONNECTIONS_PER_PEER": "4",
            "RELAIS_MLLP_FRAME_TIMEOUT_S": "2",
        },
    )
    async with stack as local:
        yield Door(local, port)


def control() -> str:
    return f"C{uuid.uuid4().hex[:12]}"


def letter(
    patient: samples.Patient = samples.DOMINIQUE,
    *,
    document: bytes | None = None,
    pid_patient: samples.Patient | None = None,
    media: str = "XML",
    doc_id: str | None = None,
) -> tuple[str, bytes]:
    """(MSH-10, an MDM^T02 carrying ``document`` or a valid CDA for ``patient``)."""
    msh10 = control()
    doc_id = doc_id or f"1.2.250.1.213.1.1.9.4242.{uuid.uuid4().int % 10**12}"
    body = document or samples.cda(samples.LETTER, patient, doc_id, "lettre de liaison")
    raw = samples.hl7_message(samples.LETTER, pid_patient or patient, msh10, body, media=media)
    return msh10, raw


async def refused(door: Door, raw: bytes, location: str, words: str) -> dict[str, list[str]]:
    """Assert an AE whose ERR names ``location`` and says ``words``; a dead letter with it."""
    ack = await door.send(raw)
    assert ack["MSA"][1] == "AE", ack
    err = ack["ERR"]
    assert err[2].split("^")[0] == location.split("-", maxsplit=1)[0], err
    if "-" in location:
        assert err[2].split("^")[2] == location.split("-")[1], err
    assert words in err[8], err
    assert err[3].split("^")[0], err  # ERR-3: an HL7 table 0357 code
    return ack


async def test_the_two_patient_oru_r01_is_refused_not_filed_in_the_first_patients_record(
    door: Door,
) -> None:
    first = samples.sample(samples.LAB, samples.DOMINIQUE, 7).decode().split("\r")
    second = samples.sample(samples.LAB, samples.SARAH_LOU, 8).decode().split("\r")
    raw = "\r".join(first[:-1] + second[1:]).encode()
    ack = await refused(door, raw, "PID", "one patient per message")
    assert ack["ERR"][3].startswith("198")
    letters = [
        d
        for d in await door.topic(DEADLETTER, 50, timeout_s=5)
        if d["stage"] == "mllp" and "one patient" in d["reason"]
    ]
    assert letters
    assert letters[0]["reason_code"] == "hl7-198"


@pytest.mark.parametrize(
    ("case", "location", "words"),
    [
        ("not-well-formed", "OBX-5", "well-formed"),
        ("doctype", "OBX-5", "doctype"),
        ("header", "OBX-5", "language"),
        ("flags", "OBX", "got DESTDMP=Y"),
        ("ins-vs-traits", "PID-3", "sex digit"),
        ("patient-mailbox", "PRT-15", "15-character matricule"),
    ],
)
async def test_aa_then_silence_is_now_an_ae_at_the_door(
    door: Door, case: str, location: str, words: str
) -> None:
    cda = samples.cda(samples.LETTER, samples.DOMINIQUE, "1.2.250.1.213.1.1.9.77.1", "lettre")
    _, raw = letter()
    if case == "not-well-formed":
        _, raw = letter(document=cda[: len(cda) // 2])
    elif case == "doctype":
        _, raw = letter(document=b'<!DOCTYPE x [<!ENTITY a "b">]>' + cda.split(b"?>", 1)[1])
    elif case == "header":
        _, raw = letter(document=cda.replace(b'code="fr-FR"', b'code="en-US"', 1))
    elif case == "flags":
        raw += b"OBX|3|CE|DESTMSSANTEPAT^^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
    elif case == "ins-vs-traits":
        male = replace(samples.DOMINIQUE, sex="M")
        _, raw = letter(male)
    elif case == "patient-mailbox":
        raw += (
            b"PRT||UC||RCT^^participation|||||||||||^^X.400^"
            b"27903512151898912345@patient.mssante.fr\r"
        )
    await refused(door, raw, location, words)


async def test_test_messages_never_reach_production_and_a_sender_may_refuse_them(
    door: Door,
) -> None:
    msh10, raw = letter()
    test = raw.replace(f"|{msh10}|P|".encode(), f"|{msh10}|T|".encode(), 1)
    ack = await door.send(test)
    assert ack["MSA"][1] == "AA", ack
    on_test = [
        r for r in await door.topic(TEST_DOCUMENTS, 1) if r["source"]["message_control_id"] == msh10
    ]
    assert len(on_test) == 1
    production = await door.topic(SUBMITTED, 100, timeout_s=3)
    assert all(r["source"]["message_control_id"] != msh10 for r in production)
    refusing = test.replace(b"|RELAIS-DEMO|", b"|REFUSING-LAB|", 1)
    await refused(door, refusing, "MSH-11", "test messages")
    debug = raw.replace(f"|{msh10}|P|".encode(), f"|{msh10}|X|".encode(), 1)
    await refused(door, debug, "MSH-11", "send P (production)")


async def test_same_id_other_content_is_refused_naming_the_id_and_a_resend_is_accepted(
    door: Door,
) -> None:
    doc_id = f"1.2.250.1.213.1.1.9.4242.{uuid.uuid4().int % 10**12}"
    _, first = letter(doc_id=doc_id)
    assert (await door.send(first))["MSA"][1] == "AA"
    assert (await door.send(first))["MSA"][1] == "AA"  # the same bytes again: a resend
    other = samples.cda(samples.LETTER, samples.DOMINIQUE, doc_id, "autre contenu")
    _, second = letter(document=other, doc_id=doc_id)
    ack = await refused(door, second, "OBX-5", "already sent with another content")
    assert doc_id in ack["ERR"][8]


async def test_a_replacement_of_a_document_never_sent_is_refused(door: Door) -> None:
    raw = shared("hl7v2", "MDM_T02_CR-IMG_N1_initial_placeholder.er7")
    assert raw.exists()  # the volet's T10 names its parent in TXA-13, as this test does
    msh10, initial = letter()
    replacement = initial.replace(b"MDM^T02^MDM_T02", b"MDM^T10^MDM_T02", 1)
    replacement = replacement.replace(b"||||||F\r", b"||||||C\r", 1)
    lines = replacement.decode().split("\r")
    txa = next(i for i, line in enumerate(lines) if line.startswith("TXA"))
    parts = lines[txa].split("|")
    parts += [""] * (14 - len(parts))
    parts[13] = "NEVER-SENT^^1.2.250.1.213.1.1.9.999^ISO"
    lines[txa] = "|".join(parts)
    await refused(door, "\r".join(lines).encode(), "TXA-13", "never received")
    assert msh10


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("stylesheet", "processing-instruction"),
        ("schema-location", "schema-location"),
        ("reference", "external-reference"),
        ("pdf-javascript", "pdf-active-content"),
    ],
)
async def test_hostile_content_is_refused_not_filed(door: Door, case: str, words: str) -> None:
    cda = samples.cda(samples.LETTER, samples.DOMINIQUE, "1.2.250.1.213.1.1.9.77.2", "lettre")
    if case == "stylesheet":
        body = cda.replace(
            b"<ClinicalDocument",
            b'<?xml-stylesheet href="http://x.example/s.xsl"?><ClinicalDocument',
            1,
        )
        _, raw = letter(document=body)
    elif case == "schema-location":
        body = cda.replace(
            b"<ClinicalDocument ",
            b'<ClinicalDocument xsi:schemaLocation="urn:hl7-org:v3 http://x.example/c.xsd" ',
            1,
        )
        _, raw = letter(document=body)
    elif case == "reference":
        body = cda.replace(b"</title>", b"</title><reference value='https://x.example/a.pdf'/>", 1)
        _, raw = letter(document=body)
    else:
        pdf = samples.minimal_pdf("cr").replace(
            b"%%EOF",
            b"9 0 obj << /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >> endobj\n%%EOF",
        )
        _, raw = letter(document=pdf, media="PDF")
    await refused(door, raw, "OBX-5", words)


async def test_names_are_compared_and_headers_counted(door: Door) -> None:
    other_name = replace(samples.DOMINIQUE, family="PAT-QUATRE")
    _, raw = letter(other_name, pid_patient=samples.DOMINIQUE)
    await refused(door, raw, "OBX-5", "patient-birth-name")
    msh10, good = letter()
    long_id = good.replace(f"|{msh10}|".encode(), b"|" + b"7" * 200 + b"|", 1)
    await refused(door, long_id, "MSH-10", "allows 199")
    lines = good.decode().split("\r")
    txa = next(line for line in lines if line.startswith("TXA"))
    await refused(door, "\r".join([*lines[:-1], txa, ""]).encode(), "TXA", "one document header")


async def test_the_lps_profile_is_refused_with_the_true_reason(door: Door) -> None:
    _, raw = letter()
    lps = raw.replace(b"2.1^CISIS_CDA_HL7_V2", b"1.0^CISIS_CDA_HL7_LPS", 1)
    await refused(door, lps, "MSH-21", "LPS profile")


async def test_a_valid_letter_is_accepted_and_on_the_bus(door: Door) -> None:
    msh10, raw = letter()
    ack = await door.send(raw)
    assert ack["MSA"][1] == "AA", ack
    records = await door.topic(SUBMITTED, 200)
    assert any(r["source"]["message_control_id"] == msh10 for r in records)


async def test_one_sender_cannot_stall_the_others_with_a_5_mb_pathological_frame(
    door: Door,
) -> None:
    """The 5 MB frame of '~' is checked in a worker process: a small message sent after it,
    on another connection, is answered first (an order, not a time)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", door.port)
    big = b"MSH|^~\\&|HOSTILE|HOSTILE|RELAIS|RELAIS|20261206||ORU^R01|BIG1|P|2.5|" + b"~" * (
        5 << 20
    )
    writer.write(frame(big))
    await writer.drain()
    big_answer = asyncio.ensure_future(reader.read(65536))
    order: list[str] = []
    big_answer.add_done_callback(lambda _: order.append("big"))
    _, small = letter()
    ack = await door.send(small)
    order.append("small")
    assert ack["MSA"][1] == "AA", ack
    answer = await asyncio.wait_for(big_answer, 60)
    writer.close()
    assert b"MSA|AE|" in answer
    assert order == ["small", "big"]


async def test_per_peer_connections_are_limited_and_a_trickling_frame_is_closed(
    door: Door,
) -> None:
    held = [await asyncio.open_connection("127.0.0.1", door.port) for _ in range(4)]
    reader, writer = await asyncio.open_connection("127.0.0.1", door.port)
    assert await asyncio.wait_for(reader.read(1), 10) == b""  # the fifth: closed at once
    writer.close()
    trickling_reader, trickling = held[0]
    trickling.write(b"\x0bMSH|^~\\&|SLOW")  # a frame started, never finished
    await trickling.drain()
    assert await asyncio.wait_for(trickling_reader.read(1), 15) == b""  # its deadline: 2 s
    for _, other in held:
        other.close()
