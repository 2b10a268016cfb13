"""Technical ACK / NAK building: swapped header, MSA, ERR codes; read back with python-hl7."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hl7
import pytest

from producers.hl7.ack import ack_code_for, build_ack
from producers.hl7.errors import Hl7Error, Hl7ValidationError
from producers.hl7.message import Hl7Message, decode_message, parse_message
from tests.shared_data import shared

REPO = Path(__file__).resolve().parents[2]
SAMPLES = shared("hl7v2")  # ANS samples: read, never copied here
FIXTURES = REPO / "tests" / "fixtures" / "hl7"
NOW = datetime(2024, 3, 1, 10, 15, 30)
ORU_SAMPLE = SAMPLES / "ORU_R01_CR-BIO_N1+N3_initial_placeholder.hl7"
PATIENT_DATA = ("279035121518989", "PAT-TROIS", "DOMINIQUE", "19790328")


def read_back(ack: bytes) -> Any:
    assert ack.endswith(b"\r")
    assert b"\n" not in ack
    return hl7.parse(ack.decode("utf-8"))


def field(msg: Any, segment: str, number: int) -> str:
    """A whole field as sent (components included, escapes kept)."""
    return str(msg.segment(segment)[number])


def value(msg: Any, key: str) -> str:
    """One leaf, e.g. ``ERR.F3.R1.C1``, unescaped by python-hl7."""
    return str(msg[key])


def rejected(raw: bytes) -> Hl7Error:
    with pytest.raises(Hl7Error) as info:
        parse_message(raw)
    return info.value


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_aa_swaps_applications_and_echoes_control_id() -> None:
    raw = ORU_SAMPLE.read_bytes()
    ack = read_back(build_ack(parse_message(raw), raw, code="AA", control_id="ACK-1", now=NOW))
    msh = ack.segment("MSH")
    assert [str(msh[i]) for i in range(3, 7)] == ["PFI-X", "Organisation-X", "SIL-Y", "labo"]
    assert str(msh[7]) == "20240301101530"
    assert str(msh[9]) == "ACK^R01^ACK"
    assert (str(msh[10]), str(msh[11]), str(msh[12])) == ("ACK-1", "P", "2.5")
    assert str(msh[18]) == "UNICODE UTF-8"
    assert (field(ack, "MSA", 1), field(ack, "MSA", 2)) == ("AA", "015")
    with pytest.raises(KeyError):
        ack.segments("ERR")


def test_aa_matches_the_ans_sample_ack() -> None:
    raw = ORU_SAMPLE.read_bytes()
    ours = build_ack(parse_message(raw), raw, code="AA", control_id="016", now=NOW)
    theirs = (SAMPLES / "ACK_R01_ORU.hl7").read_bytes().decode().strip().split("\n")
    our_lines = ours.decode().strip("\r").split("\r")
    ours_msh, theirs_msh = (
        hl7.parse(our_lines[0]).segment("MSH"),
        hl7.parse(theirs[0]).segment("MSH"),
    )
    del ours_msh[7], theirs_msh[7]  # MSH-7 is the time the ACK was built
    assert str(ours_msh) == str(theirs_msh)
    assert our_lines[1:] == theirs[1:]


@pytest.mark.parametrize(
    ("name", "trigger", "version"),
    [("mdm_t10_replace.hl7", "T10", "2.6"), ("oru_r01_delete_crlf.hl7", "R01", "2.5")],
)
def test_trigger_and_version_follow_the_original(name: str, trigger: str, version: str) -> None:
    raw = fixture(name)
    ack = read_back(build_ack(parse_message(raw), raw, code="AA", control_id="A", now=NOW))
    assert field(ack, "MSH", 9) == f"ACK^{trigger}^ACK"
    assert field(ack, "MSH", 12) == version


def test_adt_version_is_the_bare_version_id() -> None:
    raw = (SAMPLES / "ADT_A01_PAMFR_INS_admission.er7").read_bytes()
    ack = read_back(build_ack(parse_message(raw), raw, code="AA", control_id="A", now=NOW))
    assert field(ack, "MSH", 12) == "2.5"
    assert field(ack, "MSH", 9) == "ACK^A01^ACK"


def test_ae_carries_err_from_a_validation_error() -> None:
    text = decode_message(fixture("oru_r01_cda_initial.hl7"))
    raw = text.replace("279035121518989^^^ASIP", "279035121518988^^^ASIP").encode()
    error = rejected(raw)
    ack = read_back(build_ack(None, raw, code="AE", error=error, control_id="N1", now=NOW))
    assert (field(ack, "MSA", 1), field(ack, "MSA", 2)) == ("AE", "CTRL-0001")
    assert field(ack, "MSH", 3) == "RELAIS"
    assert field(ack, "MSH", 5) == "SIL-TEST"
    assert field(ack, "ERR", 2) == "PID^1^3"
    assert field(ack, "ERR", 3) == "102^Data type error^HL70357"
    assert field(ack, "ERR", 4) == "E"
    assert field(ack, "ERR", 5) == ""
    user_message = value(ack, "ERR.F8")
    assert "INS" in user_message
    for secret in PATIENT_DATA:
        assert (
            secret
            not in build_ack(None, raw, code="AE", error=error, control_id="N", now=NOW).decode()
        )


def test_status_mismatch_gives_app_code_906_at_the_obx() -> None:
    text = decode_message(fixture("oru_r01_cda_initial.hl7"))
    raw = text.replace("||||||F\rPRT", "||||||C\rPRT").encode()
    ack = read_back(build_ack(None, raw, code="AE", error=rejected(raw), control_id="N", now=NOW))
    assert field(ack, "ERR", 2) == "OBX^1^11"
    assert field(ack, "ERR", 3) == "207^Application internal error^HL70357"
    assert field(ack, "ERR", 5) == "906^Autre erreur^applicationErrorCode"


def test_flag_error_location_has_the_obx_sequence() -> None:
    text = decode_message(fixture("oru_r01_cda_initial.hl7"))
    raw = text.replace("DESTDMP^MetaDMPMSS||Y^", "DESTDMP^MetaDMPMSS||O^").encode()
    ack = read_back(build_ack(None, raw, code="AE", error=rejected(raw), control_id="N", now=NOW))
    assert field(ack, "ERR", 2) == "OBX^7^5"
    assert value(ack, "ERR.F3.R1.C1") == "103"


def test_app_code_and_user_message_are_encoded_safely() -> None:
    raw = ORU_SAMPLE.read_bytes()
    error = Hl7ValidationError(
        "INS absent | voir l'écran ^ & ~ \\ fin",
        hl7_error_code="207",
        app_error_code="903",
        location="PID-3",
    )
    ack_bytes = build_ack(parse_message(raw), raw, code="AE", error=error, control_id="N", now=NOW)
    assert ack_bytes.isascii()
    ack = read_back(ack_bytes)
    assert field(ack, "ERR", 5) == "903^INS non present^applicationErrorCode"
    assert value(ack, "ERR.F8") == "INS absent | voir l'ecran ^ & ~ \\ fin"


def test_ar_without_error_says_application_error() -> None:
    raw = ORU_SAMPLE.read_bytes()
    ack = read_back(build_ack(parse_message(raw), raw, code="AR", control_id="N", now=NOW))
    assert field(ack, "MSA", 1) == "AR"
    assert value(ack, "ERR.F3.R1.C1") == "207"
    assert field(ack, "ERR", 4) == "E"
    assert "later" in value(ack, "ERR.F8")


def test_unparseable_input_still_gets_a_readable_nak() -> None:
    error = rejected(b"this is not HL7")
    ack = read_back(
        build_ack(None, b"this is not HL7", code="AE", error=error, control_id="N", now=NOW)
    )
    assert field(ack, "MSA", 1) == "AE"
    assert field(ack, "MSA", 2) == ""
    assert [field(ack, "MSH", i) for i in range(3, 7)] == ["", "", "", ""]
    assert field(ack, "MSH", 9) == "ACK"
    assert field(ack, "ERR", 2) == "MSH^1"
    assert value(ack, "ERR.F3.R1.C1") == "100"


def test_unknown_charset_nak_still_reads_the_raw_header() -> None:
    raw = ORU_SAMPLE.read_bytes().replace(b"UNICODE UTF-8", b"KOI8-R")
    error = rejected(raw)
    ack = read_back(build_ack(None, raw, code="AE", error=error, control_id="N", now=NOW))
    assert field(ack, "MSA", 2) == "015"
    assert field(ack, "MSH", 5) == "SIL-Y"
    assert field(ack, "MSH", 18) == "UNICODE UTF-8"
    assert field(ack, "ERR", 2) == "MSH^1^18"


def test_aware_timestamp_keeps_its_offset() -> None:
    raw = ORU_SAMPLE.read_bytes()
    now = datetime(2024, 3, 1, 10, 15, 30, tzinfo=UTC)
    ack = read_back(build_ack(parse_message(raw), raw, code="AA", control_id="A", now=now))
    assert field(ack, "MSH", 7) == "20240301101530+0000"


def test_unknown_ack_code_is_a_caller_bug() -> None:
    raw = ORU_SAMPLE.read_bytes()
    message: Hl7Message = parse_message(raw)
    with pytest.raises(ValueError, match="ACK code"):
        build_ack(message, raw, code="CA", control_id="A", now=NOW)


def test_ack_code_for() -> None:
    assert ack_code_for(None) == "AA"
    assert ack_code_for(Hl7ValidationError("x", hl7_error_code="101")) == "AE"
