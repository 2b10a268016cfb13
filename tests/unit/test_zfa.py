"""PAM FR ZFA at the door: the patient's DMP status and word on feeding it, read or refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops.demo.samples import DOMINIQUE, LAB, sample
from producers.hl7.ack import ack_code_for, build_ack
from producers.hl7.consent import (
    CONSULTATION_CODES,
    DMP_STATUSES,
    FEEDING_CODES,
    DmpConsent,
    consent_record,
)
from producers.hl7.errors import Hl7Error, Hl7ValidationError
from producers.hl7.message import parse_message, read_header
from producers.submission import identity_update
from relais.contracts import Codec
from relais.keyring import Keyring
from tests.builders import adt_message
from tests.shared_data import shared

ANS_ADT = shared("hl7v2", "ADT_A01_PAMFR_INS_admission.er7")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def ans_with(zfa: str | None) -> bytes:
    """The ANS PAM FR admission sample with its ZFA replaced (None: removed)."""
    lines = ANS_ADT.read_bytes().decode().splitlines()
    kept = [line for line in lines if not line.startswith("ZFA|")]
    return "\r".join(kept + ([zfa] if zfa else [])).encode() + b"\r"


def refused(raw: bytes) -> Hl7ValidationError:
    with pytest.raises(Hl7ValidationError) as caught:
        parse_message(raw)
    return caught.value


def test_the_ans_admission_sample_is_read_active_informed_not_opposed_consenting() -> None:
    message = parse_message(ANS_ADT.read_bytes())
    assert message.dmp_consent == DmpConsent(
        dmp_status="ACTIF",
        status_date="20240306111154",
        feeding="INO",
        feeding_date="20240306111154",
        consultation="IC",
        consultation_date="20240306111154",
    )
    assert not message.dmp_consent.objected
    assert not message.dmp_consent.closed


@pytest.mark.parametrize(
    ("zfa", "objected", "consultation"),
    [  # the four ANS consent combinations (hl7V2-exemples Vague 2/Consentement_DMP_PAMFR)
        ("ZFA|ACTIF|20240306111154|||||||INO|20240306111154|IC|20240306111154", False, "IC"),
        ("ZFA|ACTIF|20240306111154|||||||INO|20240306111154|INC|20240306111154", False, "INC"),
        ("ZFA|ACTIF|20240306111154|||||||IO|20240306111154|INC|20240306111154", True, "INC"),
        ("ZFA|ACTIF|20240306111154|||||||NA||NA|", False, "NA"),
        ("ZFA|ACTIF|20240306111154|||||||INO|20240306111154|NA|", False, "NA"),
        ("ZFA|ACTIF|20240306111154|||||||IO|20240306111154|IO|20240306111154", True, "IO"),
    ],
)
def test_the_ans_consent_combinations(zfa: str, objected: bool, consultation: str) -> None:
    consent = parse_message(ans_with(zfa)).dmp_consent
    assert consent is not None
    assert consent.objected is objected
    assert consent.consultation == consultation
    assert not consent.closed


def test_a_closed_dmp_by_status_or_by_its_closure_date() -> None:
    closed = parse_message(ans_with("ZFA|FERME|20260101|20251231")).dmp_consent
    assert closed is not None
    assert closed.closed
    assert closed.closed_date == "20251231"
    dated = parse_message(ans_with("ZFA||||||||")).dmp_consent
    assert dated is not None
    assert not dated.closed
    only_date = parse_message(ans_with("ZFA|||20251231")).dmp_consent
    assert only_date is not None
    assert only_date.closed
    reopened = parse_message(ans_with("ZFA|ACTIF|20260102|20251231")).dmp_consent
    assert reopened is not None
    assert not reopened.closed


def test_older_pam_fr_fields_4_to_8_are_not_read_and_not_refused() -> None:
    # PAM FR 2.9/2.10 senders (ANS Gazelle samples) still fill ZFA-4, -6, -7
    consent = parse_message(ans_with("ZFA|INEXISTANT|||N||N|N")).dmp_consent
    assert consent == DmpConsent(dmp_status="INEXISTANT")


def test_no_zfa_no_consent_and_documents_never_read_one() -> None:
    assert parse_message(ans_with(None)).dmp_consent is None
    oru = sample(LAB, DOMINIQUE, 1) + b"ZFA|FERME|||||||IO\r"
    assert parse_message(oru).dmp_consent is None


@pytest.mark.parametrize(
    ("zfa", "location", "code", "says"),
    [
        ("ZFA|ACTIF||||||||io", "ZFA-9", "103", "INO, IO, NA"),
        ("ZFA|OUVERT", "ZFA-1", "103", "ACTIF, FERME, INEXISTANT"),
        ("ZFA|ACTIF|||||||||||", None, None, None),
        ("ZFA|ACTIF||||||||IO|2024-03-06", "ZFA-10", "102", "HL7 date"),
        ("ZFA|ACTIF|20241301", "ZFA-2", "102", "HL7 date"),
        ("ZFA|ACTIF||||||||INO||OK", "ZFA-11", "103", "IC, INC, IO, NA"),
        # garbled, never "nothing said": an empty first component, a repetition
        ("ZFA|ACTIF||||||||^IO", "ZFA-9", "103", "no code in its first component"),
        ("ZFA|ACTIF||||||||NA~IO", "ZFA-9", "103", "repeats"),
        ("ZFA|ACTIF||||||||~IO", "ZFA-9", "103", "repeats"),
        ("ZFA|^FERME", "ZFA-1", "103", "first component"),
        ("ZFA|ACTIF~FERME", "ZFA-1", "103", "repeats"),
        ("ZFA|ACTIF||||||||INO||^INC", "ZFA-11", "103", "first component"),
        ("ZFA|ACTIF||^20240306", "ZFA-3", "102", "first component"),
        ("ZFA|ACTIF||||||||IO|20240306~20240307", "ZFA-10", "102", "repeats"),
    ],
)
def test_a_malformed_zfa_is_refused_naming_the_field(
    zfa: str, location: str | None, code: str | None, says: str | None
) -> None:
    if location is None:
        assert parse_message(ans_with(zfa)).dmp_consent == DmpConsent(dmp_status="ACTIF")
        return
    error = refused(ans_with(zfa))
    assert error.location == location
    assert error.hl7_error_code == code
    assert says is not None
    assert says in error.message
    assert DOMINIQUE.family not in error.message
    assert "PAT-TROIS" not in error.message


def test_two_zfa_segments_are_refused() -> None:
    raw = ans_with("ZFA|ACTIF\rZFA|FERME")
    error = refused(raw)
    assert (error.location, error.hl7_error_code) == ("ZFA", "198")


def test_the_identity_update_carries_the_consent_with_the_adt_time_and_event() -> None:
    keyring = Keyring.generate()
    message = parse_message(ans_with("ZFA|ACTIF|20240306|||||||IO|20240306111154"))
    record = identity_update(message, sector="HOSPITAL", keyring=keyring, now=NOW)
    consent = record["patient"]["dmp_consent"]
    assert consent["feeding"] == "IO"
    assert consent["as_of"] == "20240306111154"  # MSH-7 of the ADT
    assert consent["source_event_id"] == record["event_id"]
    _, decoded = Codec().decode(Codec().encode("IdentityUpdate", record))
    assert decoded["patient"]["dmp_consent"] == consent
    plain = identity_update(
        parse_message(adt_message(DOMINIQUE, "A08", "QUAL")),
        sector="HOSPITAL",
        keyring=keyring,
        now=NOW,
    )
    assert plain["patient"]["dmp_consent"] is None
    assert consent_record(None, as_of="x", source_event_id="y") is None


_FIELD = st.text(
    alphabet=st.sampled_from("AZFIONCTEX019-+.^&\\ ~é"), min_size=0, max_size=16
) | st.sampled_from(sorted(DMP_STATUSES | FEEDING_CODES | CONSULTATION_CODES | {"20240306"}))


@settings(max_examples=300, deadline=None)
@given(st.lists(_FIELD, min_size=0, max_size=14))
def test_any_zfa_is_read_into_table_values_or_refused_at_zfa(fields: list[str]) -> None:
    raw = ans_with("ZFA|" + "|".join(fields))
    try:
        consent = parse_message(raw).dmp_consent
    except Hl7Error as error:
        failure: Hl7Error | None = error
    else:
        failure = None
    if failure is not None:
        assert isinstance(failure, Hl7ValidationError)
        assert (failure.location or "").startswith("ZFA")
        return
    assert consent is not None
    assert consent.dmp_status in DMP_STATUSES | {None}
    assert consent.feeding in FEEDING_CODES | {None}
    assert consent.consultation in CONSULTATION_CODES | {None}
    said = (consent.dmp_status, consent.feeding, consent.consultation)
    for num, read in zip((1, 9, 11), said, strict=True):
        raw_field = fields[num - 1] if num <= len(fields) else ""
        if "\\" in raw_field:  # escapes are decoded (maybe to nothing): not compared here
            continue
        if read is None:  # "nothing said" only for an empty field (a trailing blank is cut)
            assert set(raw_field) <= {"^", "&", "~", " "}
        else:  # one value, read from its first component
            assert "~" not in raw_field
            assert raw_field.split("^")[0].split("&")[0].strip() == read


def test_a_coded_field_with_its_text_and_table_is_read_by_its_code() -> None:
    zfa = "ZFA|FERME^Fermé^IHE-FRANCE-ZFA-1||||||||IO^Informé, opposé^IHE-FRANCE-ZFA-9"
    consent = parse_message(ans_with(zfa)).dmp_consent
    assert consent == DmpConsent(dmp_status="FERME", feeding="IO")


def test_the_sender_gets_an_ae_naming_the_zfa_field() -> None:
    raw = ans_with("ZFA|ACTIF||||||||OPPOSE")
    error = refused(raw)
    ack = build_ack(
        read_header(raw),
        raw,
        code=ack_code_for(error),
        error=error,
        control_id="ACK1",
        now=NOW,
    ).decode()
    msa = next(s for s in ack.split("\r") if s.startswith("MSA|")).split("|")
    err = next(s for s in ack.split("\r") if s.startswith("ERR|")).split("|")
    assert msa[1] == "AE"
    assert err[2].startswith("ZFA^1^9")
    assert err[3].startswith("103^")
    assert "INO, IO, NA" in err[8]
