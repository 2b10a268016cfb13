"""step: decode, handle, encode; every failure of one record becomes one dead letter."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime

import pytest

from ops.demo.samples import DOMINIQUE, LAB, sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec, Record
from relais.deadletter import StageFailure
from relais.envelope import Envelope, open_envelope, seal
from relais.keyring import Keyring
from relais.topics import DEADLETTER, QUALIFIED, SUBMITTED
from streams.stage import (
    Encoded,
    Handler,
    Output,
    Stage,
    StageContext,
    StepResult,
    read_traits,
)
from streams.stage import step as stage_step

PREFIX = "t"
KEYRING = Keyring.generate("k-stage")
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
CTX = StageContext(keyring=KEYRING, now=NOW)
CODEC = Codec()
GARBAGE = b"\x00\x01 this is not an Avro record \xff"


class NotACdaFailure(StageFailure):
    reason_code = "test-not-a-cda"


def _qualify(record: Record, ctx: StageContext) -> list[Output]:
    """A minimal identity-like handler: opens the sealed traits, emits IdentityQualified."""
    read_traits(record, ctx)
    fields = ("event_id", "submitted_at", "sector", "source", "patient", "document", "hints")
    qualified = {f: record[f] for f in fields}
    qualified |= {"qualified_at": ctx.now, "identity_status": "QUAL", "identity_attributes": []}
    key = record["patient"]["patient_key"].encode()
    return [Output(QUALIFIED, "IdentityQualified", qualified, key)]


QUALIFY = Stage("identity", SUBMITTED, "DocumentSubmitted", _qualify)


def submitted_record() -> Record:
    [record] = submissions(
        parse_message(sample(LAB, DOMINIQUE, 1)), sector="LAB", keyring=KEYRING, now=NOW
    )
    return record


def step(stage: Stage, value: bytes | None, *, partition: int = 2, offset: int = 41) -> StepResult:
    running = stage_step(
        stage, CODEC, CTX, PREFIX, key=b"pk", value=value, partition=partition, offset=offset
    )
    return asyncio.run(running)


def dead_letter_of(result: StepResult) -> Record:
    [out] = result.outputs
    assert isinstance(out, Encoded)
    assert out.topic == DEADLETTER.name(PREFIX)
    assert out.key == b"pk"
    _, letter = CODEC.decode(out.value, expected="DeadLetter")
    assert result.failure is not None
    assert letter["reason_code"] == result.failure.reason_code
    assert letter["reason"] == result.failure.reason
    return letter


def opened_original(letter: Record) -> bytes:
    return open_envelope(
        KEYRING,
        Envelope.from_record(letter["original"]),
        event_id=letter["dead_letter_id"],
        purpose="original",
    )


def stage_with(handler: Handler) -> Stage:
    return Stage(name="test", source=SUBMITTED, record_type="DocumentSubmitted", handle=handler)


def test_garbage_becomes_a_dead_letter_then_the_stage_goes_on() -> None:
    bad = step(QUALIFY, GARBAGE, partition=3, offset=42)
    assert bad.event_id is None
    letter = dead_letter_of(bad)
    assert letter["stage"] == "identity"
    assert letter["reason_code"] == "undecodable-record"
    assert letter["source_topic"] == SUBMITTED.name(PREFIX)
    assert letter["source_partition"] == 3
    assert letter["source_offset"] == 42
    assert letter["event_id"] is None
    assert letter["occurred_at"] == NOW
    assert letter["original_size"] == len(GARBAGE)
    assert letter["original_sha256"] == hashlib.sha256(GARBAGE).hexdigest()
    assert opened_original(letter) == GARBAGE
    assert GARBAGE not in CODEC.encode("DeadLetter", letter)  # sealed, not copied

    record = submitted_record()
    good = step(QUALIFY, CODEC.encode("DocumentSubmitted", record), offset=43)
    assert good.failure is None
    assert good.event_id == record["event_id"]
    [out] = good.outputs
    assert out.topic == QUALIFIED.name(PREFIX)
    assert out.key == record["patient"]["patient_key"].encode()
    name, qualified = CODEC.decode(out.value)
    assert name == "IdentityQualified"
    assert qualified["event_id"] == record["event_id"]


@pytest.mark.parametrize("value", [None, b"", b"\xc3\x01", b"\xc3\x01" + b"\x00" * 8 + b"x"])
def test_empty_short_and_unknown_schema_records_are_undecodable(value: bytes | None) -> None:
    letter = dead_letter_of(step(QUALIFY, value))
    assert letter["reason_code"] == "undecodable-record"
    assert opened_original(letter) == (value or b"")


def test_a_record_of_the_wrong_type_is_undecodable() -> None:
    audit = {
        "audit_id": "a",
        "event_id": "e",
        "at": NOW,
        "component": "test",
        "action": "OTHER",
        "outcome": "x",
        "document_unique_id": None,
        "detail": None,
        "facility": None,
        "application": None,
        "message_control_id": None,
        "type_code": None,
        "operator": None,
    }
    value = CODEC.encode("AuditEvent", audit)
    letter = dead_letter_of(step(QUALIFY, value))
    assert letter["reason_code"] == "undecodable-record"
    assert "AuditEvent" in letter["reason"]
    assert opened_original(letter) == value


def test_a_stage_failure_subclass_gives_its_reason_code() -> None:
    def handler(record: Record, ctx: StageContext) -> list[Output]:
        raise NotACdaFailure("the document is not a CDA")

    record = submitted_record()
    value = CODEC.encode("DocumentSubmitted", record)
    result = step(stage_with(handler), value)
    letter = dead_letter_of(result)
    assert letter["reason_code"] == "test-not-a-cda"
    assert letter["reason"] == "the document is not a CDA"
    assert letter["stage"] == "test"
    assert letter["event_id"] == record["event_id"]
    assert result.event_id == record["event_id"]
    assert opened_original(letter) == value


def test_a_stage_failure_with_an_explicit_code() -> None:
    def handler(record: Record, ctx: StageContext) -> list[Output]:
        raise StageFailure("nope", reason_code="explicit-code")

    letter = dead_letter_of(
        step(stage_with(handler), CODEC.encode("DocumentSubmitted", submitted_record()))
    )
    assert letter["reason_code"] == "explicit-code"


def test_an_unexpected_exception_is_an_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    def handler(record: Record, ctx: StageContext) -> list[Output]:
        return [Output(QUALIFIED, "IdentityQualified", {"ratio": 1 / 0}, None)]

    record = submitted_record()
    with caplog.at_level(logging.ERROR, logger="streams.stage"):
        result = step(stage_with(handler), CODEC.encode("DocumentSubmitted", record))
    letter = dead_letter_of(result)
    assert letter["reason_code"] == "internal-error"
    assert "ZeroDivisionError" in letter["reason"]
    assert letter["event_id"] == record["event_id"]
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_an_internal_error_is_logged_without_the_exceptions_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(record: Record, ctx: StageContext) -> list[Output]:
        raise ValueError(f"bad INS {DOMINIQUE.ins}")  # a bug quoting patient data

    with caplog.at_level(logging.ERROR, logger="streams.stage"):
        result = step(stage_with(handler), CODEC.encode("DocumentSubmitted", submitted_record()))
    assert dead_letter_of(result)["reason_code"] == "internal-error"
    assert "ValueError" in caplog.text
    assert "in handler" in caplog.text  # the frames are there
    assert DOMINIQUE.ins not in caplog.text


def test_an_output_that_does_not_match_its_schema_is_an_internal_error() -> None:
    """A handle emitting a record its schema refuses is a bug in Relais, not a bad input.

    ``EncodeError`` is a ``ContractError``, so step files it under
    "undecodable-record", telling the operator the *input* was corrupt.
    """

    def handler(record: Record, ctx: StageContext) -> list[Output]:
        return [Output(QUALIFIED, "IdentityQualified", {"event_id": record["event_id"]}, None)]

    letter = dead_letter_of(
        step(stage_with(handler), CODEC.encode("DocumentSubmitted", submitted_record()))
    )
    assert letter["reason_code"] == "internal-error"


def test_an_envelope_sealed_for_another_event_is_undecryptable() -> None:
    record = submitted_record()
    moved = seal(KEYRING, b'{"ins": null}', event_id="another-event", purpose="identity")
    record["patient"] = {**record["patient"], "identity": moved.to_record()}
    value = CODEC.encode("DocumentSubmitted", record)
    letter = dead_letter_of(step(QUALIFY, value))
    assert letter["reason_code"] == "undecryptable-field"
    assert letter["event_id"] == record["event_id"]
    assert opened_original(letter) == value


def test_an_envelope_for_another_purpose_is_undecryptable() -> None:
    record = submitted_record()
    record["patient"] = {**record["patient"], "identity": record["document"]["content"]}
    letter = dead_letter_of(step(QUALIFY, CODEC.encode("DocumentSubmitted", record)))
    assert letter["reason_code"] == "undecryptable-field"


def test_an_envelope_under_an_unknown_key_is_undecryptable() -> None:
    record = submitted_record()
    other = Keyring.generate("k-elsewhere")
    foreign = seal(other, b"{}", event_id=record["event_id"], purpose="identity")
    record["patient"] = {**record["patient"], "identity": foreign.to_record()}
    letter = dead_letter_of(step(QUALIFY, CODEC.encode("DocumentSubmitted", record)))
    assert letter["reason_code"] == "undecryptable-field"
    assert "k-elsewhere" in letter["reason"]


def test_dead_letter_id_is_stable_per_record_place() -> None:
    first = dead_letter_of(step(QUALIFY, GARBAGE, offset=41))
    replayed = dead_letter_of(step(QUALIFY, GARBAGE, offset=41))
    second = dead_letter_of(step(QUALIFY, GARBAGE, offset=42))
    assert first["dead_letter_id"] == replayed["dead_letter_id"]  # a replay is the same letter
    assert first["dead_letter_id"] != second["dead_letter_id"]
    # The original is bound to its dead letter: it does not open under the other's id.
    with pytest.raises(Exception, match="authentication"):
        open_envelope(
            KEYRING,
            Envelope.from_record(first["original"]),
            event_id=second["dead_letter_id"],
            purpose="original",
        )
