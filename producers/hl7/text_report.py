"""A report sent as text (ORU^R01 or MDM^T02/T10/T04 without a CDA): what it says (pure).

The CI-SIS volet carries documents as CDA (OBX-2 ED). A RIS that cannot build a CDA sends its
report the IHE Radiology way instead: the text in OBX of type TX or FT (one or more lines,
``\\.br\\`` breaks), the act in OBR-4, the acquisition modality in OBR-24, the study in ZDS-1
(IHE RAD) or in an OBX coded ``113014^^DCM`` (DICOM "Study"), the anatomical location in
OBR-15.4 or an OBX coded ``123014^^DCM`` (DICOM "Target Region"), the date of the study in
OBR-7; the report's PDF may come with it in an ED OBX. A hospital sends its discharge letter so
too (MDM^T02, TXA-2 11490-0, one text OBX per section named by its LOINC code, TXA-17 its
status, PV1-44/45 the stay). The transcode stage turns them into a CR-IMG N3 or an LDL-SES
N3 when they have what the model needs, else into an N1 (docs/cda.md says the rules).

* an ORU^R01 is a text report when its only result OBX are TX/FT (and the study and region
  OBX), it carries no CDA and it says it is imaging (OBR-24 an imaging section of HL7 table
  0074 or a DICOM modality other than PT, Physical Therapy in table 0074, or the study UID);
  its document type is 18748-4, CR d'imagerie
  médicale (a RIS sends it);
* an MDM is a text report when it carries TX/FT OBX and no CDA; TXA-2 gives its type.

Each text OBX is a section: OBX-3 a LOINC section code (``LN``) or any local code with its
label, which the stage files under the report's findings.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from producers.hl7.segments import Segment

#: Media type of a report sent as text: the transcode stage builds its CDA.
MEDIA: Final = "application/vnd.relais.text-report+json"
IMAGING_REPORT: Final = ("18748-4", "CR d'imagerie médicale")
TEXT_TYPES: Final = frozenset({"TX", "FT"})
STUDY_CODE: Final = "113014"  # DICOM "Study": the Study Instance UID
TARGET_CODE: Final = "123014"  # DICOM "Target Region": the anatomical location
_EXPECTED: Final = {"NW": "F", "RO": "C", "CA": "D", "MDM^T02": "F", "MDM^T10": "C", "MDM^T04": "D"}
_METADATA: Final = "METADMPMSS"
#: DICOM acquisition modalities of radiology (JDV_ModaliteAcquisition_CISIS) and their names.
MODALITIES: Final = {
    "BMD": "Ostéodensitométrie",
    "CR": "Radiographie assistée par ordinateur",
    "CT": "Tomodensitométrie",
    "DX": "Radiographie numérique",
    "IO": "Radiographie intrabuccale",
    "MG": "Mammographie",
    "MR": "Résonance magnétique",
    "NM": "Médecine nucléaire",
    "PT": "TEP : Tomographie par émission de positons",
    "PX": "Panaromique X-Ray",
    "RF": "Radio-fluoroscopie",
    "RG": "Imagerie radiographique",
    "US": "Échographie",
    "XA": "Angiographie X-Ray",
}
#: The imaging sections of HL7 table 0074 (Diagnostic Service Section ID): radiology,
#: radiograph, radiology / cardiac / obstetric / vascular ultrasound, nuclear medicine scan,
#: nuclear magnetic resonance, CAT scan, cineradiograph.
TABLE_0074_IMAGING: Final = frozenset(
    {"RAD", "RX", "RUS", "CUS", "OUS", "VUS", "NMS", "NMR", "CT", "XRC"}
)
#: What OBR-24 may say of an imaging report: those sections, or a DICOM modality, except
#: ``PT``, which table 0074 reads as Physical Therapy (a PET study is told by its study UID).
IMAGING_SECTIONS: Final = TABLE_0074_IMAGING | (frozenset(MODALITIES) - {"PT"})


@dataclass(frozen=True)
class TextReport:
    """What a text report carries; empty strings never: ``None`` when the message lacks it."""

    type_code: str
    type_label: str
    sections: tuple[tuple[str, str, str], ...]  # (OBX-3 code, its label, the text)
    procedure: tuple[str, str, str] | None = None  # OBR-4: code, label, coding system
    modality: str | None = None  # OBR-24: DICOM acquisition modality
    target_site: tuple[str, str, str] | None = None  # code, label, coding system
    study_uid: str | None = None
    performed_at: str | None = None  # OBR-7, HL7 TS
    pdf: bytes | None = None  # the report's PDF, when an ED OBX carries it
    completion: str | None = None  # TXA-17 document completion status (HL7 table 0271)
    stay_start: str | None = None  # PV1-44 admit date/time, HL7 TS
    stay_end: str | None = None  # PV1-45 discharge date/time, HL7 TS
    orders: int = 1  # how many OBR (studies) the message holds: one report describes one


def encode_text_report(report: TextReport) -> bytes:
    """The report as the sealed content of a document event."""
    payload = asdict(report)
    payload["pdf"] = base64.b64encode(report.pdf).decode() if report.pdf is not None else None
    return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()


def decode_text_report(content: bytes) -> TextReport:
    """Inverse of :func:`encode_text_report`; ValueError when the content is not one."""
    try:
        payload: dict[str, Any] = json.loads(content)
        pdf = payload.pop("pdf")
        return TextReport(
            type_code=str(payload["type_code"]),
            type_label=str(payload["type_label"]),
            sections=tuple((str(c), str(t), str(x)) for c, t, x in payload["sections"]),
            procedure=_triple(payload.get("procedure")),
            modality=payload.get("modality"),
            target_site=_triple(payload.get("target_site")),
            study_uid=payload.get("study_uid"),
            performed_at=payload.get("performed_at"),
            pdf=base64.b64decode(pdf, validate=True) if pdf is not None else None,
            completion=payload.get("completion"),
            stay_start=payload.get("stay_start"),
            stay_end=payload.get("stay_end"),
            orders=int(payload.get("orders", 1)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a text report ({type(exc).__name__})") from None


def _triple(value: Any) -> tuple[str, str, str] | None:
    if value is None:
        return None
    code, label, system = value
    return str(code), str(label), str(system)


def is_text_report(kind: str, segments: Sequence[Segment], has_cda: bool) -> bool:
    """Whether a document message is a text report (see the module docstring): an ORU must
    also say it is imaging (OBR-24 an imaging section, or the study in ZDS or an OBX)."""
    obx = [s for s in segments if s.name == "OBX" and s.get(3, 3).upper() != _METADATA]
    report = [s for s in obx if s.get(2) != "ED"]
    if has_cda or not any(s.get(2) in TEXT_TYPES for s in report):
        return False
    if kind.startswith("MDM"):
        return True
    sections = {s.get(24).upper() for s in segments if s.name == "OBR"}
    imaging = bool(sections & IMAGING_SECTIONS) or bool(_study_uid(segments, obx))
    return imaging and all(
        s.get(2) in TEXT_TYPES or s.get(3) in (STUDY_CODE, TARGET_CODE) for s in report
    )


def read_text_report(
    kind: str, segments: Sequence[Segment], pdf: bytes | None
) -> tuple[TextReport, str]:
    """The report of a message :func:`is_text_report` accepted, and its OBX-11 (F, C, D);
    refuses what is malformed."""
    obx = [s for s in segments if s.name == "OBX" and s.get(3, 3).upper() != _METADATA]
    text = [s for s in obx if s.get(2) in TEXT_TYPES]
    orc = _first(segments, "ORC")
    status = _check_status(kind, text, orc.get(1) if orc else None)
    obr, txa, pv1 = (_first(segments, name) for name in ("OBR", "TXA", "PV1"))
    type_code, type_label = _document_type(kind, segments)
    return TextReport(
        type_code=type_code,
        type_label=type_label,
        sections=tuple(_section(s) for s in text),
        procedure=_coded(obr, 4) if obr else None,
        modality=(obr.get(24) or None) if obr else None,
        target_site=_target_site(obr, obx),
        study_uid=_study_uid(segments, obx),
        performed_at=(obr.get(7) or None) if obr else None,
        pdf=pdf,
        completion=(txa.get(17) or None) if txa else None,
        stay_start=(pv1.get(44) or None) if pv1 else None,
        stay_end=(pv1.get(45) or None) if pv1 else None,
        orders=max(1, sum(s.name == "OBR" for s in segments)),
    ), status


def _first(segments: Sequence[Segment], name: str) -> Segment | None:
    return next((s for s in segments if s.name == name), None)


def _check_status(kind: str, text: Sequence[Segment], order_control: str | None) -> str:
    """Every text OBX has the OBX-11 the message's step requires (F, C or D)."""
    step = kind if kind.startswith("MDM") else order_control or ""
    expected = _EXPECTED.get(step)
    if expected is None:
        where = "MSH-9" if kind.startswith("MDM") else "ORC-1"
        raise text[0].error(None, f"{where} must name a document step (NW, RO, CA)", "103")
    for segment in text:
        if segment.get(11) != expected:
            raise segment.error(
                11,
                f"OBX-11 of a report line must be '{expected}' for this message "
                "(F initial, C replacement, D deletion)",
                "207",
                "906",
            )
    return expected


def _document_type(kind: str, segments: Sequence[Segment]) -> tuple[str, str]:
    if not kind.startswith("MDM"):
        return IMAGING_REPORT
    txa = _first(segments, "TXA")
    if txa is None or not txa.get(2):
        raise (txa or segments[0]).error(
            2 if txa else None, "TXA-2 must give the type of the document (LOINC, JDV_J07)", "101"
        )
    return txa.get(2, 1), txa.get(2, 2) or txa.get(2, 1)


def _section(obx: Segment) -> tuple[str, str, str]:
    lines = [obx.get(5, rep=r) for r in range(1, len(obx.reps(5)) + 1)]
    body = "\n".join(lines).strip()
    if not body:
        raise obx.error(5, "a report line (OBX-2 TX or FT) needs its text in OBX-5", "101")
    code = obx.get(3, 1) if obx.get(3, 3).upper() == "LN" else ""
    return code, obx.get(3, 2) or obx.get(3, 1), body


def _coded(segment: Segment, num: int, comp: int | None = None) -> tuple[str, str, str] | None:
    """A coded value (code, label, coding system) of a field, or of one component's parts."""
    if comp is None:
        code, label, system = (segment.get(num, c) for c in (1, 2, 3))
    else:
        code, label, system = (segment.get(num, comp, s) for s in (1, 2, 3))
    return (code, label or code, system.upper()) if code else None


def _target_site(obr: Segment | None, obx: Sequence[Segment]) -> tuple[str, str, str] | None:
    """OBR-15.4 (body site), else the value of an OBX coded 123014 (Target Region)."""
    found = _coded(obr, 15, 4) if obr else None
    region = next((s for s in obx if s.get(3) == TARGET_CODE), None)
    return found or (_coded(region, 5) if region else None)


def _study_uid(segments: Sequence[Segment], obx: Sequence[Segment]) -> str | None:
    """ZDS-1.1 (IHE RAD), else the value of an OBX coded 113014 (DICOM Study)."""
    zds = _first(segments, "ZDS")
    study = next((s for s in obx if s.get(3) == STUDY_CODE), None)
    return (zds.get(1) if zds else "") or (study.get(5) if study else "") or None
