"""The transcode stage's CDA check: well-formed, a ClinicalDocument, same id and INS, no XXE."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from domain.cda_validate import CdaSchema
from domain.document_id import HL7V3, cda_id, safe_parser
from ops.demo.samples import (
    DOMINIQUE,
    IMAGING,
    LAB,
    LETTER,
    SARAH_LOU,
    Kind,
    Patient,
    cda,
    sample,
)
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec, Record
from relais.deadletter import StageFailure
from relais.envelope import seal
from relais.keyring import Keyring
from relais.topics import READY
from streams.stage import StageContext
from streams.transcode.stage import (
    TranscodeFailure,
    check_cda,
    handle,
    modalities,
    transcode_stage,
    validate,
)
from tests.builders import qualified as qualified_record
from tests.shared_data import shared

DOC_ID = "1.2.250.1.213.1.1.9.4242.115022000001"
SHARED_CDA = shared("cda")
KEYRING = Keyring.generate("k-transcode")
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
CTX = StageContext(keyring=KEYRING, now=NOW)
CODEC = Codec()
SECRET = "RELAIS-XXE-CANARY-7f3a"


def failure(content: bytes, *, ins: str | None, unique_id: str) -> TranscodeFailure:
    with pytest.raises(TranscodeFailure) as caught:
        check_cda(content, ins=ins, unique_id=unique_id)
    return caught.value


@pytest.mark.parametrize(
    ("kind", "patient", "model"),
    [
        (LAB, DOMINIQUE, "CR-BIO N3"),
        (IMAGING, SARAH_LOU, "CR-IMG N3"),
        (LETTER, SARAH_LOU, "N1 (XDS-SD)"),
    ],
)
def test_demo_cdas_pass_and_name_their_model(kind: Kind, patient: Patient, model: str) -> None:
    content = cda(kind, patient, DOC_ID, "texte")
    assert check_cda(content, ins=patient.ins, unique_id=DOC_ID) == model
    assert check_cda(content, ins=None, unique_id=DOC_ID) == model


def test_unknown_template_without_body_is_generic_n1() -> None:
    content = (
        f'<ClinicalDocument xmlns="{HL7V3}"><templateId root="1.2.3"/>'
        '<id root="1.2.3.4" extension="5"/></ClinicalDocument>'
    ).encode()
    assert check_cda(content, ins=None, unique_id="1.2.3.4.5") == "CDA R2 N1"


@pytest.mark.parametrize(
    "content",
    [b"", b"not xml at all", b"<ClinicalDocument", b"<a><b></a>", b"\xff\xfe<x/>"],
)
def test_not_well_formed(content: bytes) -> None:
    exc = failure(content, ins=None, unique_id=DOC_ID)
    assert exc.reason_code == "cda-not-well-formed"
    assert isinstance(exc, StageFailure)


@pytest.mark.parametrize(
    "content",
    [
        b"<ClinicalDocument/>",  # no namespace
        b'<ClinicalDocument xmlns="urn:hl7-org:v2"/>',
        f'<Document xmlns="{HL7V3}"><id root="1.2" extension="3"/></Document>'.encode(),
        b"<html><body>CR</body></html>",
    ],
)
def test_wrong_root_is_invalid(content: bytes) -> None:
    assert failure(content, ins=None, unique_id=DOC_ID).reason_code == "cda-invalid"


def test_id_mismatch_is_invalid() -> None:
    content = cda(LAB, DOMINIQUE, DOC_ID, "texte")
    exc = failure(content, ins=DOMINIQUE.ins, unique_id=DOC_ID + "9")
    assert exc.reason_code == "cda-invalid"
    assert "id" in str(exc)


def test_ins_mismatch() -> None:
    content = cda(LAB, DOMINIQUE, DOC_ID, "texte")
    exc = failure(content, ins=SARAH_LOU.ins, unique_id=DOC_ID)
    assert exc.reason_code == "cda-ins-mismatch"
    assert SARAH_LOU.ins not in str(exc)
    assert DOMINIQUE.ins not in str(exc)


def test_ins_under_a_non_ins_oid_is_a_mismatch() -> None:
    """The INS is the matricule *under an INS OID*: the same digits as a local id are not it.

    The DMP (sandboxes.dmp.check) requires the INS under the submitted OID, so a CDA that
    passes here with the number under a local OID is later refused as PatientMismatch.
    """
    content = cda(LAB, DOMINIQUE, DOC_ID, "texte").replace(
        b'<id root="1.2.250.1.213.1.4.10"', b'<id root="1.2.250.1.71.4.2.7"'
    )
    assert b"1.2.250.1.213.1.4.10" not in content
    assert failure(content, ins=DOMINIQUE.ins, unique_id=DOC_ID).reason_code == "cda-ins-mismatch"


# XXE ------------------------------------------------------------------------


def _xxe_document(system_id: str, *, in_id: bool = False, in_target: bool = False) -> bytes:
    """A CDA declaring an external entity, used in the text (and optionally in attributes)."""
    ext = "&xxe;" if in_id else "5"
    target = "&xxe;" if in_target else "279035121518989"
    return f"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "{system_id}">]>
<ClinicalDocument xmlns="{HL7V3}">
  <templateId root="1.2.250.1.213.1.1.1.55"/>
  <id root="1.2.3.4" extension="{ext}"/>
  <recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="{target}"/></patientRole></recordTarget>
  <component><structuredBody><component><section><text>&xxe;</text></section></component></structuredBody></component>
</ClinicalDocument>
""".encode()


def _outcome(content: bytes, *, ins: str | None, unique_id: str) -> str:
    try:
        return check_cda(content, ins=ins, unique_id=unique_id)
    except TranscodeFailure as exc:
        return f"{exc.reason_code}: {exc}"


def test_external_entity_to_etc_passwd_is_not_expanded() -> None:
    content = _xxe_document("file:///etc/passwd")
    outcome = _outcome(content, ins=None, unique_id="1.2.3.4.5")
    assert "root:" not in outcome
    assert outcome == "CR-BIO N3"  # it passes, without reading the file
    tree = etree.tostring(etree.fromstring(content, safe_parser()))
    assert b"<text>&xxe;</text>" in tree  # the reference stays a reference
    assert b"root:" not in tree
    assert b"/bin/" not in tree


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


def test_external_entity_to_a_local_file_is_not_expanded(secret_file: Path) -> None:
    content = _xxe_document(secret_file.as_uri())
    outcome = _outcome(content, ins=None, unique_id="1.2.3.4.5")
    assert outcome == "CR-BIO N3"
    assert SECRET.encode() not in etree.tostring(etree.fromstring(content, safe_parser()))


def test_an_entity_in_the_id_cannot_forge_the_unique_id(secret_file: Path) -> None:
    content = _xxe_document(secret_file.as_uri(), in_id=True)
    assert cda_id(content) != f"1.2.3.4.{SECRET}"
    outcome = _outcome(content, ins=None, unique_id=f"1.2.3.4.{SECRET}")
    # An external entity in an attribute is not even well-formed; either way it must fail.
    assert outcome.startswith(("cda-not-well-formed", "cda-invalid"))
    assert SECRET not in outcome


def test_an_entity_in_record_target_cannot_forge_the_ins(secret_file: Path) -> None:
    content = _xxe_document(secret_file.as_uri(), in_target=True)
    # Were the entity expanded, the recordTarget would carry SECRET and this would pass.
    outcome = _outcome(content, ins=SECRET, unique_id="1.2.3.4.5")
    assert outcome.startswith(("cda-not-well-formed", "cda-ins-mismatch"))
    assert SECRET not in outcome


def test_external_dtd_and_parameter_entities_are_not_loaded(secret_file: Path) -> None:
    content = f"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument SYSTEM "{secret_file.as_uri()}" [
  <!ENTITY % p SYSTEM "{secret_file.as_uri()}"> %p;
]>
<ClinicalDocument xmlns="{HL7V3}"><id root="1.2.3.4" extension="5"/></ClinicalDocument>
""".encode()
    outcome = _outcome(content, ins=None, unique_id="1.2.3.4.5")
    assert SECRET not in outcome


def test_network_entities_are_not_fetched() -> None:
    content = _xxe_document("http://192.0.2.1/never")  # TEST-NET-1: unroutable
    started = time.monotonic()
    _outcome(content, ins=None, unique_id="1.2.3.4.5")
    assert time.monotonic() - started < 1.0


def test_billion_laughs_is_not_expanded() -> None:
    entities = ['<!ENTITY a0 "hahahahahahahahahahahahahahahahahahahahahahahahahahahahaha">']
    entities += [f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)]
    content = f"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [{"".join(entities)}]>
<ClinicalDocument xmlns="{HL7V3}"><id root="1.2.3.4" extension="5"/>
<component><structuredBody><text>&a9;</text></structuredBody></component></ClinicalDocument>
""".encode()
    started = time.monotonic()
    outcome = _outcome(content, ins=None, unique_id="1.2.3.4.5")
    assert time.monotonic() - started < 1.0
    assert "hahaha" not in outcome


# The real ANS examples -------------------------------------------------------

ANS_MODELS = {
    "BIO-CR-BIO_2024.01_TSH_1.xml": "CR-BIO N3",
    "IMG_CR_IMG_2024.01.xml": "CR-IMG N3",
    "LDL-SES_2022.01.xml": "LDL-SES N3",
    "DOC_NON_STRUCTURE_CDA-R2-N1.xml": "N1 (XDS-SD)",
}


def test_ans_examples_are_present() -> None:
    assert SHARED_CDA.is_dir(), f"missing {SHARED_CDA}"
    assert sorted(p.name for p in SHARED_CDA.glob("*.xml")) == sorted(ANS_MODELS)


@pytest.mark.parametrize("name", sorted(ANS_MODELS))
def test_ans_examples_parse_and_get_a_model(name: str) -> None:
    content = (SHARED_CDA / name).read_bytes()
    root = etree.fromstring(content, safe_parser())
    assert root.tag == f"{{{HL7V3}}}ClinicalDocument"
    unique_id = cda_id(content)
    assert unique_id is not None
    assert check_cda(content, ins=None, unique_id=unique_id) == ANS_MODELS[name]


@pytest.mark.parametrize("name", sorted(ANS_MODELS))
def test_ans_examples_carry_the_ans_test_patient(name: str) -> None:
    content = (SHARED_CDA / name).read_bytes()
    unique_id = cda_id(content)
    assert unique_id is not None
    assert check_cda(content, ins=DOMINIQUE.ins, unique_id=unique_id) == ANS_MODELS[name]
    with pytest.raises(TranscodeFailure) as caught:
        check_cda(content, ins=SARAH_LOU.ins, unique_id=unique_id)
    assert caught.value.reason_code == "cda-ins-mismatch"


# handle ------------------------------------------------------------------------


def qualified(kind: Kind = LAB, patient: Patient = DOMINIQUE) -> Record:
    [submitted] = submissions(
        parse_message(sample(kind, patient, 1)), sector="LAB", keyring=KEYRING, now=NOW
    )
    _, record = CODEC.decode(
        CODEC.encode("IdentityQualified", qualified_record(submitted, NOW)),
        expected="IdentityQualified",
    )
    return record


def test_handle_emits_a_ready_document() -> None:
    record = qualified()
    out, audit = handle(record, CTX)
    assert audit.record["action"] == "TRANSCODED"
    assert out.topic == READY
    assert out.record_type == "DocumentReady"
    assert out.key == record["patient"]["patient_key"].encode()
    assert out.record["cda_model"] == "CR-BIO N3"
    assert out.record["document"] == record["document"]
    CODEC.encode("DocumentReady", out.record)


def test_handle_refuses_a_pdf_that_is_not_a_pdf() -> None:
    record = qualified()  # its content is a CDA, but it claims to be a PDF
    record = {**record, "document": {**record["document"], "media_type": "application/pdf"}}
    with pytest.raises(StageFailure) as caught:
        handle(record, CTX)
    assert caught.value.reason_code == "pdf-not-wrappable"


def test_handle_refuses_other_media() -> None:
    record = qualified()
    record = {**record, "document": {**record["document"], "media_type": "image/png"}}
    with pytest.raises(TranscodeFailure) as caught:
        handle(record, CTX)
    assert caught.value.reason_code == "unsupported-media"


def test_handle_checks_the_sealed_content_against_the_sealed_ins() -> None:
    record = qualified()
    other = cda(LAB, SARAH_LOU, record["document"]["unique_id"], "texte")
    content = seal(KEYRING, other, event_id=record["event_id"], purpose="content").to_record()
    record = {**record, "document": {**record["document"], "content": content}}
    with pytest.raises(TranscodeFailure) as caught:
        handle(record, CTX)
    assert caught.value.reason_code == "cda-ins-mismatch"


def test_stage_declaration() -> None:
    stage = transcode_stage(None)
    assert stage.name == "transcode"
    assert stage.record_type == "IdentityQualified"


# validation before delivery ---------------------------------------------------


def test_documents_failing_the_ci_sis_header_rules_are_refused() -> None:
    content = cda(LAB, DOMINIQUE, "1.2.250.1.213.1.1.9.4242.77", "texte")
    broken = content.replace(b'<realmCode code="FR"/>', b"")
    assert broken != content
    with pytest.raises(TranscodeFailure) as caught:
        validate(broken, None)
    assert caught.value.reason_code == "cda-header-invalid"
    assert "realm-code" in str(caught.value)


def test_documents_failing_the_schema_are_refused() -> None:
    schema = CdaSchema.load(shared("cda-xsd"))
    content = cda(LAB, DOMINIQUE, "1.2.250.1.213.1.1.9.4242.78", "texte")
    validate(content, schema)  # the demo documents are valid
    broken = content.replace(b"<title>", b"<titre>x</titre><title>", 1)
    with pytest.raises(TranscodeFailure) as caught:
        validate(broken, schema)
    assert caught.value.reason_code == "cda-schema-invalid"
    assert "titre" in str(caught.value)


def test_modalities_come_from_the_service_event() -> None:
    assert modalities(shared("cda", "IMG_CR_IMG_2024.01.xml").read_bytes()) == ["CT"]
    assert modalities(cda(LAB, DOMINIQUE, "1.2.3.4.5", "x")) == []
