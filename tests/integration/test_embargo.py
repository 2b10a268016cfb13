"""The embargo lifecycle end to end on the real broker: a CR-IMG under the release policy is
filed invisible to the patient, made visible by TD3.3b (ITI-57) at the release date, and the
patient is told only after the DMP sandbox confirmed it; the patient's MSSanté copy waits for
the same date, the doctor's does not. Worker and sink processes, DMP sandbox over mTLS, the
MSSanté operator sandbox (docs/embargo.md).

Each scenario waits for a release date of its own: they run at the same time, each on a stack
of its own (the sandbox's outage and refusal levers, the sink's metrics are the scenario's
alone), started once for the module; each test awaits its scenario and fails with it."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import re
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ops.demo.samples import DOMINIQUE, IMAGING, cda, hl7_message
from ops.localstack import Landing, LocalStack, read_landing, scrape
from producers.publisher import Publisher
from relais import kafka_clients
from relais.contracts import Codec
from relais.document_store.open import open_store
from relais.topic_reader import partitions_of, read_to_end
from relais.topics import DELIVERY_MSSANTE
from streams.route.release_policy import DEFAULT_POLICY
from tests.shared_data import shared

#: the operators' policy of this test: imaging reports reach the patient one day after validation
POLICY = (
    Path(__file__).resolve().parents[2] / "streams" / "route" / "release_policy.toml"
).read_text(encoding="utf-8")
EMBARGO_S = 60  # the report was validated one day minus this long ago: the embargo ends soon
DOCTOR = "dr.martin@medecin.mssante.fr"
PATIENT = f"{DOMINIQUE.ins}@patient.mssante.fr"
FLAGS = "".join(
    f"OBX|{20 + i}|CE|{flag}^{flag}^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
    for i, flag in enumerate(("DESTMSSANTEPS", "DESTMSSANTEPAT"))
)
RECIPIENT = (
    "PRT||UC||RCT^^participation|801234567890^MARTIN^Jean^^^^^^"
    "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS" + "|" * 10 + f"^^X.400^{DOCTOR}\r"
)


def imaging_report(n: int, validated: datetime) -> tuple[str, bytes]:
    """(document id, ORU) of a CR-IMG for DOMINIQUE, validated at ``validated``, sent to the
    DMP, the doctor's and the patient's mailboxes."""
    doc_id = f"1.2.250.1.213.1.1.9.4242.18748{uuid.uuid4().int % 10**9:09d}"
    document = cda(IMAGING, DOMINIQUE, doc_id, "Scanner thoracique sans anomalie.")
    time_value = validated.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    document = re.sub(
        rb'<legalAuthenticator><time value="[^"]+"/>',
        f'<legalAuthenticator><time value="{time_value}"/>'.encode(),
        document,
    )
    raw = hl7_message(IMAGING, DOMINIQUE, f"EMB{n:06d}", document)
    return doc_id, raw + (RECIPIENT + FLAGS).encode()


def embargo_stack(work: Path) -> LocalStack:
    """A stack of its own for one scenario: the DMP sandbox's levers (an outage, refused
    updates) and the sink's metrics then belong to that scenario alone."""
    policy = work / "release_policy.toml"
    policy.write_text(
        POLICY.replace('patient_visible_after = "15 days"', 'patient_visible_after = "1 day"')
    )
    assert DEFAULT_POLICY  # the bundled policy loads; this one only shortens the delay
    return LocalStack(
        work,
        prefix=f"e{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        mail=True,
        extra_environment={"RELAIS_RELEASE_POLICY": str(policy)},
    )


def final(landing: Landing, event_id: str, destination: str) -> list[dict[str, Any]]:
    done = {"DELIVERED", "DUPLICATE", "REJECTED"}
    return [s for s in landing.statuses.get((event_id, destination), []) if s["outcome"] in done]


def visibility(landing: Landing, event_id: str) -> list[dict[str, Any]]:
    return [s for s in final(landing, event_id, "DMP") if s["request_id"].endswith("|visibility")]


def filing(landing: Landing, event_id: str) -> list[dict[str, Any]]:
    return [
        s for s in final(landing, event_id, "DMP") if not s["request_id"].endswith("|visibility")
    ]


def copies_of(stack: LocalStack, doc_id: str) -> int:
    """The mails in the patient's mailbox whose attachment (the XDM) carries ``doc_id``."""
    found = 0
    for received in mails(stack, PATIENT):
        for part in received.message.iter_attachments():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and zipped(payload, doc_id.encode()):
                found += 1
    return found


def zipped(payload: bytes, needle: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            return any(needle in archive.read(name) for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def mails(stack: LocalStack, address: str) -> list[Any]:
    assert stack.mail_sandbox is not None
    return stack.mail_sandbox.mailboxes().get(address.lower(), [])


async def filed_invisible_lifted_at_the_release_date_then_told(embargo: LocalStack) -> None:
    s = embargo.settings
    validated = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=EMBARGO_S)
    release = validated + timedelta(days=1)
    doc_id, raw = imaging_report(1, validated)
    async with Publisher(
        bootstrap=s.kafka.bootstrap,
        keyring=embargo.keyring,
        topic_prefix=s.kafka.prefix,
        store=open_store(s),
    ) as publisher:
        [event] = await publisher.submit_imaging_report(raw)

    # 1. filed in the DMP, invisible to the patient; the doctor's copy leaves at once
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=40,
        until=lambda lan: (
            (bool(filing(lan, event)) and len(final(lan, event, "MSSANTE")) >= 1) or bool(lan.dead)
        ),
    )
    assert landing.dead == [], [d["reason_code"] for d in landing.dead]
    assert datetime.now(UTC) < release, "the pipeline took longer than the embargo: raise EMBARGO_S"
    [filed] = filing(landing, event)
    assert filed["outcome"] == "DELIVERED"
    assert doc_id in embargo.sandbox.filed
    stored = (
        embargo.work_dir
        / "dmp-sandbox"
        / f"{hashlib.sha256(doc_id.encode()).hexdigest()[:32]}.metadata.xml"
    )
    assert b'nodeRepresentation="INVISIBLE_PATIENT"' in stored.read_bytes()
    assert embargo.sandbox.updates.patient_visible(doc_id) is None  # no TD3.3b yet
    first_entry = embargo.sandbox.filed[doc_id].entry_uuid
    assert len(mails(embargo, DOCTOR)) == 1  # professionals are not held
    held = [x for x in landing.statuses.get((event, "MSSANTE"), []) if x["code"] == "EMBARGOED"]
    assert len(held) == 1  # the patient's copy: held until the release date
    assert mails(embargo, PATIENT) == []  # neither the copy nor a notification yet
    assert final(landing, event, "NOTIFY") == []
    assert visibility(landing, event) == []
    # what operators see meanwhile: one lift waiting for its date, one patient's copy held
    dmp = scrape(embargo.process("sink-dmp").metrics_port)
    assert dmp["relais_dmp_visibility_lifts_pending"] == 1
    assert dmp['relais_dmp_status_checks_total{answer="open"}'] == 1
    mss = scrape(embargo.process("mss-send-worker").metrics_port)
    assert mss["relais_mss_patient_copies_held"] == 1
    # a crash of the DMP sink and of the MSSanté worker: the lift and the hold are on the bus
    await embargo.restart("sink-dmp", kill=True)
    await embargo.restart("mss-send-worker", kill=True)
    assert datetime.now(UTC) < release  # what follows is the new processes' doing

    # 2. at the release date: TD3.3b, then the notification, then the patient's copy
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=EMBARGO_S + 60,
        until=lambda lan: (
            (bool(final(lan, event, "NOTIFY")) and len(final(lan, event, "MSSANTE")) >= 2)
            or bool(lan.dead)
        ),
    )
    assert landing.dead == [], [d["reason_code"] for d in landing.dead]
    [lifted] = visibility(landing, event)
    assert lifted["outcome"] == "DELIVERED", lifted
    assert lifted["at"] >= release.replace(microsecond=0)
    assert embargo.sandbox.updates.patient_visible(doc_id) is True
    current = embargo.sandbox.updates.current(doc_id)
    assert current is not None
    assert current.lid == first_entry
    assert current.number == 2
    assert embargo.sandbox.filed[doc_id].entry_uuid == current.entry_uuid != first_entry
    [told] = final(landing, event, "NOTIFY")
    assert told["outcome"] == "DELIVERED", told
    assert told["at"] >= lifted["at"]  # the patient heard of it after the DMP's confirmation
    copies = [
        x for x in final(landing, event, "MSSANTE") if x["at"] >= release.replace(microsecond=0)
    ]
    assert [x["outcome"] for x in copies] == ["DELIVERED"]  # the patient's copy, on the date
    assert len(mails(embargo, PATIENT)) == 2  # the copy (XDM) and the notification
    assert copies_of(embargo, doc_id) == 1
    audited = {(a["component"], a["action"]) for a in landing.audits if a["event_id"] == event}
    assert ("dmp-visibility", "DELIVERED") in audited
    assert landing.doubled() == []
    dmp = scrape(embargo.process("sink-dmp").metrics_port)  # the restarted sink lifted it
    assert dmp['relais_dmp_visibility_updates_total{outcome="DELIVERED"}'] == 1
    assert dmp["relais_dmp_visibility_lifts_pending"] == 0
    assert (
        scrape(embargo.process("mss-send-worker").metrics_port)["relais_mss_patient_copies_held"]
        == 0
    )


async def a_refused_visibility_update_cancels_the_notification(embargo: LocalStack) -> None:
    s = embargo.settings
    validated = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=20)
    doc_id, raw = imaging_report(2, validated)
    embargo.sandbox.updates.refuse_with = "XDSMetadataUpdateError"
    try:
        async with Publisher(
            bootstrap=s.kafka.bootstrap,
            keyring=embargo.keyring,
            topic_prefix=s.kafka.prefix,
            store=open_store(s),
        ) as publisher:
            [event] = await publisher.submit_imaging_report(raw)
        landing = await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            timeout_s=120,
            until=lambda lan: (
                (bool(visibility(lan, event)) and bool(final(lan, event, "NOTIFY")))
                or bool(lan.dead)
            ),
        )
    finally:
        embargo.sandbox.updates.refuse_with = None
    [refused] = visibility(landing, event)
    assert (refused["outcome"], refused["code"]) == ("REJECTED", "XDSMetadataUpdateError")
    [cancelled] = final(landing, event, "NOTIFY")
    assert (cancelled["outcome"], cancelled["code"]) == ("REJECTED", "DMP_VISIBILITY_REFUSED")
    assert embargo.sandbox.updates.patient_visible(doc_id) is None


def deletion_of(raw: bytes, n: int) -> bytes:
    """The ORU deleting the report ``raw`` carried (ORC-1 CA, OBX-11 D, a new MSH-10)."""
    raw = raw.replace(f"|EMB{n:06d}|P|".encode(), f"|EMB{n:06d}D|P|".encode(), 1)
    raw = raw.replace(b"ORC|NW|", b"ORC|CA|", 1)
    return raw.replace(b"||||||F\rPRT|", b"||||||D\rPRT|", 1)


async def a_deletion_before_the_release_date_cancels_the_held_copy(
    embargo: LocalStack,
) -> None:
    s = embargo.settings
    doc_id, raw = imaging_report(3, datetime.now(UTC))  # under embargo for a day
    async with Publisher(
        bootstrap=s.kafka.bootstrap,
        keyring=embargo.keyring,
        topic_prefix=s.kafka.prefix,
        store=open_store(s),
    ) as publisher:
        [event] = await publisher.submit_imaging_report(raw)
        await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            timeout_s=60,
            until=lambda lan: any(
                x["code"] == "EMBARGOED" for x in lan.statuses.get((event, "MSSANTE"), [])
            ),
        )
        [deleted] = await publisher.submit_imaging_report(deletion_of(raw, 3))
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=60,
        until=lambda lan: (
            (len(final(lan, deleted, "MSSANTE")) >= 2 and bool(final(lan, event, "NOTIFY")))
            or bool(lan.dead)
        ),
    )
    assert landing.dead == [], [d["reason_code"] for d in landing.dead]
    codes = sorted(str(x["code"]) for x in final(landing, deleted, "MSSANTE"))
    assert "HELD_COPY_CANCELLED" in codes, codes  # the patient's copy never left
    [cancelled] = final(landing, event, "NOTIFY")
    assert cancelled["outcome"] == "REJECTED"
    assert copies_of(embargo, doc_id) == 0  # nothing of it reached the patient's mailbox
    # a crash before the commit: the deletion's requests come again (the same records)
    received = len(mails(embargo, PATIENT))
    assert await replay(embargo, deleted) == 2  # the doctor's and the patient's
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=60,
        until=lambda lan: len(final(lan, deleted, "MSSANTE")) >= 4 or bool(lan.dead),
    )
    again = [x for x in final(landing, deleted, "MSSANTE") if "already done" in x["detail"]]
    assert sorted(str(x["code"]) for x in again).count("HELD_COPY_CANCELLED") == 1, again
    assert len(mails(embargo, PATIENT)) == received  # no withdrawal of a copy never sent


async def replay(stack: LocalStack, event_id: str) -> int:
    """Write the MSSanté requests of ``event_id`` again, as they were (a replayed poll)."""
    s = stack.settings
    bootstrap, prefix = s.kafka.bootstrap, s.kafka.prefix
    messages = await read_to_end(
        bootstrap, await partitions_of(bootstrap, [DELIVERY_MSSANTE], prefix)
    )
    codec = Codec()
    again = [m for m in messages if codec.decode(m.value)[1]["event_id"] == event_id]
    producer = kafka_clients.producer(bootstrap, acks="all")
    await producer.start()
    try:
        for m in again:
            await producer.send_and_wait(m.topic, m.value, key=m.key, partition=m.partition)
    finally:
        await producer.stop()
    return len(again)


async def a_dmp_outage_at_the_release_date_delays_the_update_and_the_notification(
    embargo: LocalStack,
) -> None:
    s = embargo.settings
    # the filing must be done before the release date: a margin for a machine that is busy
    # with the other scenarios (all run at once; the first one waits longer anyway)
    validated = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=35)
    release = validated + timedelta(days=1)
    doc_id, raw = imaging_report(4, validated)
    async with Publisher(
        bootstrap=s.kafka.bootstrap,
        keyring=embargo.keyring,
        topic_prefix=s.kafka.prefix,
        store=open_store(s),
    ) as publisher:
        [event] = await publisher.submit_imaging_report(raw)
    await read_landing(
        s.kafka.bootstrap, s.kafka.prefix, timeout_s=60, until=lambda lan: bool(filing(lan, event))
    )
    embargo.sandbox.unavailable = True  # the DMP is down when the embargo ends
    try:
        await asyncio.sleep(max(0.0, (release - datetime.now(UTC)).total_seconds()) + 5)
        landing = await read_landing(s.kafka.bootstrap, s.kafka.prefix, timeout_s=2)
        assert visibility(landing, event) == []  # not given up: tried again later
        assert final(landing, event, "NOTIFY") == []  # and nobody told meanwhile
    finally:
        embargo.sandbox.unavailable = False
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=90,
        until=lambda lan: bool(final(lan, event, "NOTIFY")) or bool(lan.dead),
    )
    [lifted] = visibility(landing, event)
    assert lifted["outcome"] == "DELIVERED"
    assert lifted["attempt"] == 1  # the outage answered 503 before the update was sent
    assert embargo.sandbox.updates.patient_visible(doc_id) is True
    [told] = final(landing, event, "NOTIFY")
    assert told["outcome"] == "DELIVERED"
    assert told["at"] >= lifted["at"]


def correction_of(parent: str, validated: datetime) -> tuple[str, bytes]:
    """(document id, MDM^T10) of a new CR-IMG replacing the document ``parent`` (TXA-13)."""
    doc_id = f"1.2.250.1.213.1.1.9.4242.18748{uuid.uuid4().int % 10**9:09d}"
    document = cda(IMAGING, DOMINIQUE, doc_id, "Scanner thoracique: compte rendu corrige.")
    time_value = validated.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    document = re.sub(
        rb'<legalAuthenticator><time value="[^"]+"/>',
        f'<legalAuthenticator><time value="{time_value}"/>'.encode(),
        document,
    )
    mdm = dataclasses.replace(IMAGING, message_type="MDM^T10^MDM_T02")
    control = f"EMB{uuid.uuid4().int % 10**6:06d}C"
    raw = hl7_message(mdm, DOMINIQUE, control, document)
    raw = raw.replace(f"|{control}|||||AU".encode(), f"|{control}|{parent}||||AU".encode(), 1)
    raw = raw.replace(b"||||||F\rPRT|", b"||||||C\rPRT|", 1)
    return doc_id, raw + (RECIPIENT + FLAGS).encode()


async def a_replacement_after_the_lift_replaces_the_current_version(
    embargo: LocalStack,
) -> None:
    """TD3.3b made version 2 (a new entryUUID, version 1 deprecated): a later replacement
    names version 2, found by ITI-18, not the entryUUID the sink learnt after filing."""
    s = embargo.settings
    validated = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=20)
    doc_id, raw = imaging_report(5, validated)
    async with Publisher(
        bootstrap=s.kafka.bootstrap,
        keyring=embargo.keyring,
        topic_prefix=s.kafka.prefix,
        store=open_store(s),
    ) as publisher:
        [event] = await publisher.submit_imaging_report(raw)
        landing = await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            timeout_s=120,
            until=lambda lan: bool(visibility(lan, event)) or bool(lan.dead),
        )
        [lifted] = visibility(landing, event)
        assert lifted["outcome"] == "DELIVERED", lifted
        first = embargo.sandbox.updates.current(doc_id)
        assert first is not None
        assert first.number == 2
        new_id, corrected = correction_of(doc_id, validated)
        [replacing] = await publisher.submit_imaging_report(corrected)
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=90,
        until=lambda lan: bool(filing(lan, replacing)) or bool(lan.dead),
    )
    assert landing.dead == [], [d["reason_code"] for d in landing.dead]
    [filed] = filing(landing, replacing)
    assert filed["outcome"] == "DELIVERED", filed
    assert embargo.sandbox.filed[new_id].replaces == doc_id
    assert embargo.sandbox.filed[doc_id].status == "Deprecated"


Scenario = Callable[[LocalStack], Coroutine[Any, Any, None]]
SCENARIOS: tuple[Scenario, ...] = (  # the longest waits first: the others overlap them
    filed_invisible_lifted_at_the_release_date_then_told,
    a_dmp_outage_at_the_release_date_delays_the_update_and_the_notification,
    a_replacement_after_the_lift_replaces_the_current_version,
    a_refused_visibility_update_cancels_the_notification,
    a_deletion_before_the_release_date_cancels_the_held_copy,
)


@pytest.fixture(scope="module")
async def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, asyncio.Task[None]]]:
    """The scenarios of the selected tests, each started on its own stack as soon as that
    stack serves, so that their waits for the release dates overlap."""
    selected = {
        item.name
        for item in request.session.items
        if getattr(item, "module", None) is request.module
    }
    tasks: dict[str, asyncio.Task[None]] = {}
    stacks: list[LocalStack] = []
    try:
        for scenario in SCENARIOS:
            if f"test_{scenario.__name__}" in selected:
                stack = embargo_stack(Path(tmp_path_factory.mktemp("embargo")))
                stacks.append(await stack.__aenter__())
                tasks[scenario.__name__] = asyncio.create_task(scenario(stack))
        yield tasks
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await asyncio.gather(*(stack.stop() for stack in stacks))  # stopped all at once


async def test_filed_invisible_lifted_at_the_release_date_then_told(
    running: dict[str, asyncio.Task[None]],
) -> None:
    await running[filed_invisible_lifted_at_the_release_date_then_told.__name__]


async def test_a_refused_visibility_update_cancels_the_notification(
    running: dict[str, asyncio.Task[None]],
) -> None:
    await running[a_refused_visibility_update_cancels_the_notification.__name__]


async def test_a_deletion_before_the_release_date_cancels_the_held_copy(
    running: dict[str, asyncio.Task[None]],
) -> None:
    await running[a_deletion_before_the_release_date_cancels_the_held_copy.__name__]


async def test_a_dmp_outage_at_the_release_date_delays_the_update_and_the_notification(
    running: dict[str, asyncio.Task[None]],
) -> None:
    await running[a_dmp_outage_at_the_release_date_delays_the_update_and_the_notification.__name__]


async def test_a_replacement_after_the_lift_replaces_the_current_version(
    running: dict[str, asyncio.Task[None]],
) -> None:
    await running[a_replacement_after_the_lift_replaces_the_current_version.__name__]
