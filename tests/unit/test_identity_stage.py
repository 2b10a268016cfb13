"""The identity stage: only a qualified INS goes on; anything else is held with its reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from producers.hl7_message import parse_message
from producers.submission import submissions
from relais.contracts import Codec, Record
from relais.demo.samples import (
    DOMINIQUE,
    IMAGING,
    LAB,
    LETTER,
    SARAH_LOU,
    UNQUALIFIED,
    Kind,
    Patient,
    sample,
)
from relais.envelope import seal
from relais.keyring import Keyring
from relais.topics import IDENTITY_PENDING, QUALIFIED
from streams.identity import STAGE, decide, handle, read_traits
from streams.ins import INS_C_OLD, INS_NIA, INS_NIR, INS_NIR_DEMO, INS_NIR_TEST
from streams.stage import StageContext, StageFailure

KEYRING = Keyring.generate("k-identity")
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
LATER = datetime(2026, 11, 22, 9, 16, tzinfo=UTC)
CTX = StageContext(keyring=KEYRING, now=LATER)
CODEC = Codec()
VALID_INS = "279035121518989"


def traits(ins: str | None = VALID_INS, oid: str | None = INS_NIR_TEST) -> dict[str, Any]:
    return {"ins": ins, "ins_oid": oid, "birth_name": "X", "local_ids": []}


def submitted(kind: Kind = LAB, patient: Patient = DOMINIQUE, n: int = 1) -> Record:
    """A DocumentSubmitted record as the stage receives it: encoded, then decoded."""
    [record] = submissions(
        parse_message(sample(kind, patient, n)), sector="LAB", keyring=KEYRING, now=NOW
    )
    _, decoded = CODEC.decode(
        CODEC.encode("DocumentSubmitted", record), expected="DocumentSubmitted"
    )
    return decoded


def with_traits(record: Record, plain: bytes) -> Record:
    patient = {
        **record["patient"],
        "identity": seal(
            KEYRING, plain, event_id=record["event_id"], purpose="identity"
        ).to_record(),
    }
    return {**record, "patient": patient}


# decide -------------------------------------------------------------------


@pytest.mark.parametrize("oid", [INS_NIR, INS_NIA, INS_NIR_TEST, INS_NIR_DEMO])
def test_qualified_ins_proceeds(oid: str) -> None:
    decision = decide(traits(oid=oid), "QUAL")
    assert decision.status == "QUAL"
    assert decision.hold_code is None
    assert decision.hold_reason is None


@pytest.mark.parametrize("ins", [None, ""])
def test_no_ins_is_held(ins: str | None) -> None:
    decision = decide(traits(ins=ins), "QUAL")
    assert decision.hold_code == "no-ins"
    assert decision.hold_reason
    assert decision.status == "QUAL"


def test_missing_ins_key_in_traits_is_held() -> None:
    decision = decide({"birth_name": "X"}, "QUAL")
    assert decision.hold_code == "no-ins"


@pytest.mark.parametrize("oid", [INS_C_OLD, None, "1.2.250.1.71.4.2.1", "1.2.250.1.213.1.4.1"])
def test_not_an_ins_oid_is_held(oid: str | None) -> None:
    decision = decide(traits(oid=oid), "QUAL")
    assert decision.hold_code == "not-an-ins-oid"
    assert decision.hold_reason is not None


def test_old_ins_c_oid_is_refused() -> None:
    decision = decide(traits(oid="1.2.250.1.213.1.4.2"), "QUAL")
    assert decision.hold_code == "not-an-ins-oid"
    assert "1.2.250.1.213.1.4.2" in (decision.hold_reason or "")


@pytest.mark.parametrize("ins", ["279035121518988", "27903512151898", "2790351215189A9"])
def test_bad_key_is_held(ins: str) -> None:
    decision = decide(traits(ins=ins), "QUAL")
    assert decision.hold_code == "ins-key-invalid"
    assert ins not in (decision.hold_reason or "")  # the reason never quotes the INS


@pytest.mark.parametrize("declared", ["PROV", "RECUP", "VALI"])
def test_declared_unqualified_status_is_held_with_that_status(declared: str) -> None:
    decision = decide(traits(), declared)
    assert decision.status == declared
    assert decision.hold_code == "identity-not-qualified"
    assert declared in (decision.hold_reason or "")


@pytest.mark.parametrize("declared", [None, "", "qual", "XYZ", "QUALIFIED"])
def test_unknown_declared_status_reads_as_prov(declared: str | None) -> None:
    decision = decide(traits(), declared)
    assert decision.status == "PROV"
    assert decision.hold_code == "identity-not-qualified"


def test_checks_come_in_order() -> None:
    # No INS outranks a wrong OID, a wrong OID outranks a bad key, which outranks the status.
    assert decide(traits(ins=None, oid=INS_C_OLD), "PROV").hold_code == "no-ins"
    assert decide(traits(ins="1", oid=INS_C_OLD), "PROV").hold_code == "not-an-ins-oid"
    assert decide(traits(ins="1"), "PROV").hold_code == "ins-key-invalid"


# handle -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "patient"), [(LAB, DOMINIQUE), (IMAGING, SARAH_LOU), (LETTER, SARAH_LOU)]
)
def test_qualified_submission_goes_to_qualified(kind: Kind, patient: Patient) -> None:
    record = submitted(kind, patient)
    [out] = handle(record, CTX)
    assert out.topic == QUALIFIED
    assert out.record_type == "IdentityQualified"
    assert out.key == record["patient"]["patient_key"].encode()
    qualified = out.record
    assert qualified["identity_status"] == "QUAL"
    assert qualified["qualified_at"] == LATER
    assert qualified["event_id"] == record["event_id"]
    assert qualified["document"] == record["document"]
    assert qualified["patient"] == record["patient"]
    encoded = CODEC.encode("IdentityQualified", qualified)
    name, decoded = CODEC.decode(encoded, expected="IdentityQualified")
    assert name == "IdentityQualified"
    assert decoded["event_id"] == record["event_id"]
    assert decoded["qualified_at"] == LATER


def test_unqualified_submission_is_held() -> None:
    record = submitted(LAB, UNQUALIFIED)
    [out] = handle(record, CTX)
    assert out.topic == IDENTITY_PENDING
    assert out.record_type == "IdentityHeld"
    assert out.key == record["patient"]["patient_key"].encode()
    held = out.record
    assert held["reason_code"] == "identity-not-qualified"
    assert held["identity_status"] == "VALI"
    assert held["held_at"] == LATER
    _, decoded = CODEC.decode(CODEC.encode("IdentityHeld", held), expected="IdentityHeld")
    assert decoded["reason_code"] == "identity-not-qualified"
    assert decoded["identity_status"] == "VALI"
    assert decoded["document"] == record["document"]


@pytest.mark.parametrize(
    ("sealed", "code"),
    [
        (traits(ins=None, oid=None), "no-ins"),
        (traits(oid=INS_C_OLD), "not-an-ins-oid"),
        (traits(ins="279035121518988"), "ins-key-invalid"),
    ],
)
def test_held_reasons_come_from_the_sealed_traits(sealed: dict[str, Any], code: str) -> None:
    record = with_traits(submitted(), json.dumps(sealed).encode())
    [out] = handle(record, CTX)
    assert out.topic == IDENTITY_PENDING
    assert out.record["reason_code"] == code
    assert out.record["identity_status"] == "QUAL"  # declared QUAL, but not provably so
    CODEC.encode("IdentityHeld", out.record)


def test_unknown_reliability_on_the_record_is_held_as_prov() -> None:
    record = submitted()
    record = {**record, "patient": {**record["patient"], "reliability": None}}
    [out] = handle(record, CTX)
    assert out.topic == IDENTITY_PENDING
    assert out.record["identity_status"] == "PROV"
    CODEC.encode("IdentityHeld", out.record)


@pytest.mark.parametrize("plain", [b"not json", b"[1, 2]", b'"ins"', b"\xff\xfe"])
def test_unreadable_traits_fail_the_stage(plain: bytes) -> None:
    record = with_traits(submitted(), plain)
    with pytest.raises(StageFailure) as caught:
        read_traits(record, CTX)
    assert caught.value.reason_code == "identity-unreadable"


def test_traits_carry_the_ins() -> None:
    record = submitted()
    assert read_traits(record, CTX)["ins"] == DOMINIQUE.ins


def test_stage_declaration() -> None:
    assert STAGE.name == "identity"
    assert STAGE.record_type == "DocumentSubmitted"
    assert STAGE.handle is handle
