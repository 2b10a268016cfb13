"""The door's pure checks (producers.door): what is refused before the ACK, and why."""

from __future__ import annotations

import pickle
import random
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.document_id import parse
from ops.demo import samples
from producers.door.admit import DoorPolicy, Refused, admit, admit_or_refuse, is_test
from producers.door.content import external_references
from producers.door.known_documents import (
    DocumentKey,
    KnownDocuments,
    document_keys,
    known_problem,
)
from producers.door.pdf import pdf_problems
from producers.hl7.errors import Hl7Error, Hl7ValidationError
from tests.shared_data import shared

DOC_ID = "1.2.250.1.213.1.1.9.4242.114900000001"
POLICY = DoorPolicy()


def cda(patient: samples.Patient = samples.DOMINIQUE, text: str = "lettre") -> bytes:
    return samples.cda(samples.LETTER, patient, DOC_ID, text)


def message(document: bytes, *, media: str = "XML", patient: samples.Patient = samples.DOMINIQUE):
    return samples.hl7_message(samples.LETTER, patient, "CTRL0001", document, media=media)


def refusal(raw: bytes, policy: DoorPolicy = POLICY) -> Hl7ValidationError:
    with pytest.raises(Hl7ValidationError) as caught:
        admit(raw, policy)
    return caught.value


def test_a_valid_demo_letter_is_admitted() -> None:
    admitted = admit(message(cda()), POLICY)
    assert admitted.documents[0].content == cda()


def test_the_two_patient_oru_is_refused_at_the_second_pid() -> None:
    first = samples.sample(samples.LAB, samples.DOMINIQUE, 1).decode().split("\r")
    second = samples.sample(samples.LAB, samples.SARAH_LOU, 2).decode().split("\r")
    raw = "\r".join(first[:-1] + second[1:]).encode()  # PID A + its group, PID B + its group
    error = refusal(raw)
    assert (error.hl7_error_code, error.location, error.segment_sequence) == ("198", "PID", 2)
    assert "one patient per message" in error.message


def test_two_txa_and_a_long_msh10_are_refused() -> None:
    lines = message(cda()).decode().split("\r")
    txa = next(line for line in lines if line.startswith("TXA"))
    two_txa = "\r".join([*lines[:-1], txa, ""]).encode()
    assert refusal(two_txa).location == "TXA"
    long_id = message(cda()).replace(b"|CTRL0001|", b"|" + b"9" * 200 + b"|", 1)
    error = refusal(long_id)
    assert (error.hl7_error_code, error.location) == ("102", "MSH-10")


@pytest.mark.parametrize("processing", ["X", "", "PT"])
def test_a_processing_id_outside_p_t_d_is_refused(processing: str) -> None:
    raw = message(cda()).replace(b"|CTRL0001|P|", f"|CTRL0001|{processing}|".encode(), 1)
    error = refusal(raw)
    assert (error.hl7_error_code, error.location) == ("202", "MSH-11")


def test_test_messages_are_accepted_or_refused_per_sender() -> None:
    raw = message(cda()).replace(b"|CTRL0001|P|", b"|CTRL0001|T|", 1)
    assert is_test(admit(raw, POLICY))
    refusing = DoorPolicy(test_messages_by_sender={"RELAIS-DEMO": "refuse"})
    assert refusal(raw, refusing).location == "MSH-11"
    other = DoorPolicy(test_messages="refuse", test_messages_by_sender={"OTHER": "accept"})
    assert refusal(raw, other).hl7_error_code == "202"


def test_the_lps_profile_is_refused_with_its_true_reason() -> None:
    raw = message(cda()).replace(b"2.1^CISIS_CDA_HL7_V2", b"1.0^CISIS_CDA_HL7_LPS")
    error = refusal(raw)
    assert error.location == "MSH-21"
    assert "LPS profile" in error.message
    assert "2.1^CISIS_CDA_HL7_V2" in error.message


HOSTILE_CDA = {
    "doctype": (b"<?xml", b'<!DOCTYPE x [<!ENTITY a "b">]><?xml', "doctype"),
    "stylesheet": (
        b"<ClinicalDocument",
        b'<?xml-stylesheet type="text/xsl" href="http://evil.example/x.xsl"?><ClinicalDocument',
        "processing-instruction",
    ),
    "schema-location": (
        b"<ClinicalDocument ",
        b'<ClinicalDocument xsi:schemaLocation="urn:hl7-org:v3 http://evil.example/cda.xsd" ',
        "schema-location",
    ),
    "truncated": (b"</ClinicalDocument>", b"", "well-formed"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CDA))
def test_hostile_or_broken_cda_is_refused_naming_the_rule(case: str) -> None:
    old, new, rule = HOSTILE_CDA[case]
    body = cda()
    if case == "doctype":
        body = b'<!DOCTYPE x [<!ENTITY a "b">]>' + body.split(b"?>", 1)[-1]
    else:
        assert old in body, case
        body = body.replace(old, new, 1)
    error = refusal(message(body))
    assert error.location == "OBX-5"
    assert rule in error.message


def test_an_external_reference_in_the_body_is_refused_and_a_local_one_is_not() -> None:
    outside = b"</title><reference value='https://evil.example/x.pdf'/>"
    error = refusal(message(cda().replace(b"</title>", outside, 1)))
    assert "external-reference" in error.message
    inside = cda().replace(b"</title>", b"</title><reference value='#section-1'/>", 1)
    assert admit(message(inside), POLICY).documents  # no XSD in POLICY: only the refs speak


def test_a_cda_about_another_patient_than_pid_is_refused() -> None:
    other = replace(samples.DOMINIQUE, family="PAT-QUATRE")
    error = refusal(message(cda(patient=other)))
    assert error.app_error_code == "904"
    assert "patient-birth-name" in error.message
    born = replace(samples.DOMINIQUE, birth_date="19790329")
    assert "patient-birth-date" in refusal(message(cda(patient=born))).message
    ins = replace(samples.DOMINIQUE, ins="279035121518990")
    assert "patient-ins" in refusal(message(cda(patient=ins))).message


def test_a_cda_breaking_the_ci_sis_header_is_refused() -> None:
    body = cda().replace(b'code="fr-FR"', b'code="en-US"', 1)
    assert b"en-US" in body
    assert "language" in refusal(message(body)).message


def test_an_ins_disagreeing_with_the_pid_traits_is_refused() -> None:
    male = replace(samples.DOMINIQUE, sex="M")  # the matricule's first digit says F
    error = refusal(message(cda(patient=male), patient=male))
    assert (error.location, error.app_error_code) == ("PID-3", "904")
    assert "sex" in error.message


def test_a_forbidden_metadmpmss_combination_is_refused() -> None:
    flags = (
        "OBX|3|CE|DESTMSSANTEPAT^^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
        "OBX|4|CE|CONNEXION_SECRETE^^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
    )
    raw = message(cda()) + flags.encode()
    error = refusal(raw)
    assert error.location == "OBX"
    assert "CONNEXION_SECRETE=Y" in error.message


def test_a_patient_mailbox_from_a_20_digit_matricule_is_refused() -> None:
    prt = "PRT||UC||RCT^^participation|||||||||||^^X.400^27903512151898912345@patient.mssante.fr\r"
    error = refusal(message(cda()) + prt.encode())
    assert error.location == "PRT-15"
    assert "15-character matricule" in error.message
    assert "2790351215189891" not in error.message  # the address is not quoted back


def pdf(*extra: bytes) -> bytes:
    return samples.minimal_pdf("compte rendu").replace(b"%%EOF", b"".join(extra) + b"\n%%EOF")


@pytest.mark.parametrize(
    "active",
    [
        b"1 0 obj << /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >> endobj",
        b"9 0 obj << /Type /Action /S /Java#53cript /J#53 (x) >> endobj",
        b"9 0 obj << /S /Launch /F (cmd.exe) >> endobj",
    ],
)
def test_a_pdf_with_active_content_is_refused(active: bytes) -> None:
    assert pdf_problems(pdf()) == []
    [problem] = pdf_problems(pdf(active))
    assert problem.startswith("pdf-active-content")
    error = refusal(message(pdf(active), media="PDF"))
    assert error.location == "OBX-5"


def test_active_content_hidden_in_a_compressed_stream_is_found() -> None:
    hidden = zlib.compress(b"<< /Type /Action /S /JavaScript /JS (x) >>")
    stream = (
        b"7 0 obj << /Type /ObjStm /N 1 /Filter /FlateDecode >> stream\n"
        + hidden
        + b"\nendstream endobj"
    )
    assert "/JavaScript" in pdf_problems(pdf(stream))[0]
    assert pdf_problems(b"MZ not a pdf")[0].startswith("pdf-header")


def key(uid: str, digest: str, action: str = "SUBMIT", parent: str | None = None) -> DocumentKey:
    return DocumentKey(uid, digest, action, parent)


def test_known_ids_refuse_other_content_and_unknown_parents() -> None:
    known = {"1.2.3.4": "aaaa"}
    assert known_problem(known, [key("1.2.3.4", "aaaa")]) is None  # a resend: accepted again
    reused = known_problem(known, [key("1.2.3.4", "bbbb")])
    assert reused is not None
    assert "1.2.3.4" in reused.message
    assert reused.hl7_error_code == "205"
    unknown = known_problem(known, [key("1.2.3.9", "cccc", "REPLACE", "1.2.3.8")])
    assert unknown is not None
    assert "1.2.3.8" in unknown.message
    assert known_problem(known, [key("1.2.3.9", "cccc", "REPLACE", "1.2.3.4")]) is None
    assert known_problem(known, [key("1.2.3.5", "dddd", "DELETE")]) is not None


def test_document_keys_read_the_cda_id_and_its_digest() -> None:
    [document] = document_keys(admit(message(cda()), POLICY))
    assert document.unique_id.startswith("1.2.250.1.213.1.1.9.4242")
    assert document.action == "SUBMIT"
    assert len(document.digest) == 32


def test_admission_crosses_a_process_pool_message_and_refusal_alike() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        admitted = pool.submit(admit, message(cda()), POLICY).result()
        assert admitted == admit(message(cda()), POLICY)
        with pytest.raises(Hl7ValidationError) as caught:
            pool.submit(admit, message(cda()).replace(b"|P|", b"|X|", 1), POLICY).result()
    assert caught.value.location == "MSH-11"
    assert pickle.loads(pickle.dumps(caught.value)).hl7_error_code == "202"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=2000))
def test_hostile_bytes_anywhere_are_refused_with_an_hl7_error_never_a_crash(
    junk: bytes, at: int
) -> None:
    raw = message(cda())
    mutated = raw[:at] + junk + raw[at:]
    error: Hl7Error | None = None
    try:
        admit(mutated, POLICY)
    except Hl7Error as refused:
        error = refused
    if error is not None:
        assert error.hl7_error_code
        assert error.message


def test_with_the_cda_schema_the_demo_documents_pass_and_a_schema_error_is_named() -> None:
    policy = DoorPolicy(cda_xsd_dir=shared("cda-xsd"))
    for raw in (
        samples.sample(samples.LETTER, samples.DOMINIQUE, 1),
        samples.sample(samples.LAB, samples.SARAH_LOU, 1),
        samples.pdf_sample(samples.LAB, samples.DOMINIQUE, 1),
    ):
        assert admit(raw, policy).documents
    broken = cda().replace(b"</title>", b"</title><unknownElement/>", 1)
    error = refusal(message(broken), policy)
    assert "unknownElement" in error.message
    assert error.location == "OBX-5"


def test_two_documents_with_one_id_in_a_message_are_refused() -> None:
    lines = samples.sample(samples.LAB, samples.DOMINIQUE, 3).decode().split("\r")
    obx = next(line for line in lines if line.startswith("OBX|1|ED|"))
    doubled = "\r".join([*lines[:-1], obx, ""]).encode()
    error = refusal(doubled)
    assert (error.hl7_error_code, error.location) == ("205", "OBX-1")


@pytest.mark.parametrize("name", sorted(p.name for p in shared("cda").glob("*.xml")))
def test_the_ans_example_cdas_reach_outside_themselves_only_as_allowed(name: str) -> None:
    """Relative stylesheet and schema paths, WADO links of CR-IMG: kept (not refused)."""
    root, problems = parse(shared("cda", name).read_bytes())
    assert root is not None, problems
    assert external_references(root) == []


def test_a_url_stylesheet_or_a_non_wado_url_is_refused_a_wado_link_is_not() -> None:
    wado = "http://pacs.example/wado?requestType=WADO&amp;studyUID=1.2.3"
    kept = cda().replace(b"</title>", f"</title><reference value='{wado}'/>".encode(), 1)
    assert admit(message(kept), POLICY).documents
    relative = cda().replace(
        b"<ClinicalDocument", b'<?xml-stylesheet href="../CDA-FO.xsl"?><ClinicalDocument', 1
    )
    assert admit(message(relative), POLICY).documents
    network = cda().replace(
        b"<ClinicalDocument", b'<?xml-stylesheet href="//evil/x.xsl"?><ClinicalDocument', 1
    )
    assert "processing-instruction" in refusal(message(network)).message


def test_ordinary_pdfs_with_binary_images_are_not_taken_for_active_content() -> None:
    rng = random.Random(15)
    for _ in range(40):
        image = bytes(rng.getrandbits(8) for _ in range(64 << 10))
        body = b"5 0 obj << /Type /XObject /Subtype /Image /Length 65536 >> stream\n"
        assert pdf_problems(pdf(body + image + b"\nendstream endobj")) == []


def test_a_pdf_zip_bomb_is_refused_without_being_expanded() -> None:
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    stream = b"8 0 obj << /Type /ObjStm /N 1 /Filter /FlateDecode >> stream\n" + bomb
    [problem] = pdf_problems(pdf(stream + b"\nendstream endobj"))
    assert problem.startswith("pdf-too-complex")


def test_the_per_sender_test_policy_matches_the_facility_or_its_first_component() -> None:
    policy = DoorPolicy(test_messages_by_sender={"CHU-X": "refuse"})
    assert not policy.accepts_tests_from("CHU-X")
    assert not policy.accepts_tests_from("CHU-X^1.2.250.1.71.4.2.2^ISO")
    assert policy.accepts_tests_from("CHU-Y^1.2.3^ISO")


def test_unknown_parents_may_be_accepted_after_a_takeover() -> None:
    replacing = [key("1.2.3.9", "cccc", "REPLACE", "1.2.3.8")]
    assert known_problem({}, replacing) is not None
    assert known_problem({}, replacing, refuse_unknown_parents=False) is None


def test_an_id_is_reserved_before_its_send_and_released_when_the_send_fails() -> None:
    registry = KnownDocuments.__new__(KnownDocuments)
    registry.ids = {"1.2.3.4": "aaaa"}
    earlier = registry.reserve([key("1.2.3.4", "bbbb"), key("1.2.3.5", "cccc")])
    assert known_problem(registry.ids, [key("1.2.3.5", "dddd")]) is not None  # a racing send
    registry.release(earlier)
    assert registry.ids == {"1.2.3.4": "aaaa"}


def test_a_bug_in_a_check_is_an_ae_not_an_ar(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> list[str]:
        raise IndexError("a corner case")

    monkeypatch.setattr("producers.door.admit.cda_problems", broken)
    refused = admit_or_refuse(message(cda()), POLICY)
    assert isinstance(refused, Refused)
    assert refused.error.hl7_error_code == "207"
    assert "IndexError" in refused.error.message
    assert refused.header is not None
    assert refused.header.control_id == "CTRL0001"


@pytest.mark.parametrize(
    ("fragment", "rule"),
    [
        ("<xi:include xmlns:xi='http://www.w3.org/2001/XInclude' href='x.xml'/>", "xinclude"),
        ("<linkHtml href='https://evil.example/x'>x</linkHtml>", "external-reference: a linkHtml"),
        ("<linkHtml href='#local'>x</linkHtml>", None),
        ("<reference value='//host/share/x.pdf'/>", "external-reference: a reference"),
        (
            "<x xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' "
            "xsi:noNamespaceSchemaLocation='file:///etc/x.xsd'/>",
            "schema-location",
        ),
        (
            "<x xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' "
            "xsi:schemaLocation='urn:hl7-org:v3 ../infrastructure/cda/CDA.xsd'/>",
            None,
        ),
    ],
)
def test_every_way_out_of_a_cda_is_found_wherever_it_is(fragment: str, rule: str | None) -> None:
    body = cda().replace(b"</title>", b"</title>" + fragment.encode(), 1)
    root, problems = parse(body)
    assert root is not None, problems
    found = external_references(root)
    if rule is None:
        assert found == []
    else:
        assert any(p.startswith(rule) for p in found), found
