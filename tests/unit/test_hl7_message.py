"""HL7 v2 core: the ANS samples, our own fixtures, and every rejection rule."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from domain.ins import ins_key_valid
from producers.hl7.errors import HL7_ERROR_TEXT, Hl7Error, Hl7ParseError, Hl7ValidationError
from producers.hl7.message import (
    Hl7Message,
    decode_message,
    message_digest,
    parse_message,
    read_header,
)
from tests.shared_data import shared

REPO = Path(__file__).resolve().parents[2]
SAMPLES = shared("hl7v2")  # ANS samples: read, never copied here
FIXTURES = REPO / "tests" / "fixtures" / "hl7"
PAT_TROIS = ("279035121518989", "PAT-TROIS", "DOMINIQUE", "19790328", "63220")


def sample(name: str) -> Hl7Message:
    return parse_message((SAMPLES / name).read_bytes())


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_text(name: str) -> str:
    """A UTF-8 fixture with CR separators, ready for str.replace mutations."""
    return decode_message(fixture_bytes(name))


# --- ANS samples -------------------------------------------------------------------------


def test_oru_initial_sample() -> None:
    msg = sample("ORU_R01_CR-BIO_N1+N3_initial_placeholder.hl7")
    assert (msg.message_type, msg.trigger_structure, msg.version) == ("ORU^R01", "ORU_R01", "2.5")
    assert (msg.control_id, msg.processing_id, msg.charset) == ("015", "P", "UNICODE UTF-8")
    assert (msg.sending_application, msg.sending_facility) == ("SIL-Y", "labo")
    assert (msg.receiving_application, msg.receiving_facility) == ("PFI-X", "Organisation-X")
    assert msg.profile == "2.1^CISIS_CDA_HL7_V2"
    assert msg.timestamp == "202106060931"
    patient = msg.patient
    assert (patient.ins, patient.ins_oid) == ("279035121518989", "1.2.250.1.213.1.4.10")
    assert (patient.birth_name, patient.given_names) == ("PAT-TROIS", "DOMINIQUE")
    assert (patient.birth_date, patient.sex, patient.birthplace_code) == ("19790328", "F", "63220")
    assert patient.reliability == "VALI"
    assert patient.local_ids == ()
    assert [
        (d.type_code, d.coding_system, d.media_type, d.result_status) for d in msg.documents
    ] == [("11502-2", "LN", "text/xml", "F")] * 2
    assert msg.documents[0].type_label == "CR d'examens biologiques"
    assert [d.set_id for d in msg.documents] == [1, 2]
    assert msg.documents[0].content == b"Document medcial au format CDA niveau 1"
    assert msg.order_control == "NW"
    assert msg.document_unique_id == "1001-E1"
    assert msg.parent_document_id is None
    assert msg.visit_class == "I"


def test_oru_initial_sample_flags_and_mail() -> None:
    msg = sample("ORU_R01_CR-BIO_N1+N3_initial_placeholder.hl7")
    assert dict(msg.flags) == {
        "MASQUE_PS": False,
        "INVISIBLE_PATIENT": False,
        "INVISIBLE_REP_LEGAUX": False,
        "CONNEXION_SECRETE": False,
        "MODIF_CONF_CODE": False,
        "DESTDMP": True,
        "DESTMSSANTEPS": True,
        "DESTMSSANTEPAT": True,
        "ACK_RECEPTION": True,
        "ACK_LECTURE_MSS": True,
    }
    # The sample's base64 is cut short by one character: the body is kept, minus the tail.
    assert msg.mail_bodies["CORPSMAIL_PS"].startswith("Cher confrère, vous trouverez ci-joint")


def test_oru_initial_sample_participants() -> None:
    msg = sample("ORU_R01_CR-BIO_N1+N3_initial_placeholder.hl7")
    sender = msg.participants[0]
    assert (sender.role, sender.person_id, sender.family, sender.given) == (
        "SB",
        "801234567866",
        "DIAZ",
        "Thierry",
    )
    assert sender.id_authority_oid == "1.2.250.1.71.4.2.1"
    assert sender.organisation_id == "1120459876"
    recipients = [p.address for p in msg.participants if p.role == "RCT"]
    assert recipients == [
        "adam.hoda@test-ci-sis.mssante.fr",
        "279035121518989@patient.mssante.fr",
    ]
    patient_rct = msg.participants[2]
    assert patient_rct.id_authority_oid == "1.2.250.1.213.1.4.10"
    assert [p.address for p in msg.participants if p.role == "REPLY"] == [
        "adam.hoda@test-ci-sis.mssante.fr"
    ]


def test_oru_delete_sample() -> None:
    msg = sample("ORU_R01_CR-BIO_N1+N3_delete_placeholder.er7")
    assert msg.order_control == "CA"
    assert [d.result_status for d in msg.documents] == ["D", "D"]
    assert msg.flags["ACK_RECEPTION"] is False


def test_mdm_t02_sample() -> None:
    msg = sample("MDM_T02_CR-IMG_N1_initial_placeholder.er7")
    assert (msg.message_type, msg.version) == ("MDM^T02", "2.6")
    assert msg.patient.ins == "279035121518989"
    [doc] = msg.documents
    assert (doc.type_code, doc.media_type, doc.result_status) == ("18748-4", "text/xml", "F")
    assert msg.document_unique_id == "1.2.250.1.71.4.2.2.120456789.71024000081"
    assert msg.flags["INVISIBLE_PATIENT"] is True
    assert msg.flags["CONNEXION_SECRETE"] is True
    assert msg.flags["DESTMSSANTEPAT"] is False
    assert [(p.role, p.address) for p in msg.participants] == [
        ("SB", None),
        ("RCT", "adam.hoda@test-ci-sis.mssante.fr"),
    ]
    assert msg.participants[0].organisation_id == "300017985"


def test_mdm_t04_sample() -> None:
    msg = sample("MDM_T04_CR-IMG_N1_delete_placeholder.er7")
    assert msg.message_type == "MDM^T04"
    assert (msg.patient.ins, msg.patient.ins_oid) == ("274075176079430", "1.2.250.1.213.1.4.8")
    assert (msg.patient.birth_name, msg.patient.sex) == ("PatientA", "M")
    assert [d.result_status for d in msg.documents] == ["D"]
    assert msg.document_unique_id == "1.2.250.1.71.4.2.2.120456789.A71024000082"
    assert msg.parent_document_id == "1.2.250.1.71.4.2.2.120456789A71024000081"
    assert msg.flags["MODIF_CONF_CODE"] is True


def test_adt_a01_sample_is_identity_only() -> None:
    msg = sample("ADT_A01_PAMFR_INS_admission.er7")
    assert (msg.message_type, msg.version) == ("ADT^A01", "2.5")  # MSH-12 is 2.5^FRA^2.11
    assert msg.profile == "2.11^IHE_FRANCE-2.11-PAM"
    assert msg.patient.ins == "279035121518989"
    assert msg.patient.local_ids == (("000003", "CHU-X"),)
    assert msg.patient.birthplace_code == "63220"
    assert (msg.documents, msg.participants, dict(msg.flags)) == ((), (), {})


@pytest.mark.parametrize(
    "name",
    [
        "ACK_R01_ORU.hl7",
        "ACK_T10_MDM.er7",
        "ZAM_Z01_ack_reception_DMP_error.hl7",
        "ZAM_Z02_ack_reception_MSS.hl7",
        "ZAM_Z03_ack_lecture_MSS.hl7",
    ],
)
def test_samples_of_other_types_are_refused(name: str) -> None:
    with pytest.raises(Hl7ValidationError) as info:
        sample(name)
    assert (info.value.hl7_error_code, info.value.location) == ("200", "MSH-9")


# --- our fixtures ------------------------------------------------------------------------


def test_oru_with_a_real_cda() -> None:
    msg = parse_message(fixture_bytes("oru_r01_cda_initial.hl7"))
    [doc] = msg.documents
    assert doc.content == fixture_bytes("cda_cr_bio_minimal.xml")
    root = etree.fromstring(doc.content)
    assert root.tag == "{urn:hl7-org:v3}ClinicalDocument"
    assert msg.patient.local_ids == (("IPP-0001", "RELAIS-TEST"),)
    assert msg.mail_bodies["CORPSMAIL_PS"].startswith("Cher confrère, veuillez trouver")
    assert msg.visit_class == "O"


def test_oru_with_a_pdf_and_the_worked_identity() -> None:
    msg = parse_message(fixture_bytes("oru_r01_cda_pdf_initial.hl7"))
    assert [d.media_type for d in msg.documents] == ["text/xml", "application/pdf"]
    assert msg.documents[1].content == fixture_bytes("minimal.pdf")
    patient = msg.patient
    assert (patient.ins, patient.birth_name) == ("277010115400329", "GARCIA-HAMMADI")
    assert patient.given_names == "SARAH-LOU ANNA"
    assert (patient.birth_date, patient.sex, patient.birthplace_code) == ("19770121", "F", "01154")
    assert patient.reliability == "QUAL"
    assert msg.processing_id == "T"


def test_mdm_t10_replacement() -> None:
    msg = parse_message(fixture_bytes("mdm_t10_replace.hl7"))
    assert msg.message_type == "MDM^T10"
    assert [d.result_status for d in msg.documents] == ["C"]
    assert msg.document_unique_id == "1.2.3.999.1^RELAIS-TEST-0003-V2"
    assert msg.parent_document_id == "1.2.3.999.1^RELAIS-TEST-0003"
    assert msg.documents[0].type_label == "CR d'imagerie médicale"


def test_iso_8859_15_message_decodes_accents() -> None:
    raw = fixture_bytes("oru_r01_8859_15.hl7")
    assert "é".encode() not in raw  # really encoded in ISO 8859-15, not UTF-8
    msg = parse_message(raw)
    assert msg.charset == "8859/15"
    assert msg.patient.birth_name == "Cœur-Léger"
    assert msg.patient.given_names == "Èva Noé"
    assert msg.documents[0].type_label == "Lettre de liaison à la sortie"
    # the mail body bytes are ISO 8859-15 too: decoded with the message charset
    assert msg.mail_bodies["CORPSMAIL_PATIENT"] == (
        "Chère patiente, votre lettre de liaison (œuvre fictive)."
    )


def test_crlf_message_parses_like_its_cr_twin() -> None:
    raw = fixture_bytes("oru_r01_delete_crlf.hl7")
    assert b"\r\n" in raw
    msg = parse_message(raw)
    assert [d.result_status for d in msg.documents] == ["D"]
    assert msg == parse_message(raw.replace(b"\r\n", b"\r"))
    assert "\n" not in decode_message(raw)


def test_message_is_frozen_and_hashable() -> None:
    msg = parse_message(fixture_bytes("oru_r01_cda_initial.hl7"))
    assert isinstance(hash(msg), int)
    with pytest.raises(AttributeError):
        msg.control_id = "x"  # type: ignore[misc]


def test_digest_is_sha256_of_the_raw_bytes() -> None:
    raw = fixture_bytes("oru_r01_cda_initial.hl7")
    assert message_digest(raw) == hashlib.sha256(raw).hexdigest()


def test_mllp_framing_and_blank_lines_are_tolerated() -> None:
    raw = fixture_bytes("oru_r01_cda_initial.hl7")
    framed = b"\x0b" + raw.replace(b"\rPID", b"\r\r\nPID") + b"\x1c\r"
    assert parse_message(framed) == parse_message(raw)


def test_escape_sequences_are_decoded() -> None:
    text = fixture_text("oru_r01_cda_initial.hl7")
    text = text.replace("PAT-TROIS^DOMINIQUE^DOMINIQUE", "A\\S\\B\\T\\C\\F\\D\\X41\\\\H\\E^JO^JO")
    msg = parse_message(text.encode())
    assert msg.patient.birth_name == "A^B&C|DAE"
    assert msg.patient.given_names == "JO"


def test_msh_applications_keep_their_components() -> None:
    text = fixture_text("oru_r01_cda_initial.hl7").replace("|SIL-TEST|", "|SIL^1.2.3.4^ISO|")
    assert parse_message(text.encode()).sending_application == "SIL^1.2.3.4^ISO"


@pytest.mark.parametrize(
    ("first", "others", "expected"),
    [
        ("DOMINIQUE", "DOMINIQUE", "DOMINIQUE"),
        ("SARAH-LOU", "SARAH-LOU ANNA", "SARAH-LOU ANNA"),
        ("SARAH-LOU", "ANNA", "SARAH-LOU ANNA"),
        ("JEAN", "", "JEAN"),
    ],
)
def test_given_names_follow_pam_fr(first: str, others: str, expected: str) -> None:
    text = fixture_text("oru_r01_cda_initial.hl7").replace(
        "PAT-TROIS^DOMINIQUE^DOMINIQUE", f"PAT-TROIS^{first}^{others}"
    )
    assert parse_message(text.encode()).patient.given_names == expected


@pytest.mark.parametrize(
    ("matricule", "valid"),
    [
        ("279035121518989", True),
        ("277010115400329", True),
        ("279035121518988", False),
        ("185052A01234579", True),
        ("185052B01234509", True),
        ("185052B01234579", False),
    ],
)
def test_ins_key(matricule: str, valid: bool) -> None:
    assert ins_key_valid(matricule) is valid


def test_read_header_best_effort() -> None:
    raw = fixture_bytes("oru_r01_cda_initial.hl7").replace(b"UNICODE UTF-8", b"KOI8-R")
    header = read_header(raw)
    assert header is not None
    assert (header.control_id, header.sending_application) == ("CTRL-0001", "SIL-TEST")
    assert read_header(b"not hl7 at all") is None


# --- rejections --------------------------------------------------------------------------

Mutation = Callable[[], bytes]


def oru(old: str = "", new: str = "") -> Mutation:
    return lambda: fixture_text("oru_r01_cda_initial.hl7").replace(old, new).encode()


def mdm(old: str = "", new: str = "") -> Mutation:
    return lambda: fixture_text("mdm_t10_replace.hl7").replace(old, new).encode()


def without(segment_start: str, name: str = "oru_r01_cda_initial.hl7") -> Mutation:
    def build() -> bytes:
        segments = fixture_text(name).split("\r")
        return "\r".join(s for s in segments if not s.startswith(segment_start)).encode()

    return build


DOC_OBX = "OBX|1|ED|11502-2^CR d'examens biologiques^LN||^TEXT^XML^Base64^"
PID3 = (
    "279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS^^20101207~"
    "IPP-0001^^^RELAIS-TEST&1.2.3.999.2&ISO^PI"
)


def no_document_data() -> bytes:
    text = fixture_text("oru_r01_cda_initial.hl7")
    return re.sub(r"\^Base64\^[A-Za-z0-9+/=]+\|", "^Base64^|", text, count=1).encode()


def three_documents() -> bytes:
    text = fixture_text("oru_r01_cda_pdf_initial.hl7")
    pdf_line = next(s for s in text.split("\r") if s.startswith("OBX|2|ED"))
    return text.replace(pdf_line, f"{pdf_line}\r{pdf_line}").encode()


def two_documents_in_mdm() -> bytes:
    text = fixture_text("mdm_t10_replace.hl7")
    doc_line = next(s for s in text.split("\r") if s.startswith("OBX|1|ED"))
    return text.replace(doc_line, f"{doc_line}\r{doc_line}").encode()


PARSE, RULE = Hl7ParseError, Hl7ValidationError
REJECTIONS: list[tuple[str, Mutation, type[Hl7Error], str, str | None, str | None]] = [
    ("not hl7", lambda: b"hello world", PARSE, "100", "MSH", None),
    ("empty", lambda: b"", PARSE, "100", "MSH", None),
    ("bad encoding chars", oru("MSH|^~\\&|", "MSH|^~|"), PARSE, "102", "MSH-2", None),
    ("alnum encoding chars", oru("MSH|^~\\&|", "MSH|^~\\A|"), PARSE, "102", "MSH-2", None),
    ("unknown charset", oru("UNICODE UTF-8", "KOI8-R"), PARSE, "103", "MSH-18", None),
    ("not utf-8", lambda: oru()().replace(b"PAT-TROIS", b"PAT\xff"), PARSE, "102", "MSH-18", None),
    ("two messages", lambda: oru()() + b"\r" + oru()(), PARSE, "100", None, None),
    ("no MSH-9", oru("|ORU^R01^ORU_R01|", "||"), RULE, "101", "MSH-9", None),
    ("no MSH-10", oru("|CTRL-0001|", "||"), RULE, "101", "MSH-10", None),
    ("no MSH-12", oru("|P|2.5|", "|P||"), RULE, "101", "MSH-12", None),
    ("unsupported type", oru("ORU^R01^ORU_R01", "SIU^S12^SIU_S12"), RULE, "200", "MSH-9", None),
    ("ORU in 2.6", oru("|P|2.5|", "|P|2.6|"), RULE, "203", "MSH-12", None),
    ("MDM in 2.5", mdm("|P|2.6|", "|P|2.5|"), RULE, "203", "MSH-12", None),
    ("no PID", without("PID|"), RULE, "101", "PID", None),
    ("empty PID-3", oru(PID3, ""), RULE, "101", "PID-3", None),
    ("empty PID-5", oru("PAT-TROIS^DOMINIQUE^DOMINIQUE^^^^L", ""), RULE, "101", "PID-5", None),
    (
        "INS bad key",
        oru("279035121518989^^^ASIP", "279035121518988^^^ASIP"),
        RULE,
        "102",
        "PID-3",
        None,
    ),
    (
        "INS-C OID",
        oru("&1.2.250.1.213.1.4.10&ISO^INS", "&1.2.250.1.213.1.4.2&ISO^INS"),
        RULE,
        "103",
        "PID-3",
        None,
    ),
    ("no document", without("OBX|1|ED"), RULE, "101", "OBX", None),
    ("NW with C", oru("||||||F\rPRT", "||||||C\rPRT"), RULE, "207", "OBX-11", "906"),
    ("no ORC", without("ORC|"), RULE, "101", "ORC", None),
    ("ORC-1 unknown", oru("ORC|NW|", "ORC|XO|"), RULE, "103", "ORC-1", None),
    ("T10 with F", mdm("||||||C\rPRT", "||||||F\rPRT"), RULE, "207", "OBX-11", "906"),
    (
        "T10 no TXA-13",
        mdm("|RELAIS-TEST-0003^^1.2.3.999.1^ISO|", "||"),
        RULE,
        "101",
        "TXA-13",
        None,
    ),
    ("MDM no TXA", without("TXA|", "mdm_t10_replace.hl7"), RULE, "101", "TXA", None),
    (
        "flag X",
        oru("MASQUE_PS^MetaDMPMSS||N^", "MASQUE_PS^MetaDMPMSS||X^"),
        RULE,
        "103",
        "OBX-5",
        None,
    ),
    (
        "flag empty",
        oru("MASQUE_PS^MetaDMPMSS||N^", "MASQUE_PS^MetaDMPMSS||^"),
        RULE,
        "101",
        "OBX-5",
        None,
    ),
    ("base64 alphabet", oru(DOC_OBX, DOC_OBX + "*"), RULE, "102", "OBX-5", None),
    ("base64 padding", oru(DOC_OBX, DOC_OBX + "A"), RULE, "102", "OBX-5", None),
    ("base64 empty", no_document_data, RULE, "101", "OBX-5", None),
    ("OBX-5.3", oru("^TEXT^XML^Base64^", "^TEXT^DOC^Base64^"), RULE, "103", "OBX-5", None),
    ("OBX-5.4", oru("^TEXT^XML^Base64^", "^TEXT^XML^Hex^"), RULE, "102", "OBX-5", None),
    ("OBX-3.3", oru("biologiques^LN||", "biologiques^L||"), RULE, "103", "OBX-3", None),
    ("3 documents", three_documents, RULE, "198", "OBX", None),
    ("2 documents in MDM", two_documents_in_mdm, RULE, "198", "OBX", None),
]


@pytest.mark.parametrize(
    ("build", "kind", "code", "location", "app_code"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_rejections(
    build: Mutation, kind: type[Hl7Error], code: str, location: str | None, app_code: str | None
) -> None:
    raw = build()
    with pytest.raises(kind) as info:
        parse_message(raw)
    error = info.value
    assert (error.hl7_error_code, error.location, error.app_error_code) == (
        code,
        location,
        app_code,
    )
    assert error.message
    for secret in PAT_TROIS:  # an error message never quotes patient data
        assert secret not in str(error)


def test_status_mismatch_names_both_values() -> None:
    with pytest.raises(Hl7ValidationError) as info:
        parse_message(oru("||||||F\rPRT", "||||||C\rPRT")())
    assert "'C'" in info.value.message
    assert "ORC-1 'NW'" in info.value.message
    assert "'F'" in info.value.message


def test_flag_error_points_at_its_obx() -> None:
    with pytest.raises(Hl7ValidationError) as info:
        parse_message(oru("DESTDMP^MetaDMPMSS||Y^", "DESTDMP^MetaDMPMSS||yes^")())
    assert (info.value.location, info.value.segment_sequence) == ("OBX-5", 7)


def test_adt_accepts_any_2_5_x_but_not_2_6() -> None:
    raw = (SAMPLES / "ADT_A01_PAMFR_INS_admission.er7").read_bytes()
    assert parse_message(raw.replace(b"|2.5^FRA^2.11|", b"|2.5.1|")).version == "2.5.1"
    with pytest.raises(Hl7ValidationError) as info:
        parse_message(raw.replace(b"|2.5^FRA^2.11|", b"|2.6|"))
    assert info.value.hl7_error_code == "203"


# --- separators --------------------------------------------------------------------------

CR_SEGMENTS = fixture_text("oru_r01_cda_initial.hl7").split("\r")


@settings(max_examples=60, deadline=None)
@given(
    separators=st.lists(
        st.sampled_from(["\r", "\n", "\r\n"]),
        min_size=len(CR_SEGMENTS),
        max_size=len(CR_SEGMENTS),
    ),
    given_name=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ -'", min_size=1, max_size=20).filter(
        str.strip
    ),
)
def test_cr_lf_and_crlf_parse_identically(separators: list[str], given_name: str) -> None:
    segments = [s.replace("^DOMINIQUE^DOMINIQUE^", f"^{given_name}^^") for s in CR_SEGMENTS]
    mixed = "".join(s + sep for s, sep in zip(segments, separators, strict=True))
    assert parse_message(mixed.encode()) == parse_message("\r".join(segments).encode())


# --- robustness --------------------------------------------------------------------------

VALID = fixture_bytes("oru_r01_cda_initial.hl7")


@settings(max_examples=150, deadline=None)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, len(VALID) - 1),
            st.integers(0, 40),
            st.binary(max_size=3) | st.sampled_from([b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n"]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_damaged_bytes_only_ever_raise_hl7_errors(edits: list[tuple[int, int, bytes]]) -> None:
    raw = VALID
    for position, length, replacement in edits:
        raw = raw[:position] + replacement + raw[position + length :]
    error: Hl7Error | None = None
    try:
        parse_message(raw)
    except Hl7Error as exc:  # anything else (IndexError, UnicodeError...) fails the test
        error = exc
    assert error is None or (error.hl7_error_code in HL7_ERROR_TEXT and error.message)
