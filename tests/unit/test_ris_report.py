"""A report sent as text (RIS ORU^R01, hospital MDM^T02): read at the door, built by the
transcode stage as a CR-IMG N3 when the message has what the model needs, else as an N1 that
says why (docs/cda.md)."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime

import pytest
from lxml import etree

from domain.cda_validate import CdaSchema, header_problems
from domain.lab_results import LAB_REPORT_MEDIA
from ops.demo.samples import DOMINIQUE, lab_report_sample, minimal_pdf
from ops.load.documents import build
from ops.load.profile import CR_IMG, Defect, PlannedDocument
from ops.load.text_reports import RisStudy, ris_text_report
from producers.door.admit import DoorPolicy, admit
from producers.hl7 import text_report
from producers.hl7.errors import Hl7ValidationError
from producers.hl7.message import parse_message
from producers.submission import submissions, unique_id
from relais.contracts import Codec, Record
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from streams.stage import StageContext
from streams.transcode.cda_wrap import first_version
from streams.transcode.document_series import cda_id_for
from streams.transcode.ris_report import build_text_report
from streams.transcode.stage import handle
from tests.builders import qualified
from tests.shared_data import shared

KEYRING = Keyring.generate("k-ris")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
V3 = {"v3": "urn:hl7-org:v3"}
PDF = minimal_pdf("Compte rendu d'imagerie")
SCHEMA = CdaSchema.load(shared("cda-xsd"))


def submitted(raw: bytes, sector: str = "RADIOLOGY") -> tuple[Record, bytes, dict[str, object]]:
    """The DocumentSubmitted record of a one-document message, its content and traits."""
    [record] = submissions(parse_message(raw), sector=sector, keyring=KEYRING, now=NOW)

    def opened(purpose: str, envelope: Record) -> bytes:
        return open_envelope(
            KEYRING, Envelope.from_record(envelope), event_id=record["event_id"], purpose=purpose
        )

    content = opened("content", record["document"]["content"])
    return record, content, json.loads(opened("identity", record["patient"]["identity"]))


def built(raw: bytes) -> tuple[etree._Element, str]:
    record, content, traits = submitted(raw)
    cda, how = build_text_report(record, content, traits, first_version(record))
    assert header_problems(cda) == []
    assert SCHEMA.validate(cda) == []
    return etree.fromstring(cda), how


def test_a_ris_text_report_is_one_document_the_stage_builds() -> None:
    message = parse_message(ris_text_report(DOMINIQUE, "RIS1", pdf=PDF))
    [document] = message.documents
    assert document.media_type == text_report.MEDIA
    assert (document.type_code, document.result_status) == ("18748-4", "F")
    assert message.results == ()
    report = text_report.decode_text_report(document.content)
    assert [code for code, _, _ in report.sections] == ["55752-0", "55111-9", "59776-5", "19005-8"]
    assert report.sections[2][2] == "Parenchyme pulmonaire normal.\nPas d'épanchement."
    assert report.procedure == ("24627-2", "CT thorax", "LN")
    assert report.modality == "CT"
    assert report.target_site == ("302551006", "thorax entier", "SCT")
    assert report.study_uid == "1.2.250.1.999.9.18748.2"
    assert report.pdf == PDF


def test_the_content_round_trips() -> None:
    report = text_report.TextReport("18748-4", "CR", (("", "Texte", "ligne"),), pdf=None)
    assert text_report.decode_text_report(text_report.encode_text_report(report)) == report
    with pytest.raises(ValueError, match="not a text report"):
        text_report.decode_text_report(b'{"results": []}')


def test_the_study_may_come_in_an_obx_113014_and_the_region_in_an_obx_123014() -> None:
    raw = ris_text_report(DOMINIQUE, "RIS2", study=RisStudy(study_uid="", body_site=""))
    raw = raw.replace(
        b"OBX|10|",
        b"OBX|8|ST|113014^Study^DCM||1.2.250.1.999.9.7||||||F\r"
        b"OBX|9|CWE|123014^Target Region^DCM||302551006^thorax entier^SCT||||||F\rOBX|10|",
    )
    [document] = parse_message(raw).documents
    report = text_report.decode_text_report(document.content)
    assert report.study_uid == "1.2.250.1.999.9.7"
    assert report.target_site == ("302551006", "thorax entier", "SCT")


def test_lab_reports_stay_lab_reports() -> None:
    """Numeric results with the PDF: a CR-BIO, not a text report."""
    [record] = submissions(
        parse_message(lab_report_sample(DOMINIQUE, 1)), sector="LAB", keyring=KEYRING, now=NOW
    )
    assert record["document"]["media_type"] == LAB_REPORT_MEDIA


def test_an_oru_with_text_results_but_no_sign_of_imaging_is_not_a_text_report() -> None:
    raw = ris_text_report(DOMINIQUE, "RIS3", study=RisStudy(modality="", study_uid=""), pdf=PDF)
    message = parse_message(raw)
    assert message.documents[0].media_type == "application/pdf"
    assert len(message.results) == 4  # text results of a lab report, with its PDF


def test_obr_24_pt_is_physical_therapy_in_table_0074_not_imaging() -> None:
    physio = RisStudy(procedure="PHYSIO^Bilan kiné^L", modality="PT", study_uid="")
    message = parse_message(ris_text_report(DOMINIQUE, "RIS3b", study=physio, pdf=PDF))
    assert message.documents[0].media_type == "application/pdf"  # not a CR d'imagerie
    pet = ris_text_report(DOMINIQUE, "RIS3c", study=RisStudy(modality="PT"))
    assert parse_message(pet).documents[0].media_type == text_report.MEDIA  # told by its UID


@pytest.mark.parametrize("section", ["RUS", "XRC", "RAD", "CUS", "MG"])
def test_the_imaging_sections_of_table_0074_and_dicom_say_imaging(section: str) -> None:
    raw = ris_text_report(DOMINIQUE, "RIS3d", study=RisStudy(modality=section, study_uid=""))
    assert parse_message(raw).documents[0].media_type == text_report.MEDIA


def test_a_message_with_several_studies_is_an_n1_saying_why() -> None:
    raw = ris_text_report(DOMINIQUE, "RIS12").replace(
        b"\rZDS|",
        b"\rOBR|2|RIS12B^RIS|RIS12B^RIS|24558-9^CT abdomen^LN|||20261122100000+0100"
        b"||||||||^^^818981001&abdomen&SCT|||ACC0002||||||CT"
        b"\rOBX|20|TX|19005-8^Conclusion^LN||Abdomen normal.||||||F\rZDS|",
    )
    root, how = built(raw)
    assert how == (
        "N1 from the text: the message holds 2 studies (OBR): a CR-IMG N3 describes one, "
        "send one study (OBR) per message"
    )
    text = base64.b64decode(root.find("v3:component/v3:nonXMLBody/v3:text", V3).text).decode()
    assert "Abdomen normal." in text
    assert "Examen normal." in text


def test_a_report_line_with_the_wrong_status_is_refused() -> None:
    raw = ris_text_report(DOMINIQUE, "RIS4").replace(
        b"Examen normal.||||||F", b"Examen normal.||||||C"
    )
    with pytest.raises(Hl7ValidationError) as caught:
        parse_message(raw)
    assert caught.value.location == "OBX-11"


def test_the_door_admits_a_text_report_and_checks_its_pdf() -> None:
    assert admit(ris_text_report(DOMINIQUE, "RIS5", pdf=PDF), DoorPolicy()).documents
    bad = ris_text_report(DOMINIQUE, "RIS6", pdf=PDF.replace(b"%PDF-1.4", b"%PDX-1.4"))
    with pytest.raises(Hl7ValidationError, match="document OBX-1 1 refused"):
        admit(bad, DoorPolicy())


def test_a_complete_report_becomes_a_cr_img_n3_with_the_technique_and_the_catalog() -> None:
    root, how = built(ris_text_report(DOMINIQUE, "RIS7", pdf=PDF))
    assert how == "CR-IMG N3 from the report's text"
    assert "1.2.250.1.213.1.1.1.45" in root.xpath("v3:templateId/@root", namespaces=V3)
    technique = root.xpath(
        "//v3:procedure[v3:templateId/@root='1.2.840.10008.9.14']", namespaces=V3
    )
    [procedure] = technique
    assert procedure.find("v3:code", V3).get("code") == "24627-2"
    assert procedure.find("v3:methodCode", V3).get("code") == "CT"
    assert procedure.find("v3:targetSiteCode", V3).get("code") == "302551006"
    catalog = root.xpath(
        "//v3:section[v3:templateId/@root='1.2.250.1.213.1.1.2.217']", namespaces=V3
    )
    assert "1.2.250.1.999.9.18748.2" in "".join(catalog[0].itertext())
    conclusion = root.xpath("//v3:section[v3:code/@code='19005-8']//text()", namespaces=V3)
    assert "Examen normal." in conclusion
    assert root.xpath("//v3:observationMedia/v3:value/@mediaType", namespaces=V3) == [
        "application/pdf"
    ]


@pytest.mark.parametrize(
    ("study", "reason"),
    [
        (RisStudy(study_uid=""), "no Study Instance UID"),
        (RisStudy(study_uid="not-an-oid"), "no Study Instance UID"),
        (RisStudy(procedure="THX^Scanner thorax^L"), "not coded in LOINC"),
        (RisStudy(modality="XX"), "OBR-24 is not a DICOM acquisition modality"),
        (RisStudy(body_site="T-D3000&thorax&99LOCAL"), "no anatomical location"),
        (RisStudy(performed_at=""), "no study date and time (OBR-7"),
        (RisStudy(performed_at="20261340"), "no study date and time (OBR-7"),
    ],
)
def test_a_report_missing_what_the_model_needs_is_an_n1_saying_why(
    study: RisStudy, reason: str
) -> None:
    root, how = built(ris_text_report(DOMINIQUE, "RIS8", study=study, pdf=PDF))
    assert how.startswith("N1 from the report's PDF: ")
    assert reason in how
    body = root.find("v3:component/v3:nonXMLBody/v3:text", V3)
    assert body.get("mediaType") == "application/pdf"


@pytest.mark.parametrize(
    ("obr7", "performed"),
    [
        ("20261122093000+0100", "20261122093000+0100"),
        ("20261122093000", "20261122093000+0100"),  # no offset: Europe/Paris (winter)
        ("20260615140500", "20260615140500+0200"),  # summer time
    ],
)
def test_the_exam_time_is_obr_7_never_the_reception_time(obr7: str, performed: str) -> None:
    root, how = built(ris_text_report(DOMINIQUE, "RIS11", study=RisStudy(performed_at=obr7)))
    assert how == "CR-IMG N3 from the report's text"
    event = root.xpath(
        "v3:documentationOf/v3:serviceEvent/v3:effectiveTime/v3:low/@value", namespaces=V3
    )
    technique = root.xpath(
        "//v3:procedure[v3:templateId/@root='1.2.840.10008.9.14']/v3:effectiveTime/@value",
        namespaces=V3,
    )
    assert event == technique == [performed]
    assert root.find("v3:effectiveTime", V3).get("value") != performed  # the document's time


def test_without_a_pdf_the_n1_carries_the_text() -> None:
    root, how = built(ris_text_report(DOMINIQUE, "RIS9", study=RisStudy(study_uid="")))
    assert how.startswith("N1 from the text: ")
    body = root.find("v3:component/v3:nonXMLBody/v3:text", V3)
    assert body.get("mediaType") == "text/plain"
    assert "Examen normal." in base64.b64decode(body.text).decode()


def test_the_stage_builds_it_and_the_audit_says_how() -> None:
    record, _, _ = submitted(ris_text_report(DOMINIQUE, "RIS10", pdf=PDF))
    codec = Codec()
    _, ready = codec.decode(
        codec.encode("IdentityQualified", qualified(record, NOW)), expected="IdentityQualified"
    )
    out, audit = handle(ready, StageContext(keyring=KEYRING, now=NOW))
    assert out.record["cda_model"] == "CR-IMG N3"
    assert out.record["modalities"] == ["CT"]
    assert out.record["document"]["media_type"] == "text/xml"
    assert audit.record["detail"] == "CR-IMG N3 from the report's text"
    codec.encode("DocumentReady", out.record)


def test_a_replayed_ris_report_and_its_copy_name_the_same_document() -> None:
    """The replay's RIS sends its reports as text; a copy keeps OBR-3 (a new MSH-10)."""
    original = PlannedDocument(4, 0.0, "RADIOLOGY", CR_IMG, 3, Defect.NONE, 2000, 0)
    copy = dataclasses.replace(original, seq=9, defect=Defect.DUPLICATE, copy_of=4)
    ids = set()
    for planned in (original, copy):
        sent = build(planned)
        assert sent.hl7 is not None
        message = parse_message(sent.hl7)
        [document] = message.documents
        assert document.media_type == text_report.MEDIA
        ids.add(unique_id(message, document))
        assert sent.unique_id == cda_id_for(unique_id(message, document))
    assert len(ids) == 1


def test_a_corrected_then_deleted_text_report_stays_one_series() -> None:
    """ORC-1 RO with OBX-11 C replaces the CR-IMG (relatedDocument RPLC), CA with D deletes
    the current version, as for any document Relais builds."""
    state: dict[str, str] = {}
    context = StageContext(keyring=KEYRING, now=NOW, state=state)
    codec = Codec()
    first = ris_text_report(DOMINIQUE, "RISA1", order_id="RISA")
    steps = [first]
    for order_control, status, control_id in (("RO", "C", "RISA2"), ("CA", "D", "RISA3")):
        raw = ris_text_report(DOMINIQUE, control_id, order_id="RISA")
        raw = raw.replace(b"ORC|NW|", f"ORC|{order_control}|".encode())
        steps.append(raw.replace(b"||||||F\r", f"||||||{status}\r".encode()))
    ready = []
    for raw in steps:
        record, _, _ = submitted(raw)
        _, qualified_record = codec.decode(
            codec.encode("IdentityQualified", qualified(record, NOW)), expected="IdentityQualified"
        )
        ready.append(handle(qualified_record, context)[0].record)
    created, replaced, deleted = (r["document"] for r in ready)
    assert replaced["parent_unique_id"] == created["unique_id"] != replaced["unique_id"]
    assert deleted["action"] == "DELETE"
    assert deleted["unique_id"] == replaced["unique_id"]
    assert [r["cda_model"] for r in ready] == ["CR-IMG N3", "CR-IMG N3", "deletion"]
