"""Reports sent as text, for replays and tests: a RIS's and a hospital's discharge letter.

A RIS's report (ORU^R01 v2.5, IHE Radiology style):
The act in OBR-4 (LOINC), the study date in OBR-7, the anatomical location in OBR-15.4
(SNOMED CT), the accession number in OBR-18, the acquisition modality in OBR-24, the Study
Instance UID in ZDS-1, the report's text in OBX of type TX (one OBX per section, lines
repeated in OBX-5), and the report's PDF in an ED OBX when there is one. The transcode
stage turns it into a CR-IMG N3 (streams.transcode.ris_report).

A hospital's discharge letter (MDM^T02 v2.6): TXA-2 11490-0, TXA-12 its id, TXA-17 AU, the
stay in PV1-44/45, one TX OBX per section named by its LOINC code, the letter's PDF in an ED
OBX when there is one: the transcode stage turns it into an LDL-SES N3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ops.demo.samples import IMAGING, LETTER, Patient, hl7_message

#: The report's sections: LOINC section code, title, lines.
SECTIONS: Final = (
    ("55752-0", "Informations cliniques", ("Bilan d'une toux persistante.",)),
    ("55111-9", "Technique", ("Acquisition hélicoïdale sans injection.",)),
    ("59776-5", "Résultats", ("Parenchyme pulmonaire normal.", "Pas d'épanchement.")),
    ("19005-8", "Conclusion", ("Examen normal.",)),
)


@dataclass(frozen=True)
class RisStudy:
    """What the RIS knows of the study (any of them may be missing: then an N1)."""

    procedure: str = "24627-2^CT thorax^LN"
    modality: str = "CT"
    body_site: str = "302551006&thorax entier&SCT"
    study_uid: str = "1.2.250.1.999.9.18748.2"
    accession: str = "ACC0001"
    performed_at: str = "20261122093000+0100"


def ris_text_report(
    patient: Patient,
    control_id: str,
    *,
    study: RisStudy | None = None,
    pdf: bytes | None = None,
    sections: tuple[tuple[str, str, tuple[str, ...]], ...] = SECTIONS,
    order_id: str | None = None,
) -> bytes:
    """The ORU^R01 a RIS sends for ``patient`` (``study``: default a chest CT); OBR-3,
    ``order_id`` (default ``control_id``), names the report: a copy sent again keeps it."""
    study = study or RisStudy()
    order = order_id or control_id
    raw = hl7_message(IMAGING, patient, control_id, pdf or b"", "PDF").decode()
    segments = raw.rstrip("\r").split("\r")
    if pdf is None:  # text only: no document OBX
        segments = [s for s in segments if not s.startswith("OBX|1|ED|")]
    at = next(i for i, s in enumerate(segments) if s.startswith("OBR|"))
    segments[at] = (
        f"OBR|1|{order}^RIS|{order}^RIS|{study.procedure}|||{study.performed_at}"
        f"||||||||^^^{study.body_site}|||{study.accession}||||||{study.modality}"
    )
    text = [
        f"OBX|{10 + n}|TX|{code}^{title}^LN||{'~'.join(lines)}||||||F"
        for n, (code, title, lines) in enumerate(sections)
    ]
    zds = [f"ZDS|{study.study_uid}^RIS^Application^DICOM"] if study.study_uid else []
    segments[at + 1 : at + 1] = zds + text
    return ("\r".join(segments) + "\r").encode()


#: A letter's sections: the three the LDL-SES model requires, and a care plan.
LETTER_SECTIONS: Final = (
    ("42349-1", "Motif de l'hospitalisation", ("Chute à domicile.",)),
    ("42545-4", "Synthèse médicale du séjour", ("Séjour sans complication.", "Retour à domicile.")),
    ("10183-2", "Traitements à la sortie", ("Paracétamol 1 g, 3 fois par jour, 5 jours.",)),
    ("18776-5", "Suites à donner", ("Consultation de contrôle dans un mois.",)),
)


def discharge_letter(
    patient: Patient,
    control_id: str,
    document_id: str,
    *,
    pdf: bytes | None = None,
    sections: tuple[tuple[str, str, tuple[str, ...]], ...] = LETTER_SECTIONS,
    stay: tuple[str, str] = ("20261118093000+0100", "20261122110000+0100"),
) -> bytes:
    """The MDM^T02 a hospital DPI sends with its discharge letter as text (TXA-12
    ``document_id``: a copy sent again keeps it)."""
    raw = hl7_message(LETTER, patient, control_id, pdf or b"", "PDF").decode()
    segments = raw.rstrip("\r").split("\r")
    if pdf is None:
        segments = [s for s in segments if not s.startswith("OBX|1|ED|")]
    visit = ["PV1", "1", "I", *[""] * 16, f"V{control_id}", *[""] * 24, *stay]
    segments = ["|".join(visit) if s.startswith("PV1|") else s for s in segments]
    at = next(i for i, s in enumerate(segments) if s.startswith("TXA|"))
    segments[at] = segments[at].replace(f"|{control_id}|||||AU", f"|{document_id}|||||AU")
    segments[at + 1 : at + 1] = [
        f"OBX|{10 + n}|TX|{code}^{title}^LN||{'~'.join(lines)}||||||F"
        for n, (code, title, lines) in enumerate(sections)
    ]
    return ("\r".join(segments) + "\r").encode()
