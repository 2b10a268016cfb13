"""Issue 15, "One typo blocks everyone, forever": the processor and the operators' commands.

A dict for the table and a fake INSi (as in test_identity_processor); the same
processor and operations run inside the identity worker.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ops.demo.samples import DOMINIQUE, LAB, Patient, sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec, Record
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from relais.topics import AUDIT, DEADLETTER, IDENTITY_ALERTS, IDENTITY_PENDING, QUALIFIED
from streams.identity.operations import Operations, on_command
from streams.identity.processor import IdentityProcessor
from streams.identity.rules import InsiOutcome
from streams.stage import Output

KEYRING = Keyring.generate()
CODEC = Codec()
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
OPS = Operations("t", KEYRING, hold_expiry_s=7 * 86400)
TYPO = replace(DOMINIQUE, family="PAT-TROYS")  # one letter off in PID-5


async def _insi(traits: Any) -> InsiOutcome:
    return InsiOutcome("00")


def processor() -> IdentityProcessor:
    return IdentityProcessor({}, keyring=KEYRING, verify=_insi, consistency=lambda _: [])


def document(patient: Patient, n: int, facility: str) -> tuple[Record, bytes]:
    raw = sample(LAB, patient, n).replace(b"|RELAIS-DEMO|", f"|{facility}|".encode(), 1)
    [record] = submissions(parse_message(raw), sector="LAB", keyring=KEYRING, now=NOW)
    return record, CODEC.encode("DocumentSubmitted", record)


def command(key: str, action: str, *event_ids: str, n: int = 1) -> Record:
    return {
        "event_id": f"cmd-{action}-{n}",
        "at": NOW,
        "patient_key": key,
        "action": action,
        "operator": "dr.vigilance",
        "event_ids": list(event_ids),
        "comment": None,
    }


def on(outputs: list[Output], topic: Any) -> list[Record]:
    return [o.record for o in outputs if o.topic == topic]


async def send(
    proc: IdentityProcessor, doc: tuple[Record, bytes], at: datetime = NOW
) -> list[Output]:
    outputs = await proc.on_document(doc[0], doc[1], at)
    proc.commit()
    return outputs


async def blocked_by_a_typo() -> tuple[IdentityProcessor, str, Record]:
    """LABO-B sent the reference identity; LABO-A then sent it with a typo: blocked."""
    proc = processor()
    assert on(await send(proc, document(DOMINIQUE, 1, "LABO-B")), QUALIFIED)
    typo = document(TYPO, 2, "LABO-A")
    outputs = await send(proc, typo)
    assert on(outputs, IDENTITY_ALERTS)[0]["reason_code"] == "same-ins-different-traits"
    return proc, typo[0]["patient"]["patient_key"], typo[0]


async def test_one_typo_blocks_its_sender_not_the_senders_that_agree() -> None:
    proc, key, _ = await blocked_by_a_typo()
    assert on(await send(proc, document(DOMINIQUE, 3, "LABO-B")), QUALIFIED)  # B goes on
    [held] = on(await send(proc, document(DOMINIQUE, 4, "LABO-A")), IDENTITY_PENDING)
    assert held["reason_code"] == "behind-held-documents"  # A waits until corrected
    [other] = on(await send(proc, document(TYPO, 5, "LABO-C")), IDENTITY_PENDING)
    assert other["reason_code"] == "identity-blocked"  # the typo's traits, from anyone
    state = proc.state(key)
    assert state.blocked_senders == ("LABO-A", "LABO-C")
    assert state.blocked_at_ms == int(NOW.timestamp() * 1000)


async def test_one_typo_release_by_an_operator_sends_it_on_and_keeps_the_reference() -> None:
    proc, key, typo = await blocked_by_a_typo()
    reference = proc.state(key).traits_digest
    outputs = await on_command(proc, command(key, "RELEASE", typo["event_id"]), NOW, OPS)
    proc.commit()
    assert [r["event_id"] for r in on(outputs, QUALIFIED)] == [typo["event_id"]]
    audits = on(outputs, AUDIT)
    assert {a["outcome"] for a in audits} >= {"identity-operation:released-by-operator"}
    assert all("operator dr.vigilance" in a["detail"] for a in audits)
    state = proc.state(key)
    assert state.held == ()
    assert state.traits_digest == reference
    assert state.blocked  # releasing documents is not unblocking the patient


async def test_one_typo_reject_dead_letters_the_held_document_with_its_original() -> None:
    proc, key, typo = await blocked_by_a_typo()
    held_bytes = proc.state(key).held[0].value
    outputs = await on_command(proc, command(key, "REJECT"), NOW, OPS)
    proc.commit()
    [letter] = on(outputs, DEADLETTER)
    assert (letter["stage"], letter["reason_code"]) == ("identity", "identity-rejected")
    assert letter["source_topic"] == "t.documents.submitted.v1"
    assert letter["event_id"] == typo["event_id"]
    assert "dr.vigilance" in letter["reason"]
    original = open_envelope(
        KEYRING,
        Envelope.from_record(letter["original"]),
        event_id=letter["dead_letter_id"],
        purpose="original",
    )
    assert original == held_bytes
    assert proc.state(key).held == ()
    # a replay of the command finds nothing more to reject
    again = await on_command(proc, command(key, "REJECT"), NOW, OPS)
    assert on(again, DEADLETTER) == []


async def test_one_typo_unblock_after_correction_releases_what_agrees() -> None:
    proc, key, typo = await blocked_by_a_typo()
    later = document(DOMINIQUE, 3, "LABO-A")
    await send(proc, later)  # A's corrected document waits behind the typo
    await on_command(proc, command(key, "REJECT", typo["event_id"]), NOW, OPS)
    proc.commit()
    outputs = await on_command(proc, command(key, "UNBLOCK", n=2), NOW, OPS)
    proc.commit()
    assert [r["event_id"] for r in on(outputs, QUALIFIED)] == [later[0]["event_id"]]
    assert proc.state(key).blocked is None
    assert any(a["outcome"].startswith("identity-operation:unblocked") for a in on(outputs, AUDIT))


async def test_one_typo_unblock_with_the_typo_still_held_blocks_again() -> None:
    proc, key, _ = await blocked_by_a_typo()
    outputs = await on_command(proc, command(key, "UNBLOCK"), NOW, OPS)
    assert on(outputs, IDENTITY_ALERTS)  # never guessed: the contradiction is still there
    assert proc.state(key).blocked == "same-ins-different-traits"


async def test_one_typo_held_documents_expire_instead_of_waiting_forever() -> None:
    proc, key, typo = await blocked_by_a_typo()
    young = document(DOMINIQUE, 3, "LABO-A")
    await send(proc, young, NOW + timedelta(days=6))
    expire = command(key, "EXPIRE")
    outputs = await on_command(proc, expire, NOW + timedelta(days=7, seconds=1), OPS)
    proc.commit()
    [letter] = on(outputs, DEADLETTER)
    assert (letter["event_id"], letter["reason_code"]) == (typo["event_id"], "identity-expired")
    assert [h.event_id for h in proc.state(key).held] == [young[0]["event_id"]]
