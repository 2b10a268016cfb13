"""CDA and PDF files (with their sidecar) as producer inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.demo.samples import LETTER, SARAH_LOU, cda
from producers.document_files import DocumentFileError, load_document_file
from tests.shared_data import shared

PDF = b"%PDF-1.4\n% a test document\n%%EOF\n"
PATIENT = {
    "ins": "279035121518989",
    "ins_oid": "1.2.250.1.213.1.4.10",
    "birth_name": "PAT-TROIS",
    "given_names": "DOMINIQUE",
    "birth_date": "19790328",
    "sex": "F",
    "birthplace_code": "51215",
}
DOCUMENT = {"type_code": "18748-4", "type_label": "CR d'imagerie", "unique_id": "1.2.3.4.5"}


def write(tmp_path: Path, name: str, content: bytes, sidecar: dict[str, object] | None) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def test_cda_header_gives_document_and_patient(tmp_path: Path) -> None:
    content = cda(LETTER, SARAH_LOU, "1.2.250.1.999.1.77", "texte")
    path = write(
        tmp_path,
        "letter.xml",
        content,
        {"identity_reliability": "QUAL", "sender": {"facility": "CH-X"}},
    )
    sub = load_document_file(path, content, "HOSPITAL")
    assert sub.document.unique_id == "1.2.250.1.999.1.77"
    assert sub.document.type_code == "11490-0"
    assert sub.document.media_type == "text/xml"
    assert sub.patient.ins == SARAH_LOU.ins
    assert sub.patient.ins_oid == "1.2.250.1.213.1.4.10"
    assert sub.patient.birth_name == "GARCIA-HAMMADI"
    assert sub.patient.given_names == "SARAH-LOU ANNA"
    assert sub.patient.birth_date == "19770121"
    assert sub.patient.reliability == "QUAL"
    assert sub.origin.facility == "CH-X"
    assert sub.origin.control_id.startswith("FILE-")


@pytest.mark.parametrize("name", ["BIO-CR-BIO_2024.01_TSH_1.xml", "LDL-SES_2022.01.xml"])
def test_ans_cda_examples(name: str, tmp_path: Path) -> None:
    content = shared("cda", name).read_bytes()
    sub = load_document_file(tmp_path / name, content, "LAB")
    assert sub.patient.ins is not None
    assert len(sub.patient.ins) == 15
    assert sub.patient.birth_name
    assert sub.patient.reliability is None  # never in a CDA: the identity stage will hold it


def test_pdf_needs_its_sidecar(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "scan.pdf",
        PDF,
        {
            "sector": "RADIOLOGY",
            "document": DOCUMENT,
            "patient": PATIENT,
            "identity_reliability": "QUAL",
            "flags": {"DESTDMP": True},
        },
    )
    sub = load_document_file(path, PDF, None)
    assert sub.sector == "RADIOLOGY"
    assert sub.document.media_type == "application/pdf"
    assert sub.document.unique_id == "1.2.3.4.5"
    assert sub.patient.ins == PATIENT["ins"]
    assert dict(sub.delivery.flags) == {"DESTDMP": True}


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        (None, "give --sector or a sidecar 'sector'"),
        ({"sector": "RADIOLOGY", "patient": PATIENT}, "document: 'type_code' is required"),
        ({"sector": "RADIOLOGY", "document": DOCUMENT}, "patient: 'ins' is required"),
        (
            {"sector": "RADIOLOGY", "document": {**DOCUMENT, "action": "X"}, "patient": PATIENT},
            "'action' is SUBMIT, REPLACE or DELETE",
        ),
        ({"sector": "NOWHERE"}, "give --sector or a sidecar 'sector'"),
    ],
)
def test_pdf_errors_name_the_field(
    tmp_path: Path, sidecar: dict[str, object] | None, message: str
) -> None:
    path = write(tmp_path, "scan.pdf", PDF, sidecar)
    with pytest.raises(DocumentFileError, match=message):
        load_document_file(path, PDF, None)


def test_other_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        DocumentFileError, match="not an HL7 v2 message, a CDA R2 document or a PDF"
    ):
        load_document_file(tmp_path / "notes.txt", b"hello", "LAB")
    with pytest.raises(DocumentFileError, match="not well-formed XML"):
        load_document_file(tmp_path / "x.xml", b"<ClinicalDocument", "LAB")
    bad_json = write(tmp_path, "y.pdf", PDF, None)
    bad_json.with_suffix(".json").write_text("{nope")
    with pytest.raises(DocumentFileError, match="not valid JSON"):
        load_document_file(bad_json, PDF, "LAB")
