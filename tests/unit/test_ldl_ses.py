"""A hospital's discharge letter sent as text (MDM^T02, TXA-2 11490-0) becomes an LDL-SES N3
when it gives the model's sections, else an N1 that says which sections it lacked."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from lxml import etree

from domain.cda_validate import CdaSchema, header_problems
from ops.demo.samples import DOMINIQUE, minimal_pdf
from ops.load.documents import build
from ops.load.profile import LETTER, Defect, PlannedDocument
from ops.load.text_reports import LETTER_SECTIONS, discharge_letter
from producers.hl7 import text_report
from producers.hl7.message import parse_message
from producers.submission import submissions, unique_id
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from streams.transcode.cda_wrap import first_version
from streams.transcode.document_series import cda_id_for
from streams.transcode.ldl_ses import (
    APPROVED,
    IN_PROGRESS,
    build_ldl_ses,
    document_status,
    missing_sections,
)
from streams.transcode.ris_report import build_text_report
from tests.shared_data import shared
from tests.unit.test_cda_build import HEADER, PATIENT

KEYRING = Keyring.generate("k-ldl")
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
V3 = {"v3": "urn:hl7-org:v3"}
PDF = minimal_pdf("Lettre de liaison")
SCHEMA = CdaSchema.load(shared("cda-xsd"))
DOC_ID = "1.2.250.1.213.1.1.9.77.1"


def built(raw: bytes) -> tuple[etree._Element, str]:
    [record] = submissions(parse_message(raw), sector="HOSPITAL", keyring=KEYRING, now=NOW)

    def opened(purpose: str, envelope: dict[str, object]) -> bytes:
        return open_envelope(
            KEYRING, Envelope.from_record(envelope), event_id=record["event_id"], purpose=purpose
        )

    content = opened("content", record["document"]["content"])
    traits = json.loads(opened("identity", record["patient"]["identity"]))
    cda, how = build_text_report(record, content, traits, first_version(record))
    assert header_problems(cda) == []
    assert SCHEMA.validate(cda) == []
    return etree.fromstring(cda), how


def section(root: etree._Element, template: str) -> etree._Element:
    [found] = root.xpath(f"//v3:section[v3:templateId/@root='{template}']", namespaces=V3)
    return found


def test_the_letter_is_read_with_its_status_and_stay() -> None:
    [document] = parse_message(discharge_letter(DOMINIQUE, "DPI1", DOC_ID, pdf=PDF)).documents
    assert (document.media_type, document.type_code) == (text_report.MEDIA, "11490-0")
    report = text_report.decode_text_report(document.content)
    assert [code for code, _, _ in report.sections] == [c for c, _, _ in LETTER_SECTIONS]
    assert report.completion == "AU"
    assert (report.stay_start, report.stay_end) == ("20261118093000+0100", "20261122110000+0100")


def test_a_letter_with_its_sections_becomes_an_ldl_ses_n3() -> None:
    root, how = built(discharge_letter(DOMINIQUE, "DPI2", DOC_ID, pdf=PDF))
    assert how == "LDL-SES N3 from the letter's text"
    assert root.xpath("v3:templateId[@root='1.2.250.1.213.1.1.1.29']/@extension", namespaces=V3)
    status = section(root, "1.2.250.1.213.1.1.2.35.1")
    assert status.xpath(".//v3:observation/v3:value/@code", namespaces=V3) == [APPROVED[0]]
    reason = section(root, "1.3.6.1.4.1.19376.1.5.3.1.3.1")
    assert "Chute à domicile." in reason.xpath(".//text()", namespaces=V3)
    events = section(root, "1.3.6.1.4.1.19376.1.7.3.1.1.13.7")
    [summary] = events.xpath(".//v3:observation[v3:code/@code='MED-142']/v3:value", namespaces=V3)
    assert summary.text == "Séjour sans complication.\nRetour à domicile."
    treatments = section(root, "1.3.6.1.4.1.19376.1.5.3.1.3.22")
    [material] = treatments.xpath(".//v3:manufacturedMaterial", namespaces=V3)
    assert material.find("v3:code", V3).get("nullFlavor") == "UNK"  # no coded product sent
    [line] = treatments.xpath(".//v3:content[@ID='traitements']/text()", namespaces=V3)
    assert line.startswith("Paracétamol")
    assert root.xpath("//v3:section[v3:code/@code='18776-5']/v3:title/text()", namespaces=V3)
    stay = root.find("v3:documentationOf/v3:serviceEvent/v3:effectiveTime", V3)
    assert stay.find("v3:low", V3).get("value") == "20261118093000+0100"
    assert stay.find("v3:high", V3).get("value") == "20261122110000+0100"


def test_the_treatments_are_the_letter_s_text_never_one_medication_per_line() -> None:
    sections = tuple(
        (code, title, ("Pas de changement du traitement habituel :", "poursuivre comme avant."))
        if code == "10183-2"
        else (code, title, lines)
        for code, title, lines in LETTER_SECTIONS
    )
    root, _ = built(discharge_letter(DOMINIQUE, "DPI4", DOC_ID, sections=sections))
    treatments = section(root, "1.3.6.1.4.1.19376.1.5.3.1.3.22")
    [entry] = treatments.xpath("v3:entry/v3:substanceAdministration", namespaces=V3)
    assert entry.xpath("v3:text/v3:reference/@value", namespaces=V3) == ["#traitements"]
    [narrative] = treatments.xpath(".//v3:content[@ID='traitements']", namespaces=V3)
    assert list(narrative.itertext()) == [
        "Pas de changement du traitement habituel :",
        "poursuivre comme avant.",
    ]


def test_a_letter_without_its_stay_start_is_an_n1_naming_pv1_44() -> None:
    raw = discharge_letter(DOMINIQUE, "DPI5", DOC_ID, pdf=PDF, stay=("", "20261122110000+0100"))
    root, how = built(raw)
    assert how == "N1 from the report's PDF: no stay start (PV1-44 admit date/time, an HL7 TS)"
    assert root.find("v3:component/v3:nonXMLBody", V3) is not None


def test_a_stay_without_its_end_stays_open() -> None:
    root, how = built(discharge_letter(DOMINIQUE, "DPI6", DOC_ID, stay=("20261118093000", "")))
    assert how == "LDL-SES N3 from the letter's text"
    stay = root.find("v3:documentationOf/v3:serviceEvent/v3:effectiveTime", V3)
    assert stay.find("v3:low", V3).get("value") == "20261118093000+0100"
    assert stay.find("v3:high", V3) is None


def test_a_letter_missing_a_section_is_an_n1_naming_it() -> None:
    sections = tuple(s for s in LETTER_SECTIONS if s[0] != "10183-2")
    raw = discharge_letter(DOMINIQUE, "DPI3", DOC_ID, pdf=PDF, sections=sections)
    root, how = built(raw)
    assert how.startswith("N1 from the report's PDF: ")
    assert "10183-2" in how
    assert root.find("v3:component/v3:nonXMLBody", V3) is not None


@pytest.mark.parametrize(
    ("completion", "status"),
    [
        ("AU", APPROVED),
        ("la", APPROVED),
        ("IP", IN_PROGRESS),
        ("DI", IN_PROGRESS),
        (None, IN_PROGRESS),
    ],
)
def test_the_document_status_follows_txa_17(
    completion: str | None, status: tuple[str, str]
) -> None:
    assert document_status(completion) == status


def test_the_builder_refuses_a_letter_without_the_model_sections() -> None:
    assert missing_sections([("42349-1", "Motif", "x"), ("42545-4", "S", " ")]) == [
        "42545-4",
        "10183-2",
    ]
    with pytest.raises(ValueError, match="42349-1"):
        build_ldl_ses(HEADER, PATIENT, [("10183-2", "T", "x")], APPROVED, None)


@pytest.mark.parametrize(("seq", "media"), [(0, text_report.MEDIA), (1, "application/pdf")])
def test_a_replayed_letter_and_its_copy_name_the_same_document(seq: int, media: str) -> None:
    """The replay sends every other letter as text, the others as PDF; a copy keeps TXA-12."""
    original = PlannedDocument(seq, 0.0, "HOSPITAL", LETTER, 3, Defect.NONE, 2000, 0)
    copy = dataclasses.replace(original, seq=9, defect=Defect.DUPLICATE, copy_of=seq)
    ids = set()
    for planned in (original, copy):
        sent = build(planned)
        assert sent.hl7 is not None
        message = parse_message(sent.hl7)
        [document] = message.documents
        assert document.media_type == media
        ids.add(unique_id(message, document))
        assert sent.unique_id == cda_id_for(unique_id(message, document))
    assert len(ids) == 1
