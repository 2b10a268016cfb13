"""Build CI-SIS CDA R2 documents: CR-BIO N3, CR-IMG N3 and N1 (PDF) (pure).

Shapes per STANDARDS.md §3 (CI-SIS, TestContenuCDA-3-0 models): the common
header (realm FR, typeId, HL7 France + CI-SIS templateIds, id, LOINC type, title,
effectiveTime, confidentiality, language, setId/versionNumber, recordTarget with
the INS and the birth traits, author, custodian, legalAuthenticator,
documentationOf, relatedDocument RPLC, componentOf), then the body of the model.
Every value goes in through lxml (escaped by the serializer); characters that
XML 1.0 cannot carry are dropped. Generated section ids are name-based UUIDs
derived from the document id, so the same input always gives the same bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from lxml import etree

from domain.cda_model import (
    FACILITY_TYPE_OID,
    PRACTICE_SETTING_OID,
    PROFESSION_OID,
    DocumentHeader,
    ImagingStudy,
    Organisation,
    PatientHeader,
    Person,
)
from domain.document_id import HL7V3, split_id
from domain.lab_results import LOINC_OID, CodedResult
from streams.transcode.cda_body import (
    XSI,
    Element,
    add_code,
    add_section,
    attached_pdf,
    lab_chapter,
    serialize,
    sub,
)
from streams.transcode.cda_imaging import (
    ImagingStudyMissing,
    check_study,
    describe_study,
    imaging_sections,
)

Templates = tuple[tuple[str, str | None], ...]

HL7_FRANCE: Final = "2.16.840.1.113883.2.8.2.1"
CI_SIS: Final = "1.2.250.1.213.1.1.1.1"
CR_BIO_MODEL: Final = "1.2.250.1.213.1.1.1.55"
CR_IMG_MODEL: Final = "1.2.250.1.213.1.1.1.45"
XDS_SD: Final = "1.3.6.1.4.1.19376.1.2.20"
LAB_PERFORMER: Final = "1.3.6.1.4.1.19376.1.3.3.1.7"  # IHE PALM: laboratory performer
PDF_COPY_SECTION: Final = "1.2.250.1.213.1.1.2.243"
CR_BIO_TITLE: Final = "Compte rendu d'examens biologiques"
CR_BIO_TYPE: Final = ("11502-2", "CR d'examens biologiques")
CR_IMG_TYPE: Final = ("18748-4", "CR d'imagerie médicale")
#: Default laboratory specialty (chapter) of a CR-BIO: LOINC 26436-6 "Laboratory studies".
DEFAULT_CHAPTER: Final = ("26436-6", "Examens de laboratoire")

CR_BIO_TEMPLATES: Final[Templates] = (("1.3.6.1.4.1.19376.1.3.3", None), (CR_BIO_MODEL, None))
CR_IMG_TEMPLATES: Final[Templates] = (
    ("1.2.840.10008.9.1", None),
    ("1.2.840.10008.9.20", None),
    ("1.2.840.10008.9.21", None),
    (CR_IMG_MODEL, "2024.01"),
)
CONFIDENTIALITY: Final = {"N": "Normal", "R": "Restreint", "V": "Très restreint"}
SEX: Final = {"M": "Masculin", "F": "Féminin", "U": "Inconnu", "UN": "Inconnu"}


# ---------------------------------------------------------------- header


def _document(
    header: DocumentHeader, patient: PatientHeader, templates: Templates, doc_type: tuple[str, str]
) -> Element:
    namespaces = {None: HL7V3, "xsi": XSI}  # the default namespace: lxml-stubs want str keys
    root = etree.Element(f"{{{HL7V3}}}ClinicalDocument", nsmap=namespaces)  # type: ignore[arg-type]
    sub(root, "realmCode", code="FR")
    sub(root, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    for template, extension in ((HL7_FRANCE, None), (CI_SIS, None), *templates):
        sub(root, "templateId", root=template, extension=extension)
    sub(root, "id", root=header.id_root, extension=header.id_extension)
    add_code(root, "code", doc_type[0], doc_type[1], LOINC_OID)
    sub(root, "title", CR_BIO_TITLE if doc_type == CR_BIO_TYPE else header.title)
    sub(root, "effectiveTime", value=header.effective_time)
    confidentiality = CONFIDENTIALITY.get(header.confidentiality, header.confidentiality)
    add_code(
        root,
        "confidentialityCode",
        header.confidentiality,
        confidentiality,
        "2.16.840.1.113883.5.25",
    )
    sub(root, "languageCode", code=header.language)
    sub(root, "setId", root=header.set_id_root, extension=header.set_id_extension)
    sub(root, "versionNumber", value=str(header.version))
    _record_target(root, patient)
    _author(root, header)
    custodian = sub(
        sub(sub(root, "custodian"), "assignedCustodian"), "representedCustodianOrganization"
    )
    sub(custodian, "id", root=header.custodian.id_root, extension=header.custodian.id_extension)
    sub(custodian, "name", header.custodian.name)
    legal = sub(root, "legalAuthenticator")
    sub(legal, "time", value=header.authored_at)
    sub(legal, "signatureCode", code="S")
    entity = sub(legal, "assignedEntity")
    _assigned(entity, header.legal_authenticator, header.author_org, header, contact=False)
    return root


def _record_target(root: Element, patient: PatientHeader) -> None:
    role = sub(sub(root, "recordTarget"), "patientRole")
    sub(role, "id", root=patient.ins_oid, extension=patient.ins)
    for local_root, local_id in patient.local_ids:
        sub(role, "id", root=local_root, extension=local_id)
    person = sub(role, "patient", classCode="PSN")
    name = sub(person, "name")
    sub(name, "family", patient.birth_name, qualifier="BR")
    sub(name, "given", patient.given_names)
    first = patient.given_names.split()
    if first:
        sub(name, "given", first[0], qualifier="BR")
    sex = SEX.get(patient.sex, "Inconnu")
    add_code(person, "administrativeGenderCode", patient.sex, sex, "2.16.840.1.113883.5.1")
    sub(person, "birthTime", value=patient.birth_date)
    if patient.birthplace_code:
        place = sub(sub(sub(person, "birthplace"), "place"), "addr")
        sub(place, "county", patient.birthplace_code)


def _author(root: Element, header: DocumentHeader) -> None:
    author = sub(root, "author")
    sub(author, "time", value=header.authored_at)
    entity = sub(author, "assignedAuthor")
    _assigned(entity, header.author, header.author_org, header, contact=False)


def _assigned(
    entity: Element, person: Person, org: Organisation, header: DocumentHeader, *, contact: bool
) -> None:
    """assignedAuthor / assignedEntity: PS id, profession, name, organisation.

    With ``contact``, addr and telecom are written as unknown (nullFlavor UNK): some
    models require them and the header carries no address.
    """
    sub(entity, "id", root=person.id_root, extension=person.id_extension)
    if person.profession:
        add_code(entity, "code", *person.profession, PROFESSION_OID)
    if contact:
        _unknown_contact(entity, "addr", "telecom")
    if person.family or person.given or person.prefix:
        name = sub(sub(entity, "assignedPerson"), "name")
        for part, value in (
            ("prefix", person.prefix),
            ("given", person.given),
            ("family", person.family),
        ):
            if value:
                sub(name, part, value)
    organisation = sub(entity, "representedOrganization")
    sub(organisation, "id", root=org.id_root, extension=org.id_extension)
    sub(organisation, "name", org.name)
    if contact:
        _unknown_contact(organisation, "telecom", "addr")
    add_code(
        organisation, "standardIndustryClassCode", *header.practice_setting, PRACTICE_SETTING_OID
    )


def _unknown_contact(parent: Element, *tags: str) -> None:
    for tag in tags:
        sub(parent, tag, nullFlavor="UNK")


def _interval(parent: Element, tag: str, low: str | None, high: str | None) -> None:
    if low or high:
        interval = sub(parent, tag)
        if low:
            sub(interval, "low", value=low)
        if high:
            sub(interval, "high", value=high)


def _context(root: Element, header: DocumentHeader, service: tuple[str, str] | None) -> None:
    """documentationOf, relatedDocument RPLC and componentOf, in the schema's order.

    The main act carries its performer (required by the CI-SIS minimal structure):
    the author and the author's organisation, with the CR-BIO performer template
    when ``service`` is a laboratory chapter.
    """
    start = header.service_start or header.effective_time
    event = sub(sub(root, "documentationOf"), "serviceEvent", classCode="ACT")
    if service:
        add_code(event, "code", *service, LOINC_OID)
    _interval(event, "effectiveTime", start, header.service_stop)
    performer = sub(event, "performer", typeCode="PRF")
    if service:
        sub(performer, "templateId", root=LAB_PERFORMER)
    _interval(performer, "time", start, header.service_stop)
    entity = sub(performer, "assignedEntity")
    _assigned(entity, header.author, header.author_org, header, contact=True)
    if header.replaces:
        parent = sub(sub(root, "relatedDocument", typeCode="RPLC"), "parentDocument")
        replaced, extension = split_id(header.replaces)
        sub(parent, "id", root=replaced, extension=extension)
    encounter = sub(sub(root, "componentOf"), "encompassingEncounter")
    _interval(encounter, "effectiveTime", start, header.service_stop)
    responsible = sub(sub(encounter, "responsibleParty"), "assignedEntity")
    _assigned(responsible, header.legal_authenticator, header.author_org, header, contact=False)
    facility = sub(sub(encounter, "location"), "healthCareFacility")
    add_code(facility, "code", *header.facility_type, FACILITY_TYPE_OID)


# ---------------------------------------------------------------- public builders


def build_cr_bio_n3(
    header: DocumentHeader,
    patient: PatientHeader,
    results: Sequence[CodedResult],
    pdf: bytes | None,
    *,
    chapter: tuple[str, str] = DEFAULT_CHAPTER,
) -> bytes:
    """CR-BIO N3 (CI-SIS 2024.01): one laboratory chapter with the results, then the PDF copy.

    The type code and title are the model's (11502-2, "Compte rendu d'examens
    biologiques") whatever the header says. The FR-Document-PDF-copie section is
    always present; it holds the PDF when one is given.
    """
    if not results:
        raise ValueError("a CR-BIO N3 needs at least one result: send the PDF as N1")
    root = _document(header, patient, CR_BIO_TEMPLATES, CR_BIO_TYPE)
    _context(root, header, chapter)
    body = sub(sub(root, "component"), "structuredBody")
    lab_chapter(body, header, results, chapter)
    copy = add_section(
        body, header, (PDF_COPY_SECTION,), ("55108-5", "Copie du document"), "Copie du document"
    )
    if pdf is None:
        sub(sub(copy, "text"), "paragraph", "Copie PDF non transmise par le laboratoire.")
    else:
        attached_pdf(copy, header, pdf, "Copie du document")
    return serialize(root)


def build_n1(
    header: DocumentHeader, patient: PatientHeader, pdf: bytes, media_type: str = "application/pdf"
) -> bytes:
    """CDA N1 (IHE XDS-SD): the header and the PDF (or plain text, ``text/plain``) as a base64
    nonXMLBody."""
    root = _document(header, patient, ((XDS_SD, None),), (header.type_code, header.type_display))
    _context(root, header, None)
    body = sub(sub(root, "component"), "nonXMLBody")
    sub(
        body,
        "text",
        base64.b64encode(pdf).decode("ascii"),
        mediaType=media_type,
        representation="B64",
    )
    return serialize(root)


def build_cr_img_n3(
    header: DocumentHeader,
    patient: PatientHeader,
    sections: Sequence[tuple[str, str, str]],
    pdf: bytes | None,
    *,
    study: ImagingStudy | None = None,
) -> bytes:
    """CR-IMG N3 (DICOM PS3.20 + CI-SIS IMG-CR-IMG 2024.01): sections (LOINC code, title, text).

    The model requires the imaging act (code, acquisition modality, anatomical location)
    and the study's object catalog: without a ``study`` that has them, or with a DICOM UID
    that is not an OID, :class:`ImagingStudyMissing` (a ``ValueError``) is raised and the
    caller sends the report as N1. The structured parts are those of
    :mod:`streams.transcode.cda_imaging`. A PDF goes in an FR-Documents-ajoutes section.
    """
    study = check_study(study)
    if header.service_start is None and study.performed_at is not None:
        header = replace(header, service_start=study.performed_at)  # the exam's time
    root = _document(header, patient, CR_IMG_TEMPLATES, CR_IMG_TYPE)
    _context(root, header, None)
    describe_study(root, study)
    body = sub(sub(root, "component"), "structuredBody")
    imaging_sections(body, header, sections, study)
    if pdf is not None:
        added = add_section(
            body,
            header,
            ("1.2.250.1.213.1.1.2.37",),
            ("55107-7", "Documents ajoutés"),
            "Documents ajoutés",
        )
        attached_pdf(added, header, pdf, "Copie du document")
    return serialize(root)


def structured_document(
    header: DocumentHeader, patient: PatientHeader, templates: Templates, doc_type: tuple[str, str]
) -> tuple[Element, Element]:
    """The header and context of an N3 of another model, and its empty ``structuredBody``."""
    root = _document(header, patient, templates, doc_type)
    _context(root, header, None)
    return root, sub(sub(root, "component"), "structuredBody")


__all__ = [
    "ImagingStudyMissing",
    "build_cr_bio_n3",
    "build_cr_img_n3",
    "build_n1",
    "structured_document",
]
