"""`relais trace` on the shared pipeline: a delivered document with its DMP acknowledgement,
and a broken one dead-lettered by transcode, each told in order from the audit topic."""

from __future__ import annotations

import asyncio
import base64
import json
import sys

from ops.demo.samples import LAB, SARAH_LOU, sample
from ops.localstack import LocalStack, read_landing
from producers.hl7.message import parse_message
from producers.publisher import Publisher

ASK_Z01 = (
    b"OBX|3|CE|ACK_RECEPTION^Accuse de reception^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
)


def broken(n: int) -> bytes:
    good = sample(LAB, SARAH_LOU, n)
    cda = parse_message(good).documents[0].content
    bad = base64.b64encode(b"<ClinicalDocument xmlns='urn:hl7-org:v3'><id root='1'>")
    return good.replace(base64.b64encode(cda), bad)


async def trace(stack: LocalStack, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops", "trace", *args,
        env=stack.environment(0),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_trace_tells_each_document_in_order(stack: LocalStack) -> None:
    s = stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        [good] = await publisher.submit_lab_result(sample(LAB, SARAH_LOU, 71) + ASK_Z01)
        # escaped the door (an older producer, a replay): transcode still dead-letters it
        [bad] = await publisher.publish_message(parse_message(broken(72)), sector="LAB")
    await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        until=lambda got: good in got.delivered and any(d["event_id"] == bad for d in got.dead),
        timeout_s=90,
    )

    code, out, _ = await trace(stack, good, "--json")
    assert code == 0
    found = json.loads(out)
    story = [(st["branch"], st["component"], st["action"]) for st in found["steps"]]
    assert story[:4] == [
        ("document", "producer", "RECEIVED"),
        ("document", "identity", "IDENTITY_DECIDED"),
        ("document", "transcode", "TRANSCODED"),
        ("document", "route", "ROUTED"),
    ]
    assert ("DMP", "dmp-sink", "DELIVERED") in story[4:]
    assert ("DMP", "dmp-sink", "ACKNOWLEDGED") in story[4:]
    assert len(story) == len(set(story))  # status and ack on their topics are not repeated
    assert found["destinations"]["DMP"] == "DELIVERED"
    received = found["steps"][0]
    assert "MSH-10" in received["detail"]
    assert found["steps"][1]["outcome"] == "qualified:QUAL"
    times = [st["at"] for st in found["steps"]]
    assert times == sorted(times)
    [unique_id] = found["document_unique_ids"]

    code, text, _ = await trace(stack, unique_id)  # by document id: the same journey
    assert code == 0
    assert text.splitlines()[0] == f"journey of {unique_id} (event {good})"
    assert "ZAM^Z01:accepted" in text
    assert SARAH_LOU.family not in text
    assert SARAH_LOU.ins not in text

    code, out, _ = await trace(stack, bad, "--json")
    assert code == 0
    steps = json.loads(out)["steps"]
    assert [(st["component"], st["action"], st["outcome"]) for st in steps][-1] == (
        "transcode",
        "DEAD_LETTERED",
        "cda-not-well-formed",
    )
    assert [st["action"] for st in steps][:2] == ["RECEIVED", "IDENTITY_DECIDED"]
    assert json.loads(out)["destinations"] == {}
