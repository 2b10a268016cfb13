"""Parts of a CDA R2 body and the XML primitives the builders share (pure).

``sub`` is the only way data enters the tree: lxml escapes it on output, and
characters XML 1.0 cannot carry are dropped first. The CR-BIO results chapter
follows the CI-SIS 2024.01 shape (IHE PALM Laboratory Specialty Section with one
Laboratory Report Data Processing Entry; one observation per result: LOINC or
waiting code, value PQ/ST/CD, interpretation, reference range). Attached PDFs
use the FR-Document-attache entry.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from lxml import etree

from domain.cda_model import DocumentHeader
from domain.document_id import HL7V3
from domain.hl7_time import PARIS
from domain.lab_results import (
    LOINC_OID,
    LOINC_WAITING_OID,
    CodedResult,
    MappingStatus,
    ValueType,
)

XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
INTERPRETATION_OID: Final = "2.16.840.1.113883.5.83"
Element = etree._Element

LAB_CHAPTER_SECTION: Final = "1.3.6.1.4.1.19376.1.3.3.2.1"
#: JDV_HL7_ObservationInterpretation_CISIS (2.16.840.1.113883.5.83), the usual OBX-8 flags.
INTERPRETATION: Final = {
    "N": "Normal",
    "A": "Anormal",
    "AA": "Très anormal, alerte",
    "H": "Anormalement haut",
    "HH": "Très anormalement haut, alerte",
    "L": "Anormalement bas",
    "LL": "Très anormalement bas, alerte",
    "<": "Inférieur à la limite de détection",
    ">": "Supérieur à la limite maximale de mesure",
    "POS": "Positif",
    "NEG": "Négatif",
    "DET": "Détecté",
    "ND": "Non détecté",
    "R": "Résistant",
    "S": "Sensible",
    "I": "Intermédiaire",
    "IND": "Indéterminé",
}
#: HL7 v2 coding systems of a coded (CE) value -> OID.
V2_CODE_SYSTEMS: Final = {"LN": LOINC_OID, "SCT": "2.16.840.1.113883.6.96"}

_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NUMBER: Final = r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)"
_RANGE: Final = re.compile(rf"^\s*({_NUMBER})\s*[-\u2013]\s*({_NUMBER})\s*$")
_BOUND: Final = re.compile(rf"^\s*([<>]=?|[\u2264\u2265])\s*({_NUMBER})\s*$")


def clean(value: str) -> str:
    """``value`` without the characters XML 1.0 cannot carry (control characters...)."""
    return _NOT_XML.sub("", value)


def sub(parent: Element, tag: str, text: str | None = None, /, **attrs: str | None) -> Element:
    """A child in the HL7 v3 namespace; ``xsi_type`` is written as ``xsi:type``."""
    element = etree.SubElement(parent, f"{{{HL7V3}}}{tag}")
    for name, value in attrs.items():
        if value is not None:
            element.set(f"{{{XSI}}}type" if name == "xsi_type" else name, clean(value))
    if text is not None:
        element.text = clean(text)
    return element


def add_code(parent: Element, tag: str, code: str, display: str, system: str) -> Element:
    """A coded element (CD/CE/CS): code, displayName, codeSystem (+ its name when known)."""
    system_name = {LOINC_OID: "LOINC", LOINC_WAITING_OID: "Codes d'attente LOINC"}.get(system)
    return sub(
        parent, tag, code=code, displayName=display, codeSystem=system, codeSystemName=system_name
    )


def uid(header: DocumentHeader, name: str) -> str:
    """A stable UUID for a generated element of this document."""
    seed = f"{header.id_root}^{header.id_extension or ''}/{name}"
    return str(uuid.uuid5(uuid.NAMESPACE_OID, seed)).upper()


def hl7_ts(value: str | None) -> str | None:
    """An HL7 TS in local time with its offset (Europe/Paris when the sender gave none)."""
    if not value:
        return None
    value = value.split("^")[0].strip()
    if len(value) <= 8 or "+" in value or "-" in value:
        return value
    digits = value.split(".")[0]
    try:
        moment = datetime.strptime(digits.ljust(14, "0")[:14], "%Y%m%d%H%M%S")
    except ValueError:
        return value
    return f"{digits}{moment.replace(tzinfo=PARIS).strftime('%z')}"


def serialize(root: Element) -> bytes:
    """UTF-8 bytes with the XML declaration."""
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def add_section(
    body: Element,
    header: DocumentHeader,
    templates: Sequence[str],
    code: tuple[str, str],
    title: str,
) -> Element:
    """A new top-level ``component/section`` with its templateIds, id, code and title."""
    section = sub(sub(body, "component"), "section")
    for template in templates:
        sub(section, "templateId", root=template)
    sub(section, "id", root=uid(header, f"section/{len(body)}"))
    add_code(section, "code", *code, LOINC_OID)
    sub(section, "title", title)
    return section


def attached_pdf(section: Element, header: DocumentHeader, pdf: bytes, title: str) -> None:
    """Narrative link + FR-Document-attache entry holding the PDF in base64."""
    rows = sub(sub(sub(section, "text"), "table", border="0"), "tbody")
    sub(sub(sub(rows, "tr"), "td"), "content", title, ID="pdf-title")
    sub(sub(sub(rows, "tr"), "td"), "renderMultiMedia", referencedObject="pdf-1")
    organizer = sub(sub(section, "entry"), "organizer", classCode="CLUSTER", moodCode="EVN")
    sub(organizer, "templateId", root="1.2.250.1.213.1.1.3.18")
    sub(organizer, "id", root=uid(header, "pdf/organizer"))
    add_code(organizer, "code", "55107-7", "Document attaché", LOINC_OID)
    sub(organizer, "statusCode", code="completed")
    kind = sub(sub(organizer, "component"), "observation", classCode="OBS", moodCode="EVN")
    for template in (
        "1.3.6.1.4.1.19376.1.5.3.1.4.13",
        "1.2.250.1.213.1.1.3.48",
        "1.2.250.1.213.1.1.3.48.18",
    ):
        sub(kind, "templateId", root=template)
    sub(kind, "id", root=uid(header, "pdf/type"))
    add_code(kind, "code", "69764-9", "Type de document", LOINC_OID)
    sub(sub(kind, "text"), "reference", value="#pdf-title")
    sub(kind, "statusCode", code="completed")
    sub(kind, "effectiveTime", nullFlavor="NA")
    sub(kind, "value", xsi_type="CD", code="55108-5", displayName=title, codeSystem=LOINC_OID)
    media = sub(
        sub(organizer, "component"),
        "observationMedia",
        classCode="OBS",
        moodCode="EVN",
        ID="pdf-1",
    )
    sub(
        media,
        "value",
        base64.b64encode(pdf).decode("ascii"),
        mediaType="application/pdf",
        representation="B64",
    )


# ---------------------------------------------------------------- CR-BIO results chapter


def _number(text: str) -> str | None:
    value = text.strip().replace(",", ".")
    return value if re.fullmatch(_NUMBER, value) else None


def _value(observation: Element, coded: CodedResult) -> None:
    result = coded.result
    number = _number(result.value) if result.value_type is ValueType.NUMERIC else None
    if number is not None and result.unit and not coded.ucum_unit:
        # A unit that is not UCUM must not become "1": keep what the laboratory wrote, as text.
        sub(observation, "value", f"{result.value} {result.unit}", xsi_type="ST")
    elif number is not None:
        sub(observation, "value", xsi_type="PQ", value=number, unit=coded.ucum_unit or "1")
    elif result.value_type is ValueType.CODED:
        code, label, system = ([*result.value.split("^"), "", ""])[:3]
        if system in V2_CODE_SYSTEMS and code:
            sub(
                observation,
                "value",
                xsi_type="CD",
                code=code,
                displayName=label or code,
                codeSystem=V2_CODE_SYSTEMS[system],
            )
        else:
            value = sub(observation, "value", xsi_type="CD", nullFlavor="OTH")
            sub(value, "originalText", label or code)
    else:
        sub(observation, "value", result.value, xsi_type="ST")


def _reference_range(observation: Element, coded: CodedResult) -> None:
    text = (coded.result.reference_range or "").strip()
    if not text:
        return
    unit = coded.ucum_unit or "1"
    found, bound = _RANGE.match(text), _BOUND.match(text)
    observed = sub(
        sub(observation, "referenceRange", typeCode="REFV"),
        "observationRange",
        classCode="OBS",
        moodCode="EVN.CRT",
    )
    non_ucum = bool(coded.result.unit) and not coded.ucum_unit
    if coded.result.value_type is not ValueType.NUMERIC or not (found or bound) or non_ucum:
        sub(observed, "text", f"{text} {coded.result.unit}" if non_ucum else text)
        return
    interval = sub(observed, "value", xsi_type="IVL_PQ")
    if found:
        sub(interval, "low", value=_number(found[1]), unit=unit)
        sub(interval, "high", value=_number(found[2]), unit=unit)
    elif bound:
        is_low = bound[1] in (">", ">=", "\u2265")
        sub(interval, "low" if is_low else "high", value=_number(bound[2]), unit=unit)
    add_code(observed, "interpretationCode", "N", "Normal", INTERPRETATION_OID)


def _observation(parent: Element, coded: CodedResult, ref: str, default_time: str) -> None:
    observation = sub(parent, "observation", classCode="OBS", moodCode="EVN")
    for template in ("1.3.6.1.4.1.19376.1.3.1.6", "1.2.250.1.213.1.1.3.80"):
        sub(observation, "templateId", root=template)
    if coded.status is MappingStatus.WAITING:
        # Not (yet) mapped to LOINC: per the ANS CR-BIO rules the code carries no attribute
        # and the laboratory's own code travels as a translation, never as a fake LOINC.
        code = sub(observation, "code")
        sub(sub(code, "originalText"), "reference", value=f"#{ref}")
        sub(
            code,
            "translation",
            code=coded.result.local_code,
            displayName=coded.display_name,
            codeSystemName="Code local du laboratoire",
        )
    else:
        code = add_code(observation, "code", coded.code, coded.display_name, coded.code_system)
        sub(sub(code, "originalText"), "reference", value=f"#{ref}")
    sub(observation, "statusCode", code="completed")
    sub(observation, "effectiveTime", value=hl7_ts(coded.result.observed_at) or default_time)
    _value(observation, coded)
    flag = (coded.result.interpretation or "").strip()
    if flag in INTERPRETATION:
        add_code(observation, "interpretationCode", flag, INTERPRETATION[flag], INTERPRETATION_OID)
    _reference_range(observation, coded)


def _results_table(section: Element, results: Sequence[CodedResult]) -> None:
    table = sub(sub(section, "text"), "table", border="1")
    head = sub(sub(table, "thead"), "tr")
    for label in ("Examen", "Résultat", "Unité", "Valeurs de référence", "Interprétation"):
        sub(head, "th", label)
    body = sub(table, "tbody")
    for index, coded in enumerate(results, 1):
        row = sub(body, "tr")
        sub(sub(row, "td"), "content", coded.display_name, ID=f"res-{index}")
        flag = (coded.result.interpretation or "").strip()
        cells = (
            coded.result.value,
            coded.ucum_unit or coded.result.unit or "",
            coded.result.reference_range or "",
            INTERPRETATION.get(flag, flag),
        )
        for cell in cells:
            sub(row, "td", cell)


def lab_chapter(
    body: Element, header: DocumentHeader, results: Sequence[CodedResult], chapter: tuple[str, str]
) -> None:
    """FR-CR-BIO-Chapitre: the results table and one entry with an observation per result."""
    section = add_section(
        body, header, (LAB_CHAPTER_SECTION, "1.2.250.1.213.1.1.2.70"), chapter, chapter[1]
    )
    _results_table(section, results)
    entry = sub(section, "entry", typeCode="DRIV")
    for template in ("1.3.6.1.4.1.19376.1.3.1", "1.2.250.1.213.1.1.3.21"):
        sub(entry, "templateId", root=template)
    act = sub(entry, "act", classCode="ACT", moodCode="EVN")
    add_code(act, "code", *chapter, LOINC_OID)
    sub(act, "statusCode", code="completed")
    default_time = header.service_stop or header.effective_time
    for index, coded in enumerate(results, 1):
        _observation(
            sub(act, "entryRelationship", typeCode="COMP"), coded, f"res-{index}", default_time
        )
