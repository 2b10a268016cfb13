"""The bytes of each planned document (pure, deterministic).

A lab SGL sends an ORU^R01 with a finished CR-BIO N3 (5-200 results and its PDF
copy); a RIS its report as text with the study and the PDF (ORU^R01, IHE
Radiology style: Relais builds the CR-IMG N3), one report in four without the
study's UID nor the PDF (Relais wraps its text as an N1); a hospital DPI an MDM^T02 with the
lettre de liaison (PDF of 50 KB-1 MB): every other one as text with its sections (Relais
builds the LDL-SES N3), the others as the PDF alone (Relais wraps it as an N1); a city
doctor's software a CDA file through the producer library. A broken CDA is a
truncated one in a CDA-carrying message, whatever the kind. Built with the
project's own CDA builders and HL7 sample builders; the same planned document
always gives the same bytes (a duplicate differs from its original only by its
MSH-10).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from domain.lab_results import LOINC_OID, CodedResult, LabResult, MappingStatus, ValueType
from ops.demo.samples import (
    INS_TEST_OID,
    Patient,
    cda,
    hl7_message,
    minimal_pdf,
)
from ops.demo.samples import Kind as SampleKind
from ops.load.profile import (
    CONSULTATION,
    CR_BIO,
    CR_IMG,
    LETTER,
    Defect,
    PlannedDocument,
    SyntheticPatient,
    synthetic_patient,
)
from ops.load.text_reports import RisStudy, discharge_letter, ris_text_report
from producers.document_files import FileSubmission
from producers.hl7.message import PatientIdentity
from producers.submission import Delivery, DocumentInput, Origin
from streams.transcode.document_series import cda_id_for

DOC_ROOT: Final = "1.2.250.1.213.1.1.9.4343"
TITLES: Final = {
    "11502-2": ("CR d'examens biologiques", "1.2.250.1.213.1.1.1.55", "ORU^R01^ORU_R01"),
    "18748-4": ("CR d'imagerie médicale", "1.2.250.1.213.1.1.1.45", "ORU^R01^ORU_R01"),
    "11490-0": (
        "Lettre de liaison à la sortie d'un établissement de soins",
        "1.2.250.1.213.1.1.1.29",
        "MDM^T02^MDM_T02",
    ),
    "11488-4": ("CR ou fiche de consultation ou de visite", "", "CDA"),
}
#: (LOINC, label, unit, low, high) of the numeric exams a CR-BIO cycles through
EXAMS: Final = (
    ("3016-3", "Thyréostimuline [Unités arbitraires/Volume] Sérum/Plasma ; Numérique", "m[IU]/L",
     0.4, 4.0),
    ("718-7", "Hémoglobine [Masse/Volume] Sang ; Numérique", "g/dL", 12.0, 16.0),
)  # fmt: skip


@dataclass(frozen=True)
class Built:
    """What the sender sends for one planned document."""

    seq: int
    control_id: str  # MSH-10 (or the file submission's control id)
    unique_id: str  # the CDA id the DMP files it under
    hl7: bytes | None  # for MLLP and Publisher.submit_*
    file: FileSubmission | None  # for Publisher.publish_document (city doctors)

    @property
    def size(self) -> int:
        if self.hl7 is not None:
            return len(self.hl7)
        assert self.file is not None
        return len(self.file.document.content)

    @property
    def sha256(self) -> str:
        """Of the raw message: what a dead letter of the MLLP gateway carries."""
        return hashlib.sha256(self.hl7 or b"").hexdigest()


def padded_pdf(text: str, size: int) -> bytes:
    """A one-page PDF of about ``size`` bytes: the text, plus a filler stream object."""
    return minimal_pdf(text, filler_bytes=size)


def unique_id(doc: PlannedDocument) -> str:
    """The CDA id: a duplicate carries its original's."""
    original = doc.copy_of if doc.copy_of is not None else doc.seq
    return f"{DOC_ROOT}.{doc.kind.type_code.replace('-', '')}{original:010d}"


def build(doc: PlannedDocument) -> Built:
    """The message (or file submission) of ``doc``."""
    patient = synthetic_patient(doc.patient)
    uid = unique_id(doc)
    title, template, message_type = TITLES[doc.kind.type_code]
    kind = SampleKind(doc.kind.name, doc.kind.type_code, title, template, message_type)
    reliability = "PROV" if doc.defect is Defect.UNQUALIFIED else "QUAL"
    person = Patient(
        patient.ins,
        patient.family,
        patient.given,
        patient.birth_date,
        patient.sex,
        patient.birthplace,
        reliability,
    )
    original = doc.copy_of if doc.copy_of is not None else doc.seq  # a copy: same values
    pdf = padded_pdf(f"{title}: document de charge {uid}", doc.pdf_bytes)
    if doc.kind in (CR_IMG, LETTER) and doc.defect is not Defect.BROKEN_CDA:
        return _built_by_relais(doc, kind, person, original, pdf)
    content = cda(
        kind,
        person,
        uid,
        "Examen sans particularité. Pas d'anomalie décelable.",
        pdf=pdf,
        results=lab_results(doc.results, original) if doc.kind is CR_BIO else (),
    )
    if doc.defect is Defect.BROKEN_CDA:  # still base64-clean, no longer well-formed XML
        content = content[: len(content) // 2]
    if doc.kind is CONSULTATION:
        return Built(doc.seq, doc.control_id, uid, None, _file(doc, patient, uid, content))
    raw = hl7_message(kind, person, doc.control_id, content)
    return Built(doc.seq, doc.control_id, uid, _defective(doc, raw), None)


def _defective(doc: PlannedDocument, raw: bytes) -> bytes:
    if doc.defect is Defect.BAD_HL7:  # no PID segment: the gateway answers AE
        return b"\r".join(s for s in raw.split(b"\r") if not s.startswith(b"PID|"))
    return raw


def _built_by_relais(
    doc: PlannedDocument, kind: SampleKind, person: Patient, original: int, pdf: bytes
) -> Built:
    """A RIS's text report (Relais builds the CR-IMG N3), a hospital's letter as text (the
    LDL-SES N3) or as a PDF (an N1); ``unique_id`` is the CDA id Relais gives it."""
    if doc.kind is CR_IMG:  # one in four without the study's UID nor PDF: an N1 of its text
        order, complete = f"RIS{original:010d}", original % 4 != 3
        study = RisStudy(study_uid=f"1.2.250.1.999.9.18748.{original + 1}" if complete else "")
        raw = ris_text_report(
            person, doc.control_id, study=study, pdf=pdf if complete else None, order_id=order
        )
        producer_id = f"{order}.1"  # OBR-3 and the document's OBX-1
    elif original % 2 == 0:  # half the letters as text with their sections: LDL-SES N3
        producer_id = unique_id(doc)  # TXA-12: a copy keeps its original's
        raw = discharge_letter(person, doc.control_id, producer_id, pdf=pdf)
    else:  # the other half as a PDF: N1
        producer_id = unique_id(doc)
        raw = hl7_message(kind, person, doc.control_id, pdf, "PDF").replace(
            f"|{doc.control_id}|||||AU".encode(), f"|{producer_id}|||||AU".encode()
        )
    return Built(doc.seq, doc.control_id, cda_id_for(producer_id), _defective(doc, raw), None)


def lab_results(count: int, seed: int) -> tuple[CodedResult, ...]:
    """``count`` numeric results cycling over :data:`EXAMS`, values around the range."""
    out = []
    for i in range(max(1, count)):
        loinc, label, unit, low, high = EXAMS[i % len(EXAMS)]
        value = low + (high - low) * (((seed * 31 + i * 17) % 140) / 100.0 - 0.2)
        flag = "H" if value > high else "L" if value < low else "N"
        result = LabResult(
            f"X{i % len(EXAMS)}",
            label.split(" [")[0],
            f"{value:.2f}",
            ValueType.NUMERIC,
            unit,
            f"{low}-{high}",
            flag,
        )
        out.append(CodedResult(result, loinc, LOINC_OID, label, unit, MappingStatus.MAPPED))
    return tuple(out)


def _file(
    doc: PlannedDocument, patient: SyntheticPatient, uid: str, content: bytes
) -> FileSubmission:
    title = TITLES[doc.kind.type_code][0]
    identity = PatientIdentity(
        ins=patient.ins,
        ins_oid=INS_TEST_OID,
        local_ids=(),
        birth_name=patient.family,
        given_names=patient.given,
        birth_date=patient.birth_date,
        sex=patient.sex,
        birthplace_code=patient.birthplace,
        reliability="PROV" if doc.defect is Defect.UNQUALIFIED else "QUAL",
    )
    return FileSubmission(
        document=DocumentInput(content, "text/xml", doc.kind.type_code, title, uid),
        patient=identity,
        origin=Origin("CABINET-LOAD", "LGC-LOAD", doc.control_id, "CDA"),
        delivery=Delivery({"DESTDMP": True}),
        sector="CITY",
    )
