"""HL7 lab results -> LOINC with the laboratory's catalogue -> a valid CR-BIO N3."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from domain.cda_validate import CdaSchema, header_problems
from domain.lab_results import LAB_REPORT_MEDIA, MappingStatus
from ops.demo.samples import DOMINIQUE, lab_report_sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from streams.transcode.cda_wrap import WrapFailure
from streams.transcode.lab_catalogue import load_directory
from streams.transcode.lab_codes import LoincTable, UcumUnits
from streams.transcode.lab_report import LabReferences, build_lab_report
from tests.shared_data import shared

KEYRING = Keyring.generate()
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "catalogues"
REFS = LabReferences(
    catalogues=load_directory(FIXTURES),
    loinc=LoincTable.from_csv(
        shared("loinc", "loinc_fr_labels_from_ans_crbio_examples.csv").read_text(encoding="utf-8")
    ),
    ucum=UcumUnits.from_xml(shared("jdv", "UCUM_2.16.840.1.113883.6.8.xml").read_bytes()),
)
V3 = {"v3": "urn:hl7-org:v3"}


def report(facility: str = "LABO-X") -> tuple[dict, bytes, dict]:
    [record] = submissions(
        parse_message(lab_report_sample(DOMINIQUE, 1, facility=facility)),
        sector="LAB",
        keyring=KEYRING,
        now=NOW,
    )

    def opened(purpose: str, envelope: dict) -> bytes:
        return open_envelope(
            KEYRING, Envelope.from_record(envelope), event_id=record["event_id"], purpose=purpose
        )

    content = opened("content", record["document"]["content"])
    traits = json.loads(opened("identity", record["patient"]["identity"]))
    return record, content, traits


def test_the_producer_sends_results_and_pdf_as_a_lab_report() -> None:
    record, _, _ = report()
    assert record["document"]["media_type"] == LAB_REPORT_MEDIA


def test_mapped_results_get_loinc_and_unmapped_keep_the_local_code() -> None:
    record, content, traits = report()
    cda, doc_id, coded = build_lab_report(record, content, traits, REFS)
    assert [c.status for c in coded] == [
        MappingStatus.MAPPED,
        MappingStatus.MAPPED,
        MappingStatus.WAITING,
    ]
    root = etree.fromstring(cda)
    codes = root.xpath("//v3:observation/v3:code/@code", namespaces=V3)
    assert {"3016-3", "718-7"} <= set(codes)
    assert root.xpath("//v3:observation/v3:code/v3:translation/@code", namespaces=V3) == ["CRPX"]
    assert header_problems(cda) == []
    assert CdaSchema.load(shared("cda-xsd")).validate(cda) == []
    assert root.find("v3:id", V3).get("root") == doc_id


def test_a_laboratory_without_catalogue_sends_everything_waiting() -> None:
    record, content, traits = report(facility="LABO-SANS-CATALOGUE")
    _, _, coded = build_lab_report(record, content, traits, REFS)
    assert all(c.status is MappingStatus.WAITING for c in coded)


def test_without_reference_data_lab_reports_are_refused_clearly() -> None:
    record, content, traits = report()
    with pytest.raises(WrapFailure, match="RELAIS_LOINC_TABLE"):
        build_lab_report(record, content, traits, None)
