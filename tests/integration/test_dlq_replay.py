"""`relais dlq` and `relais trace` against a real pipeline: a document dead-lettered because
the workers' keyring missed the producer's new key is listed, shown without patient data,
replayed too early (dead-lettered again), replayed after the fix (delivered once), and
replayed once more without a second delivery; its trace tells the whole story in order."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops.demo.samples import LAB, SARAH_LOU, sample
from ops.localstack import Landing, LocalStack, read_landing
from producers.publisher import Publisher
from relais.deadletter import Failure


@pytest.fixture(scope="module")
async def dlq_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("dlq")), prefix=f"q{uuid.uuid4().hex[:8]}"
    ) as local:
        yield local


async def relais(stack: LocalStack, *args: str, timeout_s: float = 180) -> tuple[int, str, str]:
    """Run the real command line against the stack; (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        *args,
        env=stack.environment(0),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def dead_for(landing: Landing, reason: str) -> list[dict]:
    return [d for d in landing.dead if d["reason_code"] == reason]


async def test_dead_letter_fixed_replayed_delivered_once_and_traced(dlq_stack: LocalStack) -> None:
    stack, s = dlq_stack, dlq_stack.settings
    # The producer rotated its key; the workers' keyring file was not updated.
    rotated = stack.keyring.rotated()
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=rotated, topic_prefix=s.kafka.prefix
    ) as publisher:
        [event_id] = await publisher.submit_lab_result(sample(LAB, SARAH_LOU, 41))
        # and a message the MLLP gateway refused: dead-lettered, but from no topic
        await publisher.dead_letter(
            b"MSH|^~\\&|SGL|LABO|RELAIS|X|20260302||ORU^R01|M-9|P|2.5\rPID|||x",
            stage="mllp",
            failure=Failure("hl7-invalid", "PID-3 is missing"),
        )
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        until=lambda got: bool(dead_for(got, "undecryptable-field")),
        timeout_s=60,
    )
    [letter] = dead_for(landing, "undecryptable-field")
    assert letter["stage"] == "identity"
    dl_id = letter["dead_letter_id"]

    # list: filtered by stage, reason and sector; the event id comes from the original
    code, out, _ = await relais(
        stack, "dlq", "list", "--stage", "ident*", "--reason", "undecryptable-field",
        "--sector", "LAB", "--since", "1h", "--json",
    )  # fmt: skip
    assert code == 0
    [row] = json.loads(out)
    assert (row["dead_letter_id"], row["event_id"], row["sector"]) == (dl_id, event_id, "LAB")
    assert row["replays"] == 0
    assert row["document_unique_id"]
    code, out, _ = await relais(stack, "dlq", "list", "--sector", "RADIOLOGY")
    assert (code, out.strip()) == (0, "no dead letter matches")

    # show: the reason and the ids, never the patient
    code, out, _ = await relais(stack, "dlq", "show", dl_id[:8])
    assert code == 0
    assert "undecryptable-field" in out
    assert event_id in out
    assert SARAH_LOU.family not in out
    assert SARAH_LOU.ins not in out
    assert "<hidden: patient identity (--reveal to show)>" in out

    # replayed before the fix: it fails again, and says so
    code, out, _ = await relais(stack, "dlq", "replay", dl_id, "--wait", "60", "--by", "ops")
    assert code == 1, out
    assert "sent back to" in out
    assert "dead-lettered again by identity: undecryptable-field" in out

    # the fix: the workers get the new keyring and restart (the four at once)
    stack.keyring = rotated
    rotated.write(s.keys.file)
    old = [stack.process(name) for name in ("identity", "transcode", "route", "sink-dmp")]
    await asyncio.gather(*(stack.replace(process) for process in old))
    await stack.wait_for_metrics()

    # a dead letter replayed before is refused without --again
    code, out, _ = await relais(stack, "dlq", "replay", dl_id, "--by", "ops")
    assert code == 1
    assert "NOT SENT: already replayed 1 time(s)" in out

    code, out, err = await relais(
        stack, "dlq", "replay", dl_id, "--again", "--wait", "90", "--by", "ops"
    )
    assert code == 0, out + err
    assert "DMP delivered" in out
    unique_id = row["document_unique_id"]
    assert stack.sandbox.submissions[unique_id] == 1

    # once more: the sink's ledger does not deliver it twice
    code, out, err = await relais(
        stack, "dlq", "replay", dl_id, "--again", "--wait", "60", "--by", "ops", "--json"
    )
    assert code == 0, out + err
    [report] = json.loads(out)
    assert "DMP delivered (already done before: not sent again)" in report["outcomes"]
    assert stack.sandbox.submissions[unique_id] == 1

    # the MLLP dead letter cannot be sent back: it came from no topic
    code, out, _ = await relais(stack, "dlq", "replay", "--stage", "mllp")
    assert code == 1
    assert "NOT SENT: it came from mllp" in out
    assert "ask the sender to send it again" in out

    # now that the keyring holds the key, --reveal opens the identity (and only then)
    code, out, _ = await relais(stack, "dlq", "show", dl_id, "--reveal")
    assert code == 0
    assert SARAH_LOU.family in out

    # the trace: the whole story, in order, without patient data
    code, out, _ = await relais(stack, "trace", event_id, "--json")
    assert code == 0
    steps = json.loads(out)["steps"]
    story = [(st["component"], st["action"]) for st in steps]
    assert story[0] == ("producer", "RECEIVED")
    assert story[1] == ("identity", "DEAD_LETTERED")
    assert story[2] == ("dlq", "REPLAYED")
    assert story[3] == ("identity", "DEAD_LETTERED")
    after_fix = story[4:]
    assert after_fix[:5] == [
        ("dlq", "REPLAYED"),
        ("identity", "IDENTITY_DECIDED"),
        ("transcode", "TRANSCODED"),
        ("route", "ROUTED"),
        ("dmp-sink", "DELIVERED"),
    ]
    assert ("dlq", "REPLAYED") in after_fix[5:]
    assert json.loads(out)["destinations"]["DMP"] == "DELIVERED"
    code, text, _ = await relais(stack, "trace", unique_id)
    assert code == 0
    assert "DMP: DELIVERED" in text
    assert SARAH_LOU.family not in text
    assert SARAH_LOU.ins not in text
    code, _, err = await relais(stack, "trace", "no-such-document")
    assert code == 1
    assert "nothing is known about no-such-document" in err
