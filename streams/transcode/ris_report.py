"""A report sent as text becomes a CR-IMG or LDL-SES N3 when it can, else an N1 (pure).

The rule (docs/cda.md): a radiology report (type 18748-4) becomes a CR-IMG N3 when the
message gives everything the CI-SIS IMG-CR-IMG 2024.01 model requires of its
FR-DICOM-Technique-imagerie entry and FR-DICOM-Object-Catalog: the act coded in LOINC
(OBR-4, coding system ``LN``), a DICOM acquisition modality of radiology (OBR-24), the
anatomical location in SNOMED CT (OBR-15.4 or the OBX 123014), the Study Instance UID,
an OID (ZDS-1 or the OBX 113014), and the study's date and time (OBR-7, the service event's
time: never the reception time), for one study (several OBR: N1). Its sections are the
report's text OBX (a LOINC section code of the model keeps its section; any other text is
filed under "Résultats"), its PDF goes in as the copy. A discharge letter (type 11490-0)
becomes an LDL-SES N3 when it gives the model's three text sections and its stay's start
(PV1-44; :mod:`streams.transcode.ldl_ses`). Any other report, and a report missing
what its model needs, becomes an N1 of its type: around the PDF when the message carries
one, else around the text (``text/plain``). The audit event says which
item was missing (never the content).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
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
# An HL7 TS: a date, or a date and time with its offset (as hl7_ts writes it).
_TS: Final = re.compile(r"([0-9]{8})(?:((?:[0-9]{2}){1,3})(?:\.[0-9]{1,4})?[+-][0-9]{4})?")
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
        if read_ts(report.stay_start) is None:
            return "no stay start (PV1-44 admit date/time, an HL7 TS)"
        return _letter(header, patient, report), "LDL-SES N3 from the letter's text"
    if report.type_code != IMAGING_REPORT[0]:
        return f"type {report.type_code} has no N3 model Relais builds from text"
    return _imaging(header, patient, report)


def _imaging(header: DocumentHeader, patient: PatientHeader, report: TextReport) -> Built | str:
    """The CR-IMG N3 of a report of one study, its time OBR-7, or why it cannot be one."""
    if report.orders > 1:
        return (
            f"the message holds {report.orders} studies (OBR): a CR-IMG N3 describes one, "
            "send one study (OBR) per message"
        )
    study = study_of(report)
    if isinstance(study, str):
        return study
    performed = replace(header, service_start=study.performed_at)
    try:
        cda = build_cr_img_n3(performed, patient, sections(report), report.pdf, study=study)
    except ImagingStudyMissing as exc:
        return str(exc)
    return cda, "CR-IMG N3 from the report's text"


def _letter(header: DocumentHeader, patient: PatientHeader, report: TextReport) -> bytes:
    """The LDL-SES N3 of a letter that has its sections and its stay's start (PV1-44);
    the stay's end is PV1-45 when it is a date, else left open."""
    stay = replace(
        header,
        service_start=read_ts(report.stay_start),
        service_stop=read_ts(report.stay_end),
    )
    status = document_status(report.completion)
    return build_ldl_ses(stay, patient, report.sections, status, report.pdf)


def study_of(report: TextReport) -> ImagingStudy | str:
    """The imaging study a CR-IMG N3 needs, or why the imaging report cannot be one (the
    first item it lacks; never the content)."""
    procedure, site, modality, uid = (
        report.procedure,
        report.target_site,
        report.modality,
        report.study_uid,
    )
    if procedure is None or procedure[2] != "LN":
        return "the act is not coded in LOINC (OBR-4, coding system LN)"
    if modality is None or modality not in MODALITIES:
        return "OBR-24 is not a DICOM acquisition modality of radiology (CT, MR, US, DX...)"
    if site is None or site[2] not in SNOMED_NAMES:
        return "no anatomical location in SNOMED CT (OBR-15.4 or OBX 123014)"
    if uid is None or not _OID.match(uid):
        return "no Study Instance UID that is an OID (ZDS-1 or OBX 113014)"
    performed_at = read_ts(report.performed_at)
    if performed_at is None:
        return "no study date and time (OBR-7, an HL7 TS such as 20261122093000+0100)"
    return ImagingStudy(
        procedure=procedure[:2],
        modality=(modality, MODALITIES[modality]),
        target_site=site[:2],
        study_uid=uid,
        performed_at=performed_at,
    )


def read_ts(value: str | None) -> str | None:
    """A time the message gives (OBR-7 the exam, PV1-44/45 the stay) as an HL7 TS with its
    offset (Europe/Paris when the sender gave none, as
    :func:`~streams.transcode.cda_body.hl7_ts` reads it), or None when absent or not a
    date (the caller never puts the reception time in its place)."""
    ts = hl7_ts(value)
    found = _TS.fullmatch(ts or "")
    if found is None:
        return None
    try:
        datetime.strptime(found.group(1) + (found.group(2) or "").ljust(6, "0"), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return ts


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
