"""A report sent as text becomes a CR-IMG or LDL-SES N3 when it can, else an N1 (pure).

The rule (docs/cda.md): a radiology report (type 18748-4) becomes a CR-IMG N3 when the
message gives everything the CI-SIS IMG-CR-IMG 2024.01 model requires of its
FR-DICOM-Technique-imagerie entry and FR-DICOM-Object-Catalog: the act coded in LOINC
(OBR-4, coding system ``LN``), a DICOM acquisition modality of radiology (OBR-24), the
anatomical location in SNOMED CT (OBR-15.4 or the OBX 123014) and the Study Instance UID,
an OID (ZDS-1 or the OBX 113014). Its sections are the report's text OBX (a LOINC section
code of the model keeps its section; any other text is filed under "Résultats"), its PDF
goes in as the copy. A discharge letter (type 11490-0) becomes an LDL-SES N3 when it gives
the model's three text sections (:mod:`streams.transcode.ldl_ses`). Any other report, and a
report missing what its model needs, becomes an N1 of its type: around the PDF when the
message carries one, else around the text (``text/plain``). The audit event says which
item was missing (never the content).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from domain.cda_model import DocumentHeader, ImagingStudy, PatientHeader
from producers.hl7.text_report import IMAGING_REPORT, MODALITIES, TextReport, decode_text_report
from relais.contracts import Record
from streams.transcode.cda_body import hl7_ts
from streams.transcode.cda_build import build_cr_img_n3, build_n1
from streams.transcode.cda_imaging import CR_IMG_SECTIONS, ImagingStudyMissing
from streams.transcode.cda_wrap import WrapFailure, document_header, patient_header
from streams.transcode.document_series import Version
from streams.transcode.ldl_ses import (
    LDL_SES_TYPE,
    build_ldl_ses,
    document_status,
    missing_sections,
)

FINDINGS: Final = ("59776-5", "Résultats")
SNOMED_NAMES: Final = frozenset({"SCT", "SNM", "SNOMED", "SNOMED CT", "2.16.840.1.113883.6.96"})
_OID: Final = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
Built = tuple[bytes, str]  # the CDA, how it was built (for the audit event; no content)


def build_text_report(
    record: Record, content: bytes, traits: Mapping[str, Any], version: Version
) -> Built:
    """The CDA of a text report, and how it was built (for the audit; no content)."""
    try:
        report = decode_text_report(content)
    except ValueError as exc:
        raise WrapFailure(str(exc)) from None
    header, patient = document_header(record, version), patient_header(traits)
    built = _n3(header, patient, report)
    if not isinstance(built, str):
        return built
    reason = built
    if report.pdf is not None:
        return build_n1(header, patient, report.pdf), f"N1 from the report's PDF: {reason}"
    text = "\n\n".join(f"{title}\n{body}" for _, title, body in report.sections)
    return build_n1(header, patient, text.encode(), "text/plain"), f"N1 from the text: {reason}"


def _n3(header: DocumentHeader, patient: PatientHeader, report: TextReport) -> Built | str:
    """The N3 of the report's model and how it was built, or why it cannot be one."""
    if report.type_code == LDL_SES_TYPE[0]:
        missing = missing_sections(report.sections)
        if missing:
            return f"the letter lacks the LDL-SES sections {', '.join(missing)} (OBX-3, LN)"
        return _letter(header, patient, report), "LDL-SES N3 from the letter's text"
    study = study_of(report)
    if isinstance(study, str):
        return study
    try:
        cda = build_cr_img_n3(header, patient, sections(report), report.pdf, study=study)
    except ImagingStudyMissing as exc:
        return str(exc)
    return cda, "CR-IMG N3 from the report's text"


def _letter(header: DocumentHeader, patient: PatientHeader, report: TextReport) -> bytes:
    """The LDL-SES N3 of a letter that has its sections; the stay from PV1-44/45."""
    stay = replace(
        header,
        service_start=hl7_ts(report.stay_start) or header.service_start,
        service_stop=hl7_ts(report.stay_end) or header.service_stop,
    )
    status = document_status(report.completion)
    return build_ldl_ses(stay, patient, report.sections, status, report.pdf)


def study_of(report: TextReport) -> ImagingStudy | str:
    """The imaging study a CR-IMG N3 needs, or why the report cannot be one (the first item
    it lacks; never the content)."""
    procedure, site, modality, uid = (
        report.procedure,
        report.target_site,
        report.modality,
        report.study_uid,
    )
    if report.type_code != IMAGING_REPORT[0]:
        return f"type {report.type_code} has no N3 model Relais builds from text"
    if procedure is None or procedure[2] != "LN":
        return "the act is not coded in LOINC (OBR-4, coding system LN)"
    if modality is None or modality not in MODALITIES:
        return "OBR-24 is not a DICOM acquisition modality of radiology (CT, MR, US, DX...)"
    if site is None or site[2] not in SNOMED_NAMES:
        return "no anatomical location in SNOMED CT (OBR-15.4 or OBX 123014)"
    if uid is None or not _OID.match(uid):
        return "no Study Instance UID that is an OID (ZDS-1 or OBX 113014)"
    return ImagingStudy(
        procedure=procedure[:2],
        modality=(modality, MODALITIES[modality]),
        target_site=site[:2],
        study_uid=uid,
        performed_at=_timestamp(report.performed_at),
    )


def _timestamp(value: str | None) -> str | None:
    """OBR-7 when it is a full HL7 TS with its offset (the header's times otherwise)."""
    return value if value and re.fullmatch(r"\d{14}[+-]\d{4}", value) else None


def sections(report: TextReport) -> list[tuple[str, str, str]]:
    """The CR-IMG sections: the text OBX in order, consecutive lines of a section joined."""
    out: list[tuple[str, str, str]] = []
    for given, label, text in report.sections:
        code, title = (given, label) if given in CR_IMG_SECTIONS else FINDINGS
        if out and out[-1][0] == code:
            out[-1] = (code, out[-1][1], f"{out[-1][2]}\n{text}")
        else:
            out.append((code, title, text))
    return out
