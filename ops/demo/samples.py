"""Synthetic HL7 v2 messages carrying CDA R2 documents, for the demo and the tests.

Fictitious patients on the INS *test* OID (1.2.250.1.213.1.4.10); the CDA
headers follow CI-SIS (realm FR, typeId, templateIds, recordTarget with INS).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final

from domain.cda_model import DocumentHeader, ImagingStudy, Organisation, PatientHeader, Person
from domain.lab_results import LOINC_OID, CodedResult, LabResult, MappingStatus, ValueType
from streams.transcode.cda_build import build_cr_bio_n3, build_cr_img_n3, build_n1

INS_TEST_OID: Final = "1.2.250.1.213.1.4.10"


@dataclass(frozen=True)
class Patient:
    ins: str
    family: str
    given: str
    birth_date: str
    sex: str
    birthplace: str
    reliability: str = "QUAL"


DOMINIQUE: Final = Patient("279035121518989", "PAT-TROIS", "DOMINIQUE", "19790328", "F", "51215")
SARAH_LOU: Final = Patient(
    "277010115400329", "GARCIA-HAMMADI", "SARAH-LOU ANNA", "19770121", "F", "01154"
)
UNQUALIFIED: Final = Patient(
    "279035121518989", "PAT-TROIS", "DOMINIQUE", "19790328", "F", "51215", reliability="PROV"
)
#: Checked against an identity document (VALI): the identity stage asks INSi to make it QUAL.
VALIDATED: Final = Patient(
    "277010115400329",
    "GARCIA-HAMMADI",
    "SARAH-LOU ANNA",
    "19770121",
    "F",
    "01154",
    reliability="VALI",
)


@dataclass(frozen=True)
class Kind:
    label: str
    loinc: str
    title: str
    model_template: str
    message_type: str


LAB: Final = Kind(
    "lab result", "11502-2", "CR d'examens biologiques", "1.2.250.1.213.1.1.1.55", "ORU^R01^ORU_R01"
)
IMAGING: Final = Kind(
    "imaging report",
    "18748-4",
    "CR d'imagerie médicale",
    "1.2.250.1.213.1.1.1.45",
    "ORU^R01^ORU_R01",
)
#: The study of the demo's imaging report (a chest CT): what a CR-IMG N3 requires.
CHEST_CT: Final = ImagingStudy(
    procedure=("24627-2", "CT thorax"),
    modality=("CT", "Tomodensitométrie"),
    target_site=("302551006", "thorax entier"),
    study_uid="1.2.250.1.999.9.18748.1",
    series_uid="1.2.250.1.999.9.18748.1.1",
    sop_instance_uid="1.2.250.1.999.9.18748.1.1.1",
    sop_class=("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"),
)
LETTER: Final = Kind(
    "hospital letter",
    "11490-0",
    "Lettre de liaison à la sortie d'un établissement de soins",
    "1.2.250.1.213.1.1.1.29",
    "MDM^T02^MDM_T02",
)


def minimal_pdf(text: str, *, filler_bytes: int | None = None) -> bytes:
    """A one-page PDF of the project's own (valid structure, ASCII text); with
    ``filler_bytes``, a filler stream object makes it about that much bigger."""
    words = text.encode("ascii", "replace").replace(b"(", b"[").replace(b")", b"]")
    stream = b"BT /F1 12 Tf 72 720 Td (" + words + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if filler_bytes is not None:
        filler = (b"% relais load filler " + b"0123456789abcdef" * 4 + b"\n") * (
            max(0, filler_bytes) // 86
        )
        objects.append(
            b"<< /Length " + str(len(filler)).encode() + b" >>\nstream\n" + filler + b"\nendstream"
        )
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    trailer = f"trailer << /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out + trailer.encode()


BIOLOGIST: Final = Person(
    "1.2.250.1.71.4.2.1",
    "801234567866",
    "DEMO",
    "Biologiste",
    "Dr",
    ("G15_10/SM03", "Médecin - Biologie médicale (SM)"),
)
LABORATORY: Final = Organisation("1.2.250.1.71.4.2.2", "1120459876", "Laboratoire Relais Démo")
RESULTS: Final = (
    CodedResult(
        LabResult("TSH", "TSH", "2.1", ValueType.NUMERIC, "m[IU]/L", "0.4-4.0", "N"),
        "3016-3",
        LOINC_OID,
        "Thyréostimuline [Unités arbitraires/Volume] Sérum/Plasma ; Numérique",
        "m[IU]/L",
        MappingStatus.MAPPED,
    ),
    CodedResult(
        LabResult("HB", "Hémoglobine", "13.9", ValueType.NUMERIC, "g/dL", "12-16", "N"),
        "718-7",
        LOINC_OID,
        "Hémoglobine [Masse/Volume] Sang ; Numérique",
        "g/dL",
        MappingStatus.MAPPED,
    ),
)


def cda(
    kind: Kind,
    patient: Patient,
    doc_id: str,
    text: str,
    *,
    pdf: bytes | None = None,
    results: tuple[CodedResult, ...] = RESULTS,
) -> bytes:
    """A CI-SIS CDA R2 built with the project's builders: CR-BIO N3 (``results``), CR-IMG N3
    (``text`` in its sections) or N1; ``pdf`` (default: one showing ``text``) goes with it."""
    header, person = _document_header(kind, doc_id), _patient_header(patient)
    pdf = pdf if pdf is not None else minimal_pdf(f"{kind.title}: {text}")
    if kind.loinc == LAB.loinc:
        return build_cr_bio_n3(header, person, results, pdf)
    if kind.loinc == IMAGING.loinc:
        sections = (("55111-9", "Technique", text), ("19005-8", "Résultat", text))
        return build_cr_img_n3(header, person, sections, pdf, study=CHEST_CT)
    return build_n1(header, person, pdf)


def _document_header(kind: Kind, doc_id: str) -> DocumentHeader:
    """The CDA header of a demo document ``doc_id`` (root.extension), by the demo laboratory."""
    root, ext = doc_id.rsplit(".", 1)
    return DocumentHeader(
        id_root=root,
        id_extension=ext,
        set_id_root=root,
        set_id_extension=ext + "0",
        version=1,
        type_code=kind.loinc,
        type_display=kind.title,
        title=kind.title,
        effective_time="20261122101500+0100",
        author=BIOLOGIST,
        author_org=LABORATORY,
        custodian=LABORATORY,
        legal_authenticator=BIOLOGIST,
        authored_at="20261122101500+0100",
        service_start="20261122080000+0100",
        service_stop="20261122100000+0100",
    )


def _patient_header(patient: Patient) -> PatientHeader:
    """The CDA recordTarget of a demo patient (INS on the test OID)."""
    return PatientHeader(
        patient.ins,
        INS_TEST_OID,
        patient.family,
        patient.given,
        patient.birth_date,
        patient.sex,
        patient.birthplace,
    )


def hl7_message(
    kind: Kind, patient: Patient, control_id: str, document: bytes, media: str = "XML"
) -> bytes:
    """An ORU^R01 (v2.5) or MDM^T02 (v2.6) carrying ``document`` base64 in OBX-5."""
    mdm = kind.message_type.startswith("MDM")
    version = "2.6" if mdm else "2.5"
    data = base64.b64encode(document).decode()
    given = patient.given.split()
    segments = [
        f"MSH|^~\\&|DEMO-SIS|RELAIS-DEMO|PFI|RELAIS|20261122101500||{kind.message_type}|"
        f"{control_id}|P|{version}|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2",
    ]
    if mdm:
        segments.append("EVN||20261122101500")
    segments.append(
        f"PID|||{patient.ins}^^^ASIP-SANTE-INS-NIR&{INS_TEST_OID}&ISO^INS||"
        f"{patient.family}^{given[0]}^{' '.join(given[1:])}^^^^L||{patient.birth_date}|"
        f"{patient.sex}|||^^^^^^BDL^^{patient.birthplace}" + "|" * 21 + patient.reliability
    )
    segments.append("PV1|1|O")
    if mdm:
        segments.append(f"TXA|1|{kind.loinc}^{kind.title}^LN|TEXT|||||||||{control_id}|||||AU")
    else:
        segments += [
            f"ORC|NW|{control_id}^DEMO",
            f"OBR|1|{control_id}^DEMO|{control_id}^DEMO|{kind.loinc}^{kind.title}^LN",
        ]
    obx5 = f"^{'text' if mdm else 'TEXT'}^{media}^Base64^{data}"
    segments += [
        f"OBX|1|ED|{kind.loinc}^{kind.title}^LN||{obx5}||||||F",
        "PRT||UC||SB^^participation|801234567866^DEMO^Biologiste^^^^^^"
        "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS|||Laboratoire Relais Demo^^^^^"
        "ASIP-SANTE-ST&1.2.250.1.71.4.2.2&ISO^FINEG^^^1120459876",
        "OBX|2|CE|DESTDMP^Destinataire DMP^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F",
    ]
    return ("\r".join(segments) + "\r").encode()


def sample(kind: Kind, patient: Patient, n: int, *, text: str | None = None) -> bytes:
    """The ``n``-th demo message of ``kind`` for ``patient``."""
    doc_id = f"1.2.250.1.213.1.1.9.4242.{kind.loinc.replace('-', '')}{n:06d}"
    body = cda(kind, patient, doc_id, text or f"{kind.title}, document de démonstration {n}")
    return hl7_message(kind, patient, f"DEMO{kind.loinc.replace('-', '')}{n:06d}", body)


def pdf_sample(kind: Kind, patient: Patient, n: int) -> bytes:
    """The ``n``-th demo message of ``kind`` carrying a PDF (the transcode stage wraps it as N1)."""
    control_id = f"PDF{kind.loinc.replace('-', '')}{n:06d}"
    pdf = minimal_pdf(f"{kind.title}, document PDF de demonstration {n}")
    return hl7_message(kind, patient, control_id, pdf, media="PDF")


#: (local code, label, value, unit, reference range, interpretation) of a demo lab report.
LAB_RESULTS: Final = (
    ("TSH1", "TSH ultrasensible", "2.10", "m[IU]/L", "0.40-4.00", "N"),
    ("HB", "Hémoglobine", "13.9", "g/dL", "12.0-16.0", "N"),
    ("CRPX", "Protéine C réactive", "12", "mg/L", "0-5", "H"),
)


#: ORC-1 and OBX-11 of each life-cycle step of an ORU (volet CI-SIS): initial, correction, deletion.
_ORU_STEPS: Final = {"F": "NW", "C": "RO", "D": "CA"}


def lab_report_sample(
    patient: Patient, n: int, *, facility: str = "LABO-X", status: str = "F", resend: int = 0
) -> bytes:
    """An ORU^R01 with structured results (local codes) and the report's PDF: the transcode
    stage maps the codes with ``facility``'s catalogue and builds the CR-BIO N3.

    ``status`` C is a correction of report ``n`` and D its deletion (same OBR-3, ORC-1 RO /
    CA); ``resend`` numbers the message (a new MSH-10) for a second correction.
    """
    control_id = f"LAB{n:06d}"
    raw = hl7_message(
        LAB, patient, control_id, minimal_pdf(f"Compte rendu {n} ({status}{resend})"), "PDF"
    )
    results = "".join(
        f"OBX|{10 + i}|NM|{code}^{label}^L||{value}|{unit}|{ref}|{flag}|||{status}"
        "|||20261122080000\r"
        for i, (code, label, value, unit, ref, flag) in enumerate(LAB_RESULTS)
    )
    raw = raw.replace(b"|RELAIS-DEMO|", f"|{facility}|".encode(), 1)
    if status != "F" or resend:
        message_id = f"{control_id}{status}{resend}"
        raw = raw.replace(f"|{control_id}|P|".encode(), f"|{message_id}|P|".encode(), 1)
        raw = raw.replace(b"ORC|NW|", f"ORC|{_ORU_STEPS[status]}|".encode(), 1)
        raw = raw.replace(b"||||||F\rPRT|", f"||||||{status}\rPRT|".encode(), 1)
    return raw + results.encode()
