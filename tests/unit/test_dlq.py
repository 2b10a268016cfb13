"""ops.dlq.letters: a dead letter's view, filters, listing, and showing without patient data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ops.demo.samples import DOMINIQUE, LAB, sample
from ops.dlq.letters import (
    LetterFilter,
    LetterView,
    count_lines,
    describe,
    hl7_header,
    list_lines,
    masked,
    parse_when,
    select,
    show_lines,
)
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec, Record
from relais.deadletter import Failure, Origin, dead_letter
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring

KEYRING = Keyring.generate("k-dlq")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CODEC = Codec()
HL7 = sample(LAB, DOMINIQUE, 7)


def submitted() -> Record:
    [record] = submissions(parse_message(HL7), sector="LAB", keyring=KEYRING, now=NOW)
    return record


def letter_of(
    original: bytes,
    *,
    stage: str = "identity",
    code: str = "undecryptable-field",
    origin: Origin | None = None,
    at: datetime = NOW,
) -> Record:
    return dead_letter(
        KEYRING,
        stage=stage,
        failure=Failure(code, f"{code}: what to fix"),
        origin=origin or Origin("t.documents.submitted.v1", 2, 41),
        original=original,
        now=at,
    )


def view_of(original: bytes, **kwargs: Any) -> LetterView:
    letter = CODEC.decode(CODEC.encode("DeadLetter", letter_of(original, **kwargs)))[1]
    plain = open_envelope(
        KEYRING,
        Envelope.from_record(letter["original"]),
        event_id=letter["dead_letter_id"],
        purpose="original",
    )
    return describe(letter, key=b"patient-key", original=plain, codec=CODEC)


def opener(envelope: Any, event_id: str, purpose: str) -> bytes:
    return open_envelope(
        KEYRING, Envelope.from_record(envelope), event_id=event_id, purpose=purpose
    )


def test_the_original_tells_what_the_dead_letter_does_not() -> None:
    record = submitted()
    view = view_of(CODEC.encode("DocumentSubmitted", record))
    assert view.event_id == record["event_id"]  # the identity stage's letters carry none
    assert view.record_type == "DocumentSubmitted"
    assert view.sector == "LAB"
    assert view.document_unique_id == record["document"]["unique_id"]
    assert view.facility == record["source"]["facility"]
    assert view.key == b"patient-key"
    assert view.source_topic == "t.documents.submitted.v1"
    assert (view.source_partition, view.source_offset) == (2, 41)


def test_an_unopened_original_leaves_the_view_with_what_the_letter_says() -> None:
    letter = letter_of(b"whatever")
    view = describe(letter, key=None, original=None, problem="key 'k-x' is not in the keyring")
    assert view.event_id is None
    assert view.sector is None
    lines = show_lines(view, [])
    assert lines[-1] == "the original cannot be opened: key 'k-x' is not in the keyring"


def test_show_hides_identity_and_content_unless_revealed() -> None:
    record = submitted()
    view = view_of(CODEC.encode("DocumentSubmitted", record))
    shown = "\n".join(
        show_lines(view, ["2026-03-02 11:00:00Z by ops: to t.x partition 0 offset 1"])
    )
    assert DOMINIQUE.family not in shown
    assert DOMINIQUE.ins not in shown
    assert record["patient"]["patient_key"] not in shown
    assert "<hidden: patient identity (--reveal to show)>" in shown
    assert "<sealed content:" in shown
    assert "--reveal shows them" in shown
    assert record["document"]["unique_id"] in shown
    assert "replayed      2026-03-02 11:00:00Z by ops" in shown

    revealed = "\n".join(show_lines(view, [], reveal=True, opener=opener))
    assert DOMINIQUE.family in revealed  # the identity traits, opened
    assert "ClinicalDocument" in revealed  # the CDA content, opened


def test_an_hl7_original_shows_its_header_only_unless_revealed() -> None:
    view = view_of(HL7, stage="mllp", code="hl7-invalid", origin=Origin("mllp"))
    assert view.record_type is None
    assert view.facility == hl7_header(HL7)["MSH-4"]
    shown = "\n".join(show_lines(view, []))
    assert "MSH-10" in shown
    assert "segments: MSH PID" in shown
    assert DOMINIQUE.family not in shown
    assert DOMINIQUE.ins not in shown
    revealed = "\n".join(show_lines(view, [], reveal=True))
    assert DOMINIQUE.family in revealed


def test_masked_replaces_envelopes_bytes_and_the_patient() -> None:
    out = masked(
        {
            "patient": {"patient_key": "k"},
            "recipient": {"key_id": "a", "nonce": b"n", "ciphertext": b"123"},
            "message": b"\x01\x02",
            "at": NOW,
            "list": [b"x"],
        }
    )
    assert out == {
        "patient": "<hidden: patient identity (--reveal to show)>",
        "recipient": "<sealed recipient: 3 bytes>",
        "message": "<2 bytes>",
        "at": NOW.isoformat(),
        "list": ["<1 bytes>"],
    }


def test_filters_by_stage_reason_sector_time_id_and_replay() -> None:
    lab = view_of(CODEC.encode("DocumentSubmitted", submitted()))
    old = view_of(
        b"garbage", stage="transcode", code="cda-not-well-formed", at=NOW - timedelta(days=3)
    )
    views = [lab, old]
    assert select(views, LetterFilter(stages=frozenset({"trans*"})), {}) == [old]
    assert select(views, LetterFilter(reasons=frozenset({"cda-*"})), {}) == [old]
    assert select(views, LetterFilter(sectors=frozenset({"LAB"})), {}) == [lab]
    assert select(views, LetterFilter(since=NOW - timedelta(hours=1)), {}) == [lab]
    assert select(views, LetterFilter(until=NOW - timedelta(days=1)), {}) == [old]
    assert select(views, LetterFilter(ids=frozenset({lab.dead_letter_id[:8]})), {}) == [lab]
    assert select(views, LetterFilter(ids=frozenset({lab.event_id or "?"})), {}) == [lab]
    assert select(views, LetterFilter(ids=frozenset({lab.dead_letter_id[:7]})), {}) == []
    replayed = {old.dead_letter_id: 1}
    assert select(views, LetterFilter(replayed=True), replayed) == [old]
    assert select(views, LetterFilter(replayed=False), replayed) == [lab]
    assert select(views, LetterFilter(), {}) == [old, lab]  # oldest first
    assert LetterFilter().is_empty()
    assert not LetterFilter(replayed=False).is_empty()


def test_parse_when() -> None:
    assert parse_when("30m", NOW) == NOW - timedelta(minutes=30)
    assert parse_when("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_when("7d", NOW) == NOW - timedelta(days=7)
    assert parse_when("2026-03-01", NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_when("2026-03-01T10:00+01:00", NOW) == datetime(2026, 3, 1, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="use 30m, 2h, 7d"):
        parse_when("yesterday", NOW)


def test_list_and_counts() -> None:
    a = view_of(CODEC.encode("DocumentSubmitted", submitted()))
    b = view_of(b"x", stage="transcode", code="cda-not-well-formed")
    lines = list_lines([a, b], {b.dead_letter_id: 2})
    assert lines[0].split() == [
        "ID",
        "WHEN",
        "(UTC)",
        "STAGE",
        "REASON",
        "SECTOR",
        "EVENT",
        "REPLAYED",
    ]
    assert lines[1].startswith(a.dead_letter_id[:8])
    assert "LAB" in lines[1]
    assert lines[2].endswith("2x")
    assert lines[-1] == "2 dead letter(s)"
    assert list_lines([], {}) == ["no dead letter matches"]
    assert count_lines([a, b, b]) == [
        "     2  transcode: cda-not-well-formed",
        "     1  identity: undecryptable-field",
    ]


def test_summary_has_no_patient_data() -> None:
    record = submitted()
    view = view_of(CODEC.encode("DocumentSubmitted", record))
    text = str(view.summary())
    assert DOMINIQUE.family not in text
    assert record["patient"]["patient_key"] not in text
    assert view.summary()["original_readable"] is True
