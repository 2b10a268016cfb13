"""Every later outcome reaches the sender (issue 15, "AA, then silence", "Same id, other content").

Real broker, the real MLLP gateway process (``relais mllp``), the pipeline workers, the DMP
sandbox over mTLS, the outcomes sink and the ZAM forwarder (``relais acks forward``) sending
to a hospital's MLLP listener played by this test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.demo.samples import DOMINIQUE, LAB, UNQUALIFIED, cda, hl7_message, minimal_pdf
from ops.localstack import LocalStack, read_landing
from ops.ports import free_port
from producers.mllp.framing import MllpDecoder, frame
from producers.publisher import Publisher
from tests.shared_data import shared

FACILITY = "RELAIS-DEMO"  # MSH-4 of the demo messages: where the ZAMs go
ACK_RECEPTION = (
    "OBX|3|CE|ACK_RECEPTION^Accuse de reception^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
)
DOC_ID = f"1.2.250.1.213.1.1.9.4242.{uuid.uuid4().int % 10**9}"


class Hospital:
    """The producer's MLLP listener: takes every ZAM (MSA AA) and keeps it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MllpDecoder(1 << 20)
        while data := await reader.read(65536):
            for message in decoder.feed(data):
                self.received.append(message)
                n = len(self.received)
                ack = f"MSH|^~\\&|DPI|{FACILITY}|RELAIS|RELAIS|20261122||ACK|A{n}|P|2.6\rMSA|AA|x\r"
                writer.write(frame(ack.encode()))
                await writer.drain()
        writer.close()

    def zams(self, control_id: str) -> list[dict[str, list[str]]]:
        """The ZAMs received for the message ``control_id``, by segment (OBX1, ERR...)."""
        found = []
        for message in self.received:
            fields = {}
            for segment in message.decode().strip("\r").split("\r"):
                parts = segment.split("|")
                fields[parts[0] + (parts[1] if parts[0] == "OBX" else "")] = parts
            if fields.get("OBX1", [""] * 5)[4] == control_id:
                found.append(fields)
        return found


@dataclass
class Door:
    stack: LocalStack
    hospital: Hospital
    port: int


@pytest.fixture(scope="module")
async def door(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Door]:
    hospital = Hospital()
    listener = await asyncio.start_server(hospital.handle, "127.0.0.1", 0)
    gateway_port = free_port()
    stack = LocalStack(
        Path(tmp_path_factory.mktemp("outcomes")),
        prefix=f"o{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        workers=(
            ("worker", "identity", "transcode", "route"),
            ("sink", "dmp"),
            ("sink", "outcomes"),
            ("acks", "forward"),
            ("mllp", "--host", "127.0.0.1", "--port", str(gateway_port)),
        ),
        extra_environment={
            "RELAIS_ACK_ROUTES": f"{FACILITY}=127.0.0.1:{listener.sockets[0].getsockname()[1]}",
            "RELAIS_HOLD_REMINDER_S": "2",
        },
    )
    try:
        async with stack as local:
            yield Door(local, hospital, gateway_port)
    finally:
        listener.close()


async def send(port: int, message: bytes) -> str:
    """Send one message to the gateway; its MSA-1 (AA, AE, AR)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(message))
    await writer.drain()
    decoder, acks = MllpDecoder(1 << 20), list[bytes]()
    while not acks:
        acks = decoder.feed(await asyncio.wait_for(reader.read(65536), 30))
    writer.close()
    msa = next(s for s in acks[0].decode().split("\r") if s.startswith("MSA|"))
    return msa.split("|")[1]


async def zams_for(hospital: Hospital, control_id: str, count: int) -> list[dict[str, list[str]]]:
    deadline = time.monotonic() + 45
    while len(hospital.zams(control_id)) < count:
        assert time.monotonic() < deadline, f"no ZAM for {control_id}: {hospital.received}"
        await asyncio.sleep(0.2)
    return hospital.zams(control_id)


def lab(control_id: str, text: str) -> bytes:
    """A lab result for DOMINIQUE (QUAL) carrying the CDA ``DOC_ID``, asking for ZAMs."""
    body = cda(LAB, DOMINIQUE, DOC_ID, text)
    return hl7_message(LAB, DOMINIQUE, control_id, body) + ACK_RECEPTION.encode()


def pdf_without_author(control_id: str) -> bytes:
    """A PDF lab result without PRT SB: the door takes it, the transcode stage cannot wrap it."""
    pdf = minimal_pdf("Compte rendu sans auteur")
    raw = hl7_message(LAB, DOMINIQUE, control_id, pdf, media="PDF")
    kept = [s for s in raw.split(b"\r") if not s.startswith(b"PRT|")]
    return b"\r".join(kept) + ACK_RECEPTION.encode()


async def test_aa_then_silence_a_document_dead_lettered_after_the_aa_reaches_its_sender_as_zam_n(
    door: Door,
) -> None:
    # AA at the door, then the transcode stage cannot make a CDA of it: dead-lettered
    assert await send(door.port, pdf_without_author("SILENCE1")) == "AA"
    [zam] = await zams_for(door.hospital, "SILENCE1", 1)
    assert zam["MSH"][8] == "ZAM^Z01^ZAM_Z01"
    assert zam["MSH"][4:6] == ["DEMO-SIS", FACILITY]
    assert zam["OBX1"][3].startswith("ACK_RECEPTION_DMP^")
    assert zam["OBX1"][5] == "N^^expandedYes-NoIndicator"
    assert zam["ERR"][3].startswith("207^")
    assert zam["ERR"][5].startswith("pdf-not-wrappable^")
    assert "PRT SB" in zam["ERR"][8]
    assert DOMINIQUE.family not in str(zam)
    assert DOMINIQUE.ins not in str(zam)


async def test_same_id_other_content_is_refused_with_zam_n_and_the_same_content_filed_once(
    door: Door,
) -> None:
    # The door refuses a reused id it knows (documents.ids); the producer library without
    # that registry, or an id older than the registry's retention, reaches the DMP sink:
    # the sink's own check is the backstop tested here.
    stack = door.stack
    async with Publisher(
        bootstrap=stack.settings.kafka.bootstrap, keyring=stack.keyring, topic_prefix=stack.prefix
    ) as publisher:
        await publisher.submit_lab_result(lab("REUSE1", "premier"))
        [filed] = await zams_for(door.hospital, "REUSE1", 1)
        assert filed["OBX1"][5] == "Y^^expandedYes-NoIndicator"
        # the same id with another content: refused, the sender told which id and what to do
        await publisher.submit_lab_result(lab("REUSE2", "autre contenu"))
        [refused] = await zams_for(door.hospital, "REUSE2", 1)
        # the first content again: no second filing, and nothing refused
        await publisher.submit_lab_result(lab("REUSE3", "premier"))
    assert refused["OBX1"][5] == "N^^expandedYes-NoIndicator"
    assert refused["ERR"][5] == "XDSNonIdenticalHash^Refus du DMP^DMPERRORCODE"
    extension = DOC_ID.rsplit(".", 1)[1]
    assert extension in refused["ERR"][8]
    assert "replacement" in refused["ERR"][8]
    await asyncio.sleep(3)
    assert door.hospital.zams("REUSE3") == []
    [unique_id] = [u for u in stack.sandbox.submissions if extension in u]
    assert stack.sandbox.submissions[unique_id] == 1
    letters = await read_landing(
        stack.settings.kafka.bootstrap,
        stack.prefix,
        until=lambda got: any(d["reason_code"] == "document-id-reused" for d in got.dead),
        timeout_s=20,
    )
    [reused] = [d for d in letters.dead if d["reason_code"] == "document-id-reused"]
    assert extension in reused["reason"]
    assert reused["stage"] == "dmp-sink"


async def test_aa_then_silence_a_document_held_for_identity_is_told_held_then_still_held(
    door: Door,
) -> None:
    stack = door.stack
    body = cda(LAB, UNQUALIFIED, f"{DOC_ID}7", "en attente")
    held = hl7_message(LAB, UNQUALIFIED, "HELD1", body) + ACK_RECEPTION.encode()
    async with Publisher(
        bootstrap=stack.settings.kafka.bootstrap, keyring=stack.keyring, topic_prefix=stack.prefix
    ) as publisher:
        await publisher.submit_lab_result(held)  # a provisional identity (PID-32 PROV): held
    first, reminder = await zams_for(door.hospital, "HELD1", 2)
    for zam, code in ((first, "identity-held^"), (reminder, "identity-still-held^")):
        assert zam["MSH"][8] == "ZAM^Z01^ZAM_Z01"
        assert zam["OBX1"][5] == "N^^expandedYes-NoIndicator"
        assert zam["ERR"][4] == "W"  # not final: a release still delivers it
        assert zam["ERR"][5].startswith(code)
        assert "ADT" in zam["ERR"][8]
    assert first["MSH"][9] != reminder["MSH"][9]
