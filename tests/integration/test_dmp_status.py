"""TD0.2 before feeding, and replacements naming the DMP's entryUUID (issue 18).

Real broker, the pipeline workers and the DMP sink as processes, the DMP sandbox over mutual
TLS in this loop: its patients service (TD0.2) answers from a per-patient table the tests
set; its registry gives every version a random entryUUID and refuses an RPLC naming another.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ops.demo.samples import DOMINIQUE, SARAH_LOU, lab_report_sample
from ops.localstack import Landing, LocalStack, read_landing
from producers.publisher import Publisher
from relais import kafka_clients
from relais.contracts import Codec
from relais.topics import BUSINESS_ACKS
from sandboxes.dmp_services import DmpState
from tests.shared_data import shared

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "catalogues"
ACK_RECEPTION = (
    "OBX|99|CE|ACK_RECEPTION^Accuse de reception^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("td02")),
        prefix=f"s{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        catalogue_dir=FIXTURES,
        loinc_table=shared("loinc", "loinc_fr_labels_from_ans_crbio_examples.csv"),
        ucum_units=shared("jdv", "UCUM_2.16.840.1.113883.6.8.xml"),
    ) as local:
        yield local


async def submit(stack: LocalStack, *messages: bytes) -> list[str]:
    s = stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        return [(await publisher.submit_lab_result(raw))[0] for raw in messages]


async def landed(stack: LocalStack, until: Callable[[Landing], bool]) -> Landing:
    s = stack.settings
    return await read_landing(s.kafka.bootstrap, s.kafka.prefix, timeout_s=90, until=until)


def final(landing: Landing, event_id: str) -> dict[str, Any] | None:
    statuses = landing.statuses.get((event_id, "DMP"), [])
    done = [s for s in statuses if s["outcome"] in {"DELIVERED", "DUPLICATE", "REJECTED"}]
    return done[-1] if done else None


async def business_acks(stack: LocalStack, event_id: str, timeout_s: float = 30) -> list[bytes]:
    """The ZAM messages the DMP sink sent for ``event_id`` (BUSINESS_ACKS topic)."""
    s = stack.settings
    codec, found = Codec(), list[bytes]()
    consumer = kafka_clients.consumer(
        s.kafka.bootstrap,
        BUSINESS_ACKS.name(s.kafka.prefix),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not found and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for message in (m for batch in batches.values() for m in batch):
                _, ack = codec.decode(message.value)
                if ack["event_id"] == event_id:
                    found.append(bytes(ack["message"]))
    finally:
        await consumer.stop()
    return found


async def relais(stack: LocalStack, *args: str) -> tuple[int, str]:
    """Run the real command line against the stack: (exit code, stdout)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        *args,
        env=stack.environment(0),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_a_closed_dmp_is_refused_dead_lettered_and_told_with_zam_n_dmpclosed(
    stack: LocalStack,
) -> None:
    stack.sandbox.statuses.set(SARAH_LOU.ins, DmpState.CLOSED)
    raw = lab_report_sample(SARAH_LOU, 31) + ACK_RECEPTION.encode()
    [event_id] = await submit(stack, raw)
    landing = await landed(stack, lambda lan: final(lan, event_id) is not None)
    status = final(landing, event_id)
    assert status is not None
    assert (status["outcome"], status["code"]) == ("REJECTED", "DMPClosed")
    [letter] = [d for d in landing.dead if d["event_id"] == event_id]
    assert (letter["stage"], letter["reason_code"]) == ("dmp-sink", "dmp-rejected")
    assert "DMPClosed" in letter["reason"]
    assert stack.sandbox.statuses.asked[SARAH_LOU.ins] >= 1
    assert not [f for f in stack.sandbox.filed.values() if SARAH_LOU.ins in f.patient_id]
    [zam] = await business_acks(stack, event_id)
    segments = zam.decode().strip("\r").split("\r")
    assert segments[0].split("|")[8] == "ZAM^Z01^ZAM_Z01"
    assert segments[2].split("|")[5] == "N^^expandedYes-NoIndicator"
    err = segments[-1].split("|")
    assert err[3].startswith("207^")
    assert err[5] == "DMPClosed^DMP fermé^DMPERRORCODE"
    assert SARAH_LOU.family not in zam.decode()
    assert SARAH_LOU.ins not in zam.decode()
    # the patient has the DMP reopened: the operator replays, TD0.2 is asked again, filed
    asked = stack.sandbox.statuses.asked[SARAH_LOU.ins]
    stack.sandbox.statuses.set(SARAH_LOU.ins, DmpState.OPEN)
    code, out = await relais(
        stack, "dlq", "replay", letter["dead_letter_id"], "--wait", "60", "--by", "ops"
    )
    assert code == 0, out
    assert stack.sandbox.statuses.asked[SARAH_LOU.ins] == asked + 1
    assert [f for f in stack.sandbox.filed.values() if SARAH_LOU.ins in f.patient_id]


async def test_td02_is_asked_once_for_a_patients_documents_and_a_replacement_names_the_dmps_uuid(
    stack: LocalStack,
) -> None:
    before = stack.sandbox.statuses.asked[DOMINIQUE.ins]
    first, second = await submit(
        stack, lab_report_sample(DOMINIQUE, 41), lab_report_sample(DOMINIQUE, 42)
    )
    landing = await landed(stack, lambda lan: all(final(lan, e) for e in (first, second)))
    for event_id in (first, second):
        assert (final(landing, event_id) or {}).get("outcome") == "DELIVERED", landing.dead
    # the second document of the patient: the TD0.2 answer of the first one still holds
    assert before == 0  # no other test of this module files for DOMINIQUE
    assert stack.sandbox.statuses.asked[DOMINIQUE.ins] == 1
    asked = stack.sandbox.statuses.asked[DOMINIQUE.ins]
    [correction] = await submit(stack, lab_report_sample(DOMINIQUE, 41, status="C"))
    landing = await landed(stack, lambda lan: final(lan, correction) is not None)
    status = final(landing, correction)
    assert status is not None
    assert status["outcome"] == "DELIVERED", landing.dead
    assert stack.sandbox.statuses.asked[DOMINIQUE.ins] == asked  # cached: no TD0.2
    original = stack.sandbox.filed[(final(landing, first) or {})["document_unique_id"]]
    corrected = stack.sandbox.filed[status["document_unique_id"]]
    # the sandbox issued the original's entryUUID at random; the RPLC named exactly that one
    assert corrected.replaces == original.unique_id
    assert original.status == "Deprecated"
    assert original.entry_uuid.startswith("urn:uuid:")
