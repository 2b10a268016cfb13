"""A hospital's discharge letter sent as text becomes an LDL-SES N3 when it can (pure).

The CI-SIS LDL-SES 2022.01 model (lettre de liaison à la sortie d'un établissement de
soins, type 11490-0) requires four sections (CI-SIS_LDL-SES_2022.01.sch):

* FR-Statut-du-document (33557-0) with its coded entry: the document's status (GEN-065) in
  JDV_StatutDoc_CISIS. The message says it in TXA-17 (HL7 table 0271): authenticated (AU) or
  legally authenticated (LA) is "approuvé", any other status "en cours d'exécution";
* FR-Raison-de-la-recommandation-non-code (42349-1): the reason for the stay, as text;
* FR-Resultats-evenements-LDL-SES (42545-4): the stay's summary, as text;
* FR-Traitements-a-la-sortie (10183-2): the discharge treatments, as text.

The letter's text OBX name their section by its LOINC code (OBX-3, coding system ``LN``):
the three text sections must all be there (any other text OBX follows them as a narrative
section of its own code), else the letter is sent as N1 (:func:`missing_sections`). The
stay's dates come from PV1-44 and PV1-45 (serviceEvent, the model requires its start: a
letter without PV1-44 is sent as N1, the stay is never guessed), the
letter's PDF, when the message carries one, goes with it as an attached document.

The treatments section holds the one Medications entry the rules require, whose product
is not coded and whose text is the section's whole narrative (never one entry per line:
the message does not say which lines are treatments). What HL7 v2 does not carry stays
out, as the model allows: the coded entries of the sections (treatments as FR-Traitement
entries with their substance and dosage, the stay's
events as FR-Simple-observation entries, allergies, devices, care plan...). A hospital that
codes them sends its own LDL-SES CDA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from domain.cda_model import DocumentHeader, PatientHeader
from streams.transcode.cda_body import Element, add_section, attached_pdf, serialize, sub, uid
from streams.transcode.cda_build import structured_document

LDL_SES_TYPE: Final = ("11490-0", "Lettre de liaison à la sortie d'un établissement de soins")
LDL_SES_TEMPLATES: Final = (("1.2.250.1.213.1.1.1.29", "2022.01"),)
#: the model's text sections: LOINC code -> (templateIds, display name, title)
TEXT_SECTIONS: Final = {
    "42349-1": (
        ("1.3.6.1.4.1.19376.1.5.3.1.3.1", "1.2.250.1.213.1.1.2.127"),
        "Raison de la recommandation",
        "Motif de l'hospitalisation",
    ),
    "42545-4": (
        (
            "1.3.6.1.4.1.19376.1.5.3.1.1.21.2.9",
            "1.3.6.1.4.1.19376.1.7.3.1.1.13.7",
            "1.2.250.1.213.1.1.2.163",
            "1.2.250.1.213.1.1.2.163.1",
        ),
        "Evènements observés",
        "Synthèse médicale du séjour",
    ),
    "10183-2": (
        ("1.3.6.1.4.1.19376.1.5.3.1.3.22", "1.2.250.1.213.1.1.2.146"),
        "Traitements à la sortie",
        "Traitements à la sortie",
    ),
}
STATUS_SECTION: Final = ("1.2.250.1.213.1.1.2.35", "1.2.250.1.213.1.1.2.35.1")
STATUS_ENTRY: Final = (
    "1.3.6.1.4.1.19376.1.5.3.1.4.13",
    "1.2.250.1.213.1.1.3.48",
    "1.2.250.1.213.1.1.3.48.16",
    "1.2.250.1.213.1.1.3.48.16.1",
)
SYNTHESIS_ENTRY: Final = (*STATUS_ENTRY[:2], "1.2.250.1.213.1.1.3.48.9")
MEDICATION_ENTRY: Final = (
    "2.16.840.1.113883.10.20.1.24",
    "1.3.6.1.4.1.19376.1.5.3.1.4.7",
    "1.3.6.1.4.1.19376.1.5.3.1.4.7.1",
)
PRODUCT_ENTRY: Final = ("1.3.6.1.4.1.19376.1.5.3.1.4.7.2", "2.16.840.1.113883.10.20.1.53")
TA_ASIP: Final = {"codeSystem": "1.2.250.1.213.1.1.4.322", "codeSystemName": "TA_ASIP"}
SNOMED_CT: Final = "2.16.840.1.113883.6.96"
#: JDV_StatutDoc_CISIS: TXA-17 authenticated / legally authenticated, anything else
APPROVED: Final = ("9571008", "approuvé")
IN_PROGRESS: Final = ("385651009", "en cours d'exécution")


def missing_sections(sections: Sequence[tuple[str, str, str]]) -> list[str]:
    """The model's text sections (LOINC codes) the letter does not give."""
    given = {code for code, _, text in sections if text.strip()}
    return [code for code in TEXT_SECTIONS if code not in given]


def document_status(completion: str | None) -> tuple[str, str]:
    """The JDV_StatutDoc_CISIS value of a TXA-17 document completion status."""
    return APPROVED if (completion or "").upper() in {"AU", "LA"} else IN_PROGRESS


def build_ldl_ses(
    header: DocumentHeader,
    patient: PatientHeader,
    sections: Sequence[tuple[str, str, str]],
    status: tuple[str, str],
    pdf: bytes | None,
) -> bytes:
    """LDL-SES N3: the status, the model's text sections, the letter's other sections, the
    PDF; ``sections`` (LOINC code, title, text) must hold the three :data:`TEXT_SECTIONS`."""
    missing = missing_sections(sections)
    if missing:
        raise ValueError(f"an LDL-SES needs the sections {', '.join(missing)}: send it as N1")
    root, body = structured_document(header, patient, LDL_SES_TEMPLATES, LDL_SES_TYPE)
    _status(body, header, status)
    for code, (templates, display, title) in TEXT_SECTIONS.items():
        text = "\n".join(given_text for given, _, given_text in sections if given == code)
        section = add_section(body, header, templates, (code, display), title)
        ENTRIES.get(code, _narrative)(section, header, text)
    for code, title, text in sections:
        if code not in TEXT_SECTIONS:
            _narrative(add_section(body, header, (), (code, title), title), header, text)
    if pdf is not None:
        added = add_section(
            body, header, ("1.2.250.1.213.1.1.2.37",), ("55107-7", "Documents ajoutés"), "Lettre"
        )
        attached_pdf(added, header, pdf, "Copie de la lettre de liaison")
    return serialize(root)


def _lines(text: str) -> list[str]:
    return [line for line in (line.strip() for line in text.splitlines()) if line]


def _narrative(section: Element, header: DocumentHeader, text: str) -> None:
    narrative = sub(section, "text")
    for line in _lines(text):
        sub(narrative, "paragraph", line)


def _synthesis(section: Element, header: DocumentHeader, text: str) -> None:
    """The stay's summary, and its FR-Simple-observation "Synthèse médicale" (MED-142, ST)."""
    content = sub(sub(sub(section, "text"), "paragraph"), "content", ID="synthese")
    lines = _lines(text)
    content.text = lines[0]
    for line in lines[1:]:
        sub(content, "br").tail = line
    observation = sub(sub(section, "entry"), "observation", classCode="OBS", moodCode="EVN")
    for template in SYNTHESIS_ENTRY:
        sub(observation, "templateId", root=template)
    sub(observation, "id", root=uid(header, "ldl-ses/synthesis"))
    sub(observation, "code", code="MED-142", displayName="Synthèse médicale", **TA_ASIP)
    sub(sub(observation, "text"), "reference", value="#synthese")
    sub(observation, "statusCode", code="completed")
    sub(observation, "effectiveTime", value=header.service_start or header.effective_time)
    sub(observation, "value", "\n".join(lines), xsi_type="ST")


def _treatments(section: Element, header: DocumentHeader, text: str) -> None:
    """The discharge treatments as the letter wrote them, and the one IHE Medications entry
    the section requires (S_hospitalDischargeMedication.sch): its product is not coded
    (``nullFlavor="UNK"``) and its text is the whole narrative. The lines are not read as
    one treatment each: a line may be a heading or an instruction, and the message carries
    no coded treatment, so Relais states no more than "the treatments are this text"."""
    content = sub(sub(sub(section, "text"), "paragraph"), "content", ID="traitements")
    lines = _lines(text)
    content.text = lines[0]
    for line in lines[1:]:
        sub(content, "br").tail = line
    given = sub(sub(section, "entry"), "substanceAdministration", classCode="SBADM")
    given.set("moodCode", "INT")
    for template in MEDICATION_ENTRY:
        sub(given, "templateId", root=template)
    sub(given, "id", root=uid(header, "ldl-ses/treatments"))
    sub(sub(given, "text"), "reference", value="#traitements")
    sub(given, "statusCode", code="completed")
    product = sub(sub(given, "consumable"), "manufacturedProduct", classCode="MANU")
    for template in PRODUCT_ENTRY:
        sub(product, "templateId", root=template)
    material = sub(product, "manufacturedMaterial")
    code = sub(material, "code", nullFlavor="UNK")
    sub(sub(code, "originalText"), "reference", value="#traitements")
    sub(material, "name", nullFlavor="NA")  # the brand name, as the CI-SIS rule asks


ENTRIES: Final = {"42545-4": _synthesis, "10183-2": _treatments}


def _status(body: Element, header: DocumentHeader, status: tuple[str, str]) -> None:
    """FR-Statut-du-document and its FR-Statut-document entry."""
    section = add_section(
        body, header, STATUS_SECTION, ("33557-0", "Etat d'achèvement"), "Statut du document"
    )
    sub(sub(sub(section, "text"), "paragraph"), "content", status[1], ID="statut-document")
    observation = sub(sub(section, "entry"), "observation", classCode="OBS", moodCode="EVN")
    for template in STATUS_ENTRY:
        sub(observation, "templateId", root=template)
    sub(observation, "id", root=uid(header, "ldl-ses/status"))
    sub(observation, "code", code="GEN-065", displayName="Statut du document", **TA_ASIP)
    sub(sub(observation, "text"), "reference", value="#statut-document")
    sub(observation, "statusCode", code="completed")
    sub(observation, "effectiveTime", value=header.effective_time)
    sub(
        observation,
        "value",
        xsi_type="CD",
        code=status[0],
        displayName=status[1],
        codeSystem=SNOMED_CT,
        codeSystemName="SNOMED CT",
    )
