"""Fuzzing the door through the real gateway process and the whole pipeline (issue 15).

Hypothesis builds 1,000 messages from valid ones (a letter for a qualified patient, a lab
report, a letter for a provisional identity that will be held, a PDF) and breaks them:
bytes inserted or cut, separators repeated by the thousand, segments dropped or
doubled, MSH-11 changed, hostile CDAs (DOCTYPE, stylesheet, external reference), a
contradicting sex. Every message asks for the DMP reception acknowledgement.

What must hold: the gateway never crashes and answers every message; every AE/AR carries
an ERR; every AA ends delivered, held, or dead-lettered with the sender told (the
outcomes sink's ZAM or its audit), or on the test topic for MSH-11 T/D.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops.demo import samples
from ops.localstack import Landing, LocalStack, read_landing
from ops.ports import free_port
from relais.contracts import Codec
from relais.topics import TEST_DOCUMENTS
from tests.shared_data import shared

EXAMPLES = 1000
ACK_RECEPTION = b"OBX|9|CE|ACK_RECEPTION^^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
FRAMING = frozenset(b"\x0b\x1c")


@dataclass
class Fuzzed:
    port: int
    stack: LocalStack
    answers: list[tuple[str, str, bool]] = field(default_factory=list)  # MSA-1, MSA-2, ERR


@pytest.fixture(scope="module")
async def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fuzzed]:
    port = free_port()
    stack = LocalStack(
        Path(tmp_path_factory.mktemp("fuzz")),
        prefix=f"z{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        workers=(
            ("worker", "identity", "transcode", "route"),
            ("sink", "dmp"),
            ("sink", "outcomes"),
            ("mllp", "--host", "127.0.0.1", "--port", str(port)),
        ),
    )
    async with stack as local:
        yield Fuzzed(port, local)


def base(kind: int, control_id: str) -> bytes:
    doc_id = f"1.2.250.1.213.1.1.9.4343.{uuid.uuid4().int % 10**12}"
    if kind == 3:
        pdf = samples.minimal_pdf("compte rendu")
        raw = samples.hl7_message(samples.LAB, samples.DOMINIQUE, control_id, pdf, media="PDF")
    else:
        what, patient = [
            (samples.LETTER, samples.DOMINIQUE),
            (samples.LAB, samples.SARAH_LOU),
            (samples.LETTER, samples.UNQUALIFIED),
        ][kind]
        body = samples.cda(what, patient, doc_id, "document de test")
        raw = samples.hl7_message(what, patient, control_id, body)
    return raw + ACK_RECEPTION


def _with_cda(raw: bytes, change: Callable[[bytes], bytes]) -> bytes:
    """Re-encode OBX-5.5 after ``change`` on the decoded document (first document OBX)."""
    head, sep, rest = raw.partition(b"^Base64^")
    if not sep:
        return raw
    data, bar, tail = rest.partition(b"|")
    return head + sep + base64.b64encode(change(base64.b64decode(data))) + bar + tail


MUTATIONS: dict[str, Callable[[bytes, int, bytes], bytes]] = {
    "none": lambda raw, at, junk: raw,
    "insert": lambda raw, at, junk: raw[: at % len(raw)] + junk + raw[at % len(raw) :],
    "cut": lambda raw, at, junk: raw[: at % len(raw)] + raw[at % len(raw) + len(junk) + 1 :],
    "repeat-separator": lambda raw, at, junk: (
        raw[: at % len(raw)]
        + b"~^|&"[at % 4 : at % 4 + 1] * (at * 37 % 20000)
        + raw[at % len(raw) :]
    ),
    "drop-segment": lambda raw, at, junk: b"\r".join(
        s for i, s in enumerate(raw.split(b"\r")) if i != at % raw.count(b"\r") or i == 0
    ),
    "double-segment": lambda raw, at, junk: b"\r".join(
        [*raw.split(b"\r")[: at % raw.count(b"\r") + 1], *raw.split(b"\r")[at % raw.count(b"\r") :]]
    ),
    "processing-id": lambda raw, at, junk: raw.replace(
        b"|P|2.", b"|" + b"PTDX"[at % 4 : at % 4 + 1] + b"|2.", 1
    ),
    "doctype": lambda raw, at, junk: _with_cda(
        raw, lambda d: b"<!DOCTYPE a [<!ENTITY x 'y'>]>" + d
    ),
    "stylesheet": lambda raw, at, junk: _with_cda(
        raw,
        lambda d: d.replace(
            b"<ClinicalDocument",
            b'<?xml-stylesheet href="http://e.example/x"?><ClinicalDocument',
            1,
        ),
    ),
    "external-reference": lambda raw, at, junk: _with_cda(
        raw, lambda d: d.replace(b"</title>", b"</title><reference value='http://e.example/x'/>", 1)
    ),
    "sex": lambda raw, at, junk: raw.replace(b"|19790328|F|", b"|19790328|M|", 1),
}


def exchange(port: int, raw: bytes) -> bytes:
    """One blocking MLLP round trip: the ACK payload."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(b"\x0b" + raw + b"\x1c\r")
        answer = b""
        while b"\x1c\r" not in answer:
            chunk = conn.recv(65536)
            assert chunk, "the gateway closed the connection without an ACK"
            answer += chunk
    return answer.split(b"\x0b", 1)[-1].split(b"\x1c", 1)[0]


def msa(ack: bytes) -> tuple[str, str, bool]:
    segments = {s.split("|")[0]: s.split("|") for s in ack.decode("latin-1").split("\r") if s}
    fields = segments["MSA"]
    return fields[1], fields[2] if len(fields) > 2 else "", "ERR" in segments


def run_examples(fuzzed: Fuzzed) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        kind=st.integers(0, 3),
        mutation=st.sampled_from(sorted(MUTATIONS)),
        at=st.integers(0, 10**6),
        junk=st.binary(min_size=1, max_size=64).filter(lambda b: not FRAMING & set(b)),
    )
    def one(kind: int, mutation: str, at: int, junk: bytes) -> None:
        raw = MUTATIONS[mutation](base(kind, f"F{uuid.uuid4().hex[:15]}"), at, junk)
        raw = bytes(b for b in raw if b not in FRAMING)
        fuzzed.answers.append(msa(exchange(fuzzed.port, raw)))

    one()


async def test_a_thousand_hostile_messages_no_crash_every_answer_accounted_for(
    fuzzed: Fuzzed,
) -> None:
    await asyncio.to_thread(run_examples, fuzzed)
    gateway = next(p for p in fuzzed.stack.processes if p.name.startswith("mllp"))
    assert gateway.popen.poll() is None, "the gateway process died"
    assert len(fuzzed.answers) >= EXAMPLES
    assert all(err for code, _, err in fuzzed.answers if code in {"AE", "AR"})
    accepted = {control for code, control, _ in fuzzed.answers if code == "AA"}
    assert accepted, "no message of the fuzz run was accepted: the bases are broken"
    # the broker is up: every answer is final (an AR would make the sender resend for ever)
    assert {code for code, _, _ in fuzzed.answers} <= {"AA", "AE"}
    landing, tested = await _until_accounted(fuzzed, accepted)
    lost = _unaccounted(landing, tested, accepted)
    assert not lost, f"AA without an outcome: {[_explain(landing, c) for c in lost[:10]]}"


def _explain(landing: Landing, control: str) -> str:
    events = [
        a["event_id"]
        for a in landing.audits
        if a["action"] == "RECEIVED" and f"MSH-10 {control}\n" in a["detail"]
    ]
    trail = [
        f"{a['component']}:{a['action']}:{a['outcome']}"
        for a in landing.audits
        if a["event_id"] in events
    ]
    return f"{control}: {[landing.where(e) for e in events]} {trail}"


async def _until_accounted(fuzzed: Fuzzed, accepted: set[str]) -> tuple[Landing, set[str]]:
    """Read the outcomes until every AA is accounted for (read on as they come, the test
    topic again every 10 s), or 180 s have passed."""
    deadline = time.monotonic() + 180
    while True:
        tested = await _test_topic(fuzzed)
        landing = await read_landing(
            fuzzed.stack.broker.bootstrap,
            fuzzed.stack.prefix,
            until=lambda lan, tested=tested: not _unaccounted(lan, tested, accepted),
            timeout_s=10,
            settle_s=0,
        )
        if not _unaccounted(landing, tested, accepted) or time.monotonic() > deadline:
            return landing, tested


def _unaccounted(landing: Landing, tested: set[str], accepted: set[str]) -> list[str]:
    """The AA'd MSH-10 with a document neither delivered, held, dead-lettered and told, nor
    ignored as a copy of one already delivered."""
    told = {
        a["event_id"]
        for a in landing.audits
        if (a["component"] == "outcomes" and a["outcome"].startswith("sender-"))
        or a["action"] == "DUPLICATE_IGNORED"  # a resend of what was already delivered
    }
    received: dict[str, list[str]] = {}
    for audit in landing.audits:
        if audit["action"] == "RECEIVED":
            control = audit["detail"].split("MSH-10 ", 1)[1].split("\n", 1)[0]
            received.setdefault(control, []).append(audit["event_id"])
    lost = []
    for control in sorted(accepted - tested):
        events = received.get(control, [])
        if not events or not all(
            e in landing.delivered or e in landing.held or e in told for e in events
        ):
            lost.append(control)
    return lost


async def _test_topic(fuzzed: Fuzzed) -> set[str]:
    codec = Codec()
    consumer = AIOKafkaConsumer(
        TEST_DOCUMENTS.name(fuzzed.stack.prefix),
        bootstrap_servers=fuzzed.stack.broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: set[str] = set()
    try:
        for _ in range(5):
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                found |= {codec.decode(m.value)[1]["source"]["message_control_id"] for m in batch}
    finally:
        await consumer.stop()
    return found
