"""consumers.outcomes: every later outcome of an AA reaches its sender (pure cores)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from consumers.outcomes.core import (
    after_dead_letter,
    after_hold,
    open_original,
    ours,
    sent_of,
    unreached,
)
from consumers.outcomes.holds import HoldBook
from consumers.outcomes.reasons import REASONS, explain
from ops.demo.samples import DOMINIQUE, LAB, sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.audit_records import identity_released
from relais.contracts import Codec, Record
from relais.deadletter import Failure, Origin, dead_letter
from relais.keyring import Keyring

KEYRING = Keyring.generate("k-outcomes")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CODEC = Codec()
FLAGS = ("DESTDMP", "DESTMSSANTEPS", "DESTMSSANTEPAT", "ACK_RECEPTION", "ACK_LECTURE_MSS")


def submitted(flags: dict[str, bool] | None = None) -> Record:
    [record] = submissions(
        parse_message(sample(LAB, DOMINIQUE, 7)), sector="LAB", keyring=KEYRING, now=NOW
    )
    if flags is not None:
        record["hints"] = {**record["hints"], "flags": flags}
    return record


def letter(original: Record, record_type: str, *, stage: str, code: str) -> Record:
    """A dead letter as the bus carries it: the original sealed, the whole Avro round-tripped."""
    made = dead_letter(
        KEYRING,
        stage=stage,
        failure=Failure(code, f"{code}: what to fix"),
        origin=Origin("t.documents.submitted.v1", 1, 7),
        original=CODEC.encode(record_type, original),
        now=NOW,
    )
    return CODEC.decode(CODEC.encode("DeadLetter", made))[1]


def zam_fields(ack: Record) -> dict[str, list[str]]:
    segments = ack["message"].decode().strip("\r").split("\r")
    return {
        s.split("|")[0] + (s.split("|")[1] if s.startswith("OBX") else ""): s.split("|")
        for s in segments
    }


def told_for(
    flags: dict[str, bool], *, stage: str = "transcode", code: str = "cda-header-invalid"
) -> Any:
    record = submitted(flags)
    dead = letter(record, "DocumentSubmitted", stage=stage, code=code)
    return after_dead_letter(dead, open_original(dead, KEYRING, CODEC), NOW)


@given(st.dictionaries(st.sampled_from(FLAGS), st.booleans()))
def test_each_destination_asked_and_not_reached_gets_its_zam_n_when_acks_are_asked(
    flags: dict[str, bool],
) -> None:
    told = told_for(flags)
    dmp = flags.get("DESTDMP", True)  # DESTDMP is on unless the producer says N
    mss = [d for d in ("DESTMSSANTEPS", "DESTMSSANTEPAT") if flags.get(d, False)]
    z01 = ["Z01"] if dmp and flags.get("ACK_RECEPTION", False) else []
    z02_asked = flags.get("ACK_RECEPTION", False) or flags.get("ACK_LECTURE_MSS", False)
    z02 = ["Z02"] * len(mss) if z02_asked else []
    assert [a["kind"] for a in told.acks] == z01 + z02
    for ack in told.acks:
        assert not ack["accepted"]
        fields = zam_fields(ack)
        assert fields["OBX1"][5] == "N^^expandedYes-NoIndicator"
        assert fields["OBX1"][4] == ack["original_control_id"] == "DEMO115022000007"
        assert fields["ERR"][3].startswith("207^")
        assert fields["ERR"][5] == "cda-header-invalid^En-tete CDA non conforme CI-SIS^99RELAIS"
        assert "CI-SIS rules" in fields["ERR"][8]
        assert fields["MSH"][4:6] == ["DEMO-SIS", "RELAIS-DEMO"]
    # always audited, with or without a ZAM
    audit = told.audit
    assert audit["component"] == "outcomes"
    assert audit["action"] == ("ACKNOWLEDGED" if told.acks else "OTHER")
    assert audit["outcome"].endswith(":cda-header-invalid")
    assert "DEMO115022000007" in audit["detail"]
    assert DOMINIQUE.family not in audit["detail"]
    assert DOMINIQUE.ins not in audit["detail"]


def test_ids_are_deterministic_so_a_replay_writes_the_same_zam() -> None:
    flags = {"ACK_RECEPTION": True, "DESTMSSANTEPAT": True}
    record = submitted(flags)
    dead = letter(record, "DocumentSubmitted", stage="transcode", code="cda-not-well-formed")
    first = after_dead_letter(dead, open_original(dead, KEYRING, CODEC), NOW)
    again = after_dead_letter(dead, open_original(dead, KEYRING, CODEC), NOW)
    assert first is not None
    assert again is not None
    assert [a["ack_id"] for a in first.acks] == [a["ack_id"] for a in again.acks]
    assert [a["message"] for a in first.acks] == [a["message"] for a in again.acks]
    assert len({a["ack_id"] for a in first.acks}) == 2  # Z01 and Z02: each its own id
    assert first.audit["audit_id"] == again.audit["audit_id"]


def test_an_operator_rejection_and_an_expiry_reach_the_sender_as_zam_n() -> None:
    # the identity stage's dead letters: the held DocumentSubmitted, from documents.submitted
    for code, words in (("identity-rejected", "identity officer"), ("identity-expired", "expired")):
        told = told_for({"ACK_RECEPTION": True}, stage="identity", code=code)
        [ack] = told.acks
        assert ack["kind"] == "Z01"
        err = zam_fields(ack)["ERR"]
        assert err[4] == "E"
        assert err[5].startswith(f"{code}^")
        assert words in err[8]
        assert told.reason_code == code


def test_what_was_answered_elsewhere_is_not_told_twice() -> None:
    assert not ours("mllp", "hl7-invalid")  # AE/AR at the door
    assert not ours("dmp-sink", "dmp-rejected")  # the DMP sink sent its ZAM N
    assert not ours("dmp-sink", "document-id-reused")
    assert not ours("ack-forwarder", "no-ack-route")  # a ZAM about a ZAM would loop
    assert not ours("outcomes", "undecodable-record")
    assert ours("dmp-sink", "undecryptable-field")  # given up before the DMP: no ZAM yet
    record = submitted({"ACK_RECEPTION": True})
    dead = letter(record, "DocumentSubmitted", stage="dmp-sink", code="dmp-rejected")
    assert after_dead_letter(dead, record, NOW) is None


def test_a_delivery_request_names_its_one_destination() -> None:
    record = submitted({"ACK_RECEPTION": True, "DESTMSSANTEPS": True})
    request = {**record, "destination": "MSSANTE", "flags": record["hints"]["flags"]}
    del request["hints"]
    sent = sent_of(request)
    assert sent is not None
    assert [d.kind for d in unreached(sent)] == ["Z02"]
    assert unreached(sent_of({**request, "destination": "NOTIFY"})) == ()  # type: ignore[arg-type]
    assert [d.kind for d in unreached(sent_of({**request, "destination": "DMP"}))] == ["Z01"]  # type: ignore[arg-type]


def test_a_hold_is_told_at_once_and_once_more_when_still_held() -> None:
    held = {
        **submitted({"ACK_RECEPTION": True}),
        "held_at": NOW,
        "reason_code": "ins-traits-inconsistent",
    }
    first = after_hold(held, NOW)
    reminder = after_hold(held, NOW + timedelta(days=1), reminder=True)
    assert first is not None
    assert reminder is not None
    [ack], [again] = first.acks, reminder.acks
    assert ack["ack_id"] != again["ack_id"]
    err, err_again = zam_fields(ack)["ERR"], zam_fields(again)["ERR"]
    assert err[4] == err_again[4] == "W"  # not final: it may still be delivered
    assert err[5].startswith("identity-held^")
    assert err_again[5].startswith("identity-still-held^")
    assert "ins-traits-inconsistent" in err[8]
    assert "ADT" in err[8]

    book = HoldBook(reminder_s=3600)
    book.held(held)
    book.held({**held, "event_id": "released-one"})
    assert book.due(NOW + timedelta(minutes=59)) == []
    book.gone("released-one")  # qualified and gone on: no reminder
    assert [r["event_id"] for r in book.due(NOW + timedelta(hours=1))] == [held["event_id"]]
    assert book.due(NOW + timedelta(days=2)) == []  # once


def test_a_release_is_read_from_the_identity_stage_audit() -> None:
    base = {"component": "identity", "action": "IDENTITY_DECIDED", "event_id": "e"}
    assert identity_released({**base, "outcome": "qualified:QUAL"})
    assert not identity_released({**base, "outcome": "held:identity-not-qualified"})
    assert not identity_released({**base, "component": "route", "outcome": "qualified:QUAL"})


def test_every_reason_has_an_actionable_ascii_text_and_unknown_ones_name_the_dead_letter() -> None:
    for code, why in REASONS.items():
        assert why.code == code
        assert why.text.isascii()
        assert why.label.isascii()
    unknown = explain("internal-error", "route", "dl-42")
    assert "route" in unknown.text
    assert "dl-42" in unknown.text
