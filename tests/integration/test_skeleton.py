"""One document (and a few bad ones) through every stage, on the real broker."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

from aiokafka import AIOKafkaProducer
from lxml import etree

from ops.demo.samples import (
    DOMINIQUE,
    IMAGING,
    LAB,
    LETTER,
    SARAH_LOU,
    UNQUALIFIED,
    pdf_sample,
    sample,
)
from ops.localstack import Landing, LocalStack, read_landing, scrape
from producers.hl7.message import parse_message
from producers.publisher import Publisher
from producers.submission import patient_key
from relais.envelope import Envelope, open_envelope
from relais.topics import SUBMITTED

GARBAGE = b"\x00\x01 this is not an Avro record \xff"


def broken_cda_message() -> bytes:
    good = sample(
        LAB, SARAH_LOU, 90
    )  # not DOMINIQUE: her later documents queue behind her held one
    cda = parse_message(good).documents[0].content
    broken = base64.b64encode(b"<ClinicalDocument xmlns='urn:hl7-org:v3'><id root='1'>").decode()
    return good.replace(base64.b64encode(cda), broken.encode())


def ours(landing: Landing, broken_id: str) -> list[dict[str, Any]]:
    """This test's dead letters: the broken CDA's, and the undecodable record's (no event)."""
    return [
        letter
        for letter in landing.dead
        if letter["event_id"] == broken_id
        or (letter["stage"] == "identity" and letter["reason_code"] == "undecodable-record")
    ]


def counters(stack: LocalStack) -> dict[str, dict[str, float]]:
    """Every worker's metrics now: the stack is shared, so the test counts its own part."""
    return {name: scrape(stack.process(name).metrics_port) for name in WORKERS}


WORKERS = ("identity", "transcode", "route", "sink-dmp")


async def test_documents_travel_end_to_end_and_bad_input_is_dead_lettered(
    stack: LocalStack,
) -> None:
    s = stack.settings
    before = counters(stack)
    good_inputs = [
        sample(LAB, DOMINIQUE, 1),
        sample(IMAGING, SARAH_LOU, 2),
        sample(LETTER, DOMINIQUE, 3),
    ]
    last_input = sample(LAB, SARAH_LOU, 4)
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        good_ids = [
            (await publisher.submit_lab_result(good_inputs[0]))[0],
            (await publisher.submit_imaging_report(good_inputs[1]))[0],
            (await publisher.submit_hospital_document(good_inputs[2]))[0],
        ]
        pdf_input = pdf_sample(IMAGING, SARAH_LOU, 6)
        pdf_id = (await publisher.submit_imaging_report(pdf_input))[0]
        held_id = (await publisher.submit_lab_result(sample(LAB, UNQUALIFIED, 5)))[0]
        # escaped the door (an older producer, a replay): transcode still dead-letters it
        broken = parse_message(broken_cda_message())
        broken_id = (await publisher.publish_message(broken, sector="LAB"))[0]
        # An undecodable record on the same partition as the next document:
        # the identity stage must dead-letter it and go on.
        raw = AIOKafkaProducer(bootstrap_servers=s.kafka.bootstrap, acks="all")
        await raw.start()
        key = patient_key(stack.keyring, parse_message(last_input)).encode()
        await raw.send_and_wait(SUBMITTED.name(s.kafka.prefix), GARBAGE, key=key)
        await raw.stop()
        last_id = (await publisher.submit_lab_result(last_input))[0]

    delivered = {*good_ids, last_id, pdf_id}

    def complete(landing: Landing) -> bool:
        return (
            delivered <= set(landing.delivered)
            and held_id in landing.held
            and len(ours(landing, broken_id)) >= 2
        )

    landing = await read_landing(s.kafka.bootstrap, s.kafka.prefix, until=complete, timeout_s=120)

    # Delivered: each good document is in the DMP sandbox, byte for byte.
    for event_id, raw_message in zip([*good_ids, last_id], [*good_inputs, last_input], strict=True):
        status = landing.delivered[event_id]
        assert status["outcome"] == "DELIVERED"
        content = parse_message(raw_message).documents[0].content
        filed = stack.sandbox.content[status["document_unique_id"]]
        assert hashlib.sha256(filed).hexdigest() == hashlib.sha256(content).hexdigest()

    # A PDF imaging report was wrapped as a CDA N1 that carries the same PDF.
    status = landing.delivered[pdf_id]
    assert status["outcome"] == "DELIVERED"
    filed_cda = etree.fromstring(stack.sandbox.content[status["document_unique_id"]])
    [b64] = filed_cda.xpath("//v3:nonXMLBody/v3:text/text()", namespaces={"v3": "urn:hl7-org:v3"})
    pdf = parse_message(pdf_input).documents[0].content
    assert hashlib.sha256(base64.b64decode(b64)).hexdigest() == hashlib.sha256(pdf).hexdigest()

    # Held: the unqualified identity waits with its reason.
    assert landing.held[held_id]["reason_code"] == "identity-not-qualified"
    assert landing.held[held_id]["identity_status"] == "PROV"

    # Dead letters: stage, reason, original bytes.
    by_stage = {letter["stage"]: letter for letter in ours(landing, broken_id)}
    garbage_letter = by_stage["identity"]
    assert garbage_letter["reason_code"] == "undecodable-record"
    assert "not an Avro single-object encoded record" in garbage_letter["reason"]
    original = open_envelope(
        stack.keyring,
        Envelope.from_record(garbage_letter["original"]),
        event_id=garbage_letter["dead_letter_id"],
        purpose="original",
    )
    assert original == GARBAGE
    assert garbage_letter["source_offset"] is not None
    cda_letter = by_stage["transcode"]
    assert cda_letter["event_id"] == broken_id
    assert cda_letter["reason_code"] == "cda-not-well-formed"

    # Nothing lost, nothing doubled: 8 in = 5 delivered + 1 held + 2 dead letters (the
    # stack is shared with other tests: this test's documents, filed once each).
    assert len(delivered) == 5
    assert len(ours(landing, broken_id)) == 2
    filed = [landing.delivered[e]["document_unique_id"] for e in delivered]
    assert [stack.sandbox.submissions[unique_id] for unique_id in filed] == [1] * 5
    assert landing.doubled() == []

    # Metrics, scraped from each worker process: what this test's documents added.
    after = counters(stack)
    identity, transcode, route, sink = (
        {name: value - before[worker].get(name, 0.0) for name, value in after[worker].items()}
        for worker in WORKERS
    )
    assert identity['relais_stage_records_in_total{stage="identity"}'] == 8
    assert (
        identity['relais_stage_records_failed_total{reason="undecodable-record",stage="identity"}']
        == 1
    )
    assert identity['relais_deadletters_total{reason="undecodable-record",stage="identity"}'] == 1
    assert identity['relais_stage_processing_seconds_count{stage="identity"}'] == 8
    qualified = f'relais_stage_records_out_total{{stage="identity",topic="{s.kafka.prefix}.documents.qualified.v1"}}'
    assert identity[qualified] == 6
    assert transcode['relais_stage_records_in_total{stage="transcode"}'] == 6
    assert (
        transcode[
            'relais_stage_records_failed_total{reason="cda-not-well-formed",stage="transcode"}'
        ]
        == 1
    )
    assert route['relais_stage_records_in_total{stage="route"}'] == 5
    assert sink['relais_stage_records_in_total{stage="dmp-sink"}'] == 5
    assert sink['relais_deliveries_total{destination="DMP",outcome="DELIVERED"}'] == 5
    # every process is alive and ready: broker reachable, INSi and the DMP answering
    for process in stack.processes:
        base = f"http://127.0.0.1:{process.metrics_port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as alive:
            assert alive.status == 200
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as ready:
            checks = json.loads(ready.read())["checks"]
        assert ready.status == 200, (process.name, checks)
        assert checks["broker"]["ok"] is True
        dependency = {"identity": "insi", "sink-dmp": "dmp"}.get(process.name)
        assert dependency is None or checks[dependency]["ok"] is True, (process.name, checks)


async def test_explain_says_which_rules_decided(stack: LocalStack) -> None:
    """`relais explain` on an imaging report filed by the test above: the 15-day rule."""
    s = stack.settings
    imaging = next(f for f in stack.sandbox.filed.values() if f.type_code == "18748-4")
    env = {
        **os.environ,
        "RELAIS_BOOTSTRAP_SERVERS": s.kafka.bootstrap,
        "RELAIS_TOPIC_PREFIX": s.kafka.prefix,
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ops", "explain", imaging.unique_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "route: ROUTED -> DMP" in result.stdout
    assert "rule imaging-report-delay" in result.stdout
    missing = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ops", "explain", "no-such-document"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert "no audit record for no-such-document" in missing.stderr
