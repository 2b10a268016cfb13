"""The body of a CR-IMG N3 (DICOM PS3.20 + CI-SIS IMG-CR-IMG 2024.01) (pure).

Narrative sections (LOINC code, title, text) get their DICOM and CI-SIS templateIds. The
model's structured parts come from the :class:`~domain.cda_model.ImagingStudy`:

* FR-DICOM-informations-cliniques holds FR-DICOM-Demande-examen (the sender's clinical
  information) and FR-DICOM-Historique-medical, whose medical history, surgical history and
  contraindication observations the model requires: the message carries none coded, so
  they say "Non renseigné" (text only; the contraindication value is an ST, not a code of
  JDV_Contre_indications_CISIS);
* the first FR-DICOM-Acte-imagerie (55111-9) section holds the FR-DICOM-Technique-imagerie
  entry (act, modality, anatomical location) and the FR-DICOM-Object-Catalog subsection
  (study, series and SOP instance when known); one is added when the sender gave none.
  Further 55111-9 sections stay narrative, without the model's templateIds;
* the header's serviceEvent names the study, the act and its modality (:func:`describe_study`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from domain.cda_model import DocumentHeader, ImagingStudy
from domain.document_id import HL7V3
from domain.lab_results import LOINC_OID
from streams.transcode.cda_body import Element, add_code, add_section, sub, uid

DCM: Final = "1.2.840.10008.2.16.4"  # DICOM Controlled Terminology
DCM_UID: Final = "1.2.840.10008.2.6.1"  # DICOM UID registry (SOP classes)
SNOMED_CT: Final = "2.16.840.1.113883.6.96"
CLINICAL: Final = "55752-0"
TECHNIQUE: Final = "55111-9"
UNKNOWN: Final = "Non renseigné"
_OID: Final = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
#: CR-IMG section LOINC code -> (DICOM PS3.20 template, CI-SIS template).
CR_IMG_SECTIONS: Final = {
    CLINICAL: ("1.2.840.10008.9.2", "1.2.250.1.213.1.1.2.205"),  # informations cliniques
    TECHNIQUE: ("1.2.840.10008.9.3", "1.2.250.1.213.1.1.2.206"),  # technique d'imagerie
    "18834-2": ("1.2.840.10008.9.4", "1.2.250.1.213.1.1.2.207"),  # comparaison
    "59776-5": ("2.16.840.1.113883.10.20.6.1.2", "1.2.250.1.213.1.1.2.208"),  # résultats
    "19005-8": ("1.2.840.10008.9.5", "1.2.250.1.213.1.1.2.209"),  # conclusion
    "55107-7": ("1.2.840.10008.9.6", "1.2.250.1.213.1.1.2.210"),  # addendum
}
#: FR-DICOM-Historique-medical observations the model requires: LOINC code, display.
HISTORY: Final = (
    ("11348-0", "Antécédents médicaux"),
    ("47519-4", "Antécédents chirurgicaux"),
    ("64100-1", "Contre-indications"),
)


class ImagingStudyMissing(ValueError):
    """The CR-IMG 2024.01 model cannot be met: the caller sends the report as N1."""


def check_study(study: ImagingStudy | None) -> ImagingStudy:
    """``study`` when it has what the model requires, else :class:`ImagingStudyMissing`."""
    if study is None:
        raise ImagingStudyMissing("a CR-IMG N3 needs the imaging study: send the report as N1")
    required = (*study.procedure, *study.modality, *study.target_site)
    if not all(value.strip() for value in required):
        raise ImagingStudyMissing(
            "a CR-IMG N3 needs the act code, the modality and the anatomical location"
        )
    uids = (study.study_uid, study.series_uid, study.sop_instance_uid)
    if not all(_OID.match(value) for value in uids if value is not None):
        raise ImagingStudyMissing("a DICOM UID of the study is not an OID")
    return study


def imaging_sections(
    body: Element,
    header: DocumentHeader,
    sections: Sequence[tuple[str, str, str]],
    study: ImagingStudy,
) -> None:
    """The report's sections, with the model's structured parts (see the module docstring)."""
    parts = list(sections)
    if all(code != TECHNIQUE for code, _, _ in parts):
        at = 1 if parts and parts[0][0] == CLINICAL else 0
        parts.insert(at, (TECHNIQUE, "Technique d'imagerie", ""))
    technique_done = False
    for code, title, text in parts:
        templates = CR_IMG_SECTIONS.get(code, ())
        if code == TECHNIQUE and technique_done:
            templates = ()
        section = add_section(body, header, templates, (code, title), title)
        if code == CLINICAL:
            _clinical_information(section, header, text)
            continue
        narrative = _paragraphs(sub(section, "text"), text)
        if code == TECHNIQUE and not technique_done:
            _technique(section, narrative, header, study)
            technique_done = True


def describe_study(root: Element, study: ImagingStudy) -> None:
    """documentationOf/serviceEvent of a CR-IMG: the study (its UID), the act and, as
    translations, its acquisition modality (what the route stage's release rules read)."""
    event = root.find(f"{{{HL7V3}}}documentationOf/{{{HL7V3}}}serviceEvent")
    if event is None:
        raise ValueError("the document has no serviceEvent to describe")
    study_id = sub(event, "id", root=study.study_uid)
    code = add_code(event, "code", *study.procedure, LOINC_OID)
    modality = _dcm(code, "translation", *study.modality)
    _dcm(sub(modality, "qualifier"), "name", "121139", "Modalité d'imagerie")
    event.insert(0, study_id)
    event.insert(1, code)


def _paragraphs(narrative: Element, text: str) -> Element:
    for line in (line.strip() for line in text.splitlines()):
        if line:
            sub(narrative, "paragraph", line)
    return narrative


def _subsection(parent: Element, header: DocumentHeader, templates: tuple[str, str]) -> Element:
    section = sub(sub(parent, "component"), "section", classCode="DOCSECT", moodCode="EVN")
    for template in templates:
        sub(section, "templateId", root=template)
    sub(section, "id", root=uid(header, f"subsection/{templates[1]}"))
    return section


def _clinical_information(section: Element, header: DocumentHeader, text: str) -> None:
    """FR-DICOM-informations-cliniques: the request (the sender's text), the history."""
    sub(section, "text")
    request = _subsection(section, header, ("1.2.840.10008.9.7", "1.2.250.1.213.1.1.2.211"))
    add_code(request, "code", "55115-0", "Demande", LOINC_OID)
    sub(request, "title", "Justification de la demande d'examen")
    narrative = _paragraphs(sub(request, "text"), text)
    if not len(narrative):
        sub(narrative, "paragraph", UNKNOWN)
    history = _subsection(
        section, header, ("2.16.840.1.113883.10.20.22.2.39", "1.2.250.1.213.1.1.2.213")
    )
    add_code(history, "code", "11329-0", "Historique médical", LOINC_OID)
    sub(history, "title", "Antécédents médicaux / Antécédents chirurgicaux / Contre-indications")
    rows = sub(sub(sub(history, "text"), "table", border="0"), "tbody")
    for index, (_, display) in enumerate(HISTORY, 1):
        row = sub(rows, "tr")
        sub(row, "td", display)
        sub(sub(row, "td"), "content", UNKNOWN, ID=f"historique-{index}")
    for index, (code, display) in enumerate(HISTORY, 1):
        _history_observation(history, header, index, code, display)


def _history_observation(
    history: Element, header: DocumentHeader, index: int, code: str, display: str
) -> None:
    observation = sub(sub(history, "entry"), "observation", classCode="OBS", moodCode="EVN")
    for template in ("2.16.840.1.113883.10.20.6.2.13", "1.2.250.1.213.1.1.3.150"):
        sub(observation, "templateId", root=template)
    sub(observation, "id", root=uid(header, f"history/{code}"))
    add_code(observation, "code", code, display, LOINC_OID)
    sub(sub(observation, "text"), "reference", value=f"#historique-{index}")
    sub(observation, "statusCode", code="completed")
    if code == "64100-1":  # JDV_Contre_indications_CISIS has no "unknown": a text value
        sub(observation, "value", UNKNOWN, xsi_type="ST")
    else:
        value = sub(observation, "value", xsi_type="CD")
        sub(sub(value, "originalText"), "reference", value=f"#historique-{index}")
    sub(observation, "targetSiteCode", nullFlavor="NA")


def _dcm(parent: Element, tag: str, code: str, display: str) -> Element:
    return sub(parent, tag, code=code, displayName=display, codeSystem=DCM, codeSystemName="DCM")


def _technique(
    section: Element, narrative: Element, header: DocumentHeader, study: ImagingStudy
) -> None:
    """FR-DICOM-Technique-imagerie entry, then the FR-DICOM-Object-Catalog subsection."""
    line = sub(narrative, "paragraph", "Acte : ")
    sub(line, "content", study.procedure[1], ID="acte-1").tail = " ; modalité : "
    sub(line, "content", study.modality[1], ID="acte-1-modalite").tail = " ; localisation : "
    sub(line, "content", study.target_site[1], ID="acte-1-localisation")
    procedure = sub(sub(section, "entry"), "procedure", classCode="PROC", moodCode="EVN")
    for template in ("1.2.840.10008.9.14", "1.2.250.1.213.1.1.3.153"):
        sub(procedure, "templateId", root=template)
    sub(procedure, "id", root=uid(header, "imaging/procedure"))
    code = add_code(procedure, "code", *study.procedure, LOINC_OID)
    sub(sub(code, "originalText"), "reference", value="#acte-1")
    sub(procedure, "effectiveTime", value=_performed_at(header, study))
    method = _dcm(procedure, "methodCode", *study.modality)
    sub(sub(method, "originalText"), "reference", value="#acte-1-modalite")
    site = sub(
        procedure,
        "targetSiteCode",
        code=study.target_site[0],
        displayName=study.target_site[1],
        codeSystem=SNOMED_CT,
        codeSystemName="SNOMED CT",
    )
    sub(sub(site, "originalText"), "reference", value="#acte-1-localisation")
    _catalog(section, header, study)


def _performed_at(header: DocumentHeader, study: ImagingStudy) -> str:
    return study.performed_at or header.service_start or header.effective_time


def _catalog(section: Element, header: DocumentHeader, study: ImagingStudy) -> None:
    """FR-DICOM-Object-Catalog: the study; its series and SOP instance entry when known."""
    catalog = _subsection(
        section, header, ("2.16.840.1.113883.10.20.6.1.1", "1.2.250.1.213.1.1.2.217")
    )
    _dcm(catalog, "code", "121181", "Catalogue d'objets DICOM")
    sub(catalog, "title", "Catalogue d'objets DICOM")
    narrative = sub(catalog, "text")
    sub(narrative, "paragraph", f"Examen (Study Instance UID) : {study.study_uid}")
    line = sub(narrative, "paragraph", "Modalité : ")
    modality = sub(line, "content", study.modality[1], ID="serie-1-modalite")
    sop_class = study.sop_class
    if study.series_uid is None or study.sop_instance_uid is None or sop_class is None:
        return
    modality.tail = " ; classe SOP : "
    sub(line, "content", sop_class[1], ID="serie-1-instance-1-classe")
    _study_act(catalog, header, study)


def _study_act(catalog: Element, header: DocumentHeader, study: ImagingStudy) -> None:
    """FR-DICOM-Examen-imagerie > FR-DICOM-Serie-imagerie > FR-DICOM-SOP-instance-observation."""
    series_uid, instance_uid, sop_class = study.series_uid, study.sop_instance_uid, study.sop_class
    if series_uid is None or instance_uid is None or sop_class is None:
        return
    time = _performed_at(header, study)
    act = sub(sub(catalog, "entry"), "act", classCode="ACT", moodCode="EVN")
    for template in ("1.2.840.10008.9.16", "1.2.250.1.213.1.1.3.155"):
        sub(act, "templateId", root=template)
    sub(act, "id", root=study.study_uid)
    _dcm(act, "code", "113014", "Examen")
    sub(act, "effectiveTime", value=time)
    relation = sub(act, "entryRelationship", typeCode="COMP")
    series = sub(relation, "act", classCode="ACT", moodCode="EVN")
    for template in ("1.2.840.10008.9.17", "1.2.250.1.213.1.1.3.156"):
        sub(series, "templateId", root=template)
    sub(series, "id", root=series_uid)
    qualifier = sub(_dcm(series, "code", "113015", "Séries"), "qualifier")
    _dcm(qualifier, "name", "121139", "Modalité")
    value = _dcm(qualifier, "value", *study.modality)
    sub(sub(value, "originalText"), "reference", value="#serie-1-modalite")
    sub(series, "effectiveTime", value=time)
    relation = sub(series, "entryRelationship", typeCode="COMP")
    instance = sub(relation, "observation", classCode="DGIMG", moodCode="EVN")
    for template in ("1.2.840.10008.9.18", "1.2.250.1.213.1.1.3.157"):
        sub(instance, "templateId", root=template)
    sub(instance, "id", root=instance_uid)
    sop = sub(
        instance,
        "code",
        code=sop_class[0],
        displayName=sop_class[1],
        codeSystem=DCM_UID,
        codeSystemName="DCMUID",
    )
    sub(sub(sop, "originalText"), "reference", value="#serie-1-instance-1-classe")
    sub(instance, "effectiveTime", value=time)
