"""METADATA.XML of an IHE XDM package: an ebRIM ``SubmitObjectsRequest`` (pure).

Written from the XDS DocumentEntry that :func:`domain.xds.metadata.document_entry`
derives from the CDA (the same slots, classifications and external identifiers as an
XDS.b submission), plus the XDM ``URI`` slot naming the document file and a submission
set (IHE ITI TF-2b §3.32; the shape of the ANS example
``DRIM-M_DATA/informatif/XDM/KA202401/IHE_XDM/SS000001/METADATA.XML``).

:func:`read_metadata` reads the document entries back (unique id, patient id, URI,
mime type, SHA-1 hash, size) for the inbound side's checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from lxml import etree

from domain.document_id import safe_parser
from domain.xds.codes import Coded
from domain.xds.ebrim import (
    HAS_MEMBER,
    LCM,
    REFERENCE_ID_LIST,
    RIM,
    STABLE_DOCUMENT,
    SUBMISSION_SET_NODE,
    Scheme,
)
from domain.xds.metadata import DocumentEntry
from relais.mail.errors import PackageError

NS: Final = {"lcm": LCM, "rim": RIM}


@dataclass(frozen=True)
class SubmissionSet:
    """The XDM submission set: its ids, time and the content type of the exchange."""

    unique_id: str  # an OID
    source_id: str  # the sending system's OID
    submission_time: str  # XDS time, UTC
    title: str
    content_type: Coded


@dataclass(frozen=True)
class PackagedDocument:
    """One document entry as METADATA.XML describes it (read back by the inbound side)."""

    entry_id: str
    unique_id: str
    patient_id: str
    uri: str
    mime_type: str
    hash_sha1: str
    size: int


def metadata_xml(submission: SubmissionSet, entries: Sequence[tuple[DocumentEntry, str]]) -> bytes:
    """The SubmitObjectsRequest for ``entries`` (each a DocumentEntry and its file URI)."""
    if not entries:
        raise PackageError("an XDM submission set needs at least one document")
    root = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(root, _rim("RegistryObjectList"))
    for index, (entry, uri) in enumerate(entries, start=1):
        objects.append(_extrinsic_object(entry, uri, f"Document{index:02d}"))
    objects.append(_registry_package(submission, entries[0][0].patient_id))
    _sub(
        objects,
        "Classification",
        id="cl-ss",
        classifiedObject="SubmissionSet01",
        classificationNode=SUBMISSION_SET_NODE,
    )
    for index in range(1, len(entries) + 1):
        association = _sub(
            objects,
            "Association",
            id=f"as{index:02d}",
            associationType=HAS_MEMBER,
            sourceObject="SubmissionSet01",
            targetObject=f"Document{index:02d}",
        )
        _slot(association, "SubmissionSetStatus", ["Original"])
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _rim(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


def _sub(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _rim(tag), dict(attrs))


def _slot(parent: etree._Element, name: str, values: Iterable[str]) -> None:
    slot = _sub(parent, "Slot", name=name)
    value_list = _sub(slot, "ValueList")
    for value in values:
        _sub(value_list, "Value").text = value


def _name(parent: etree._Element, text: str) -> None:
    _sub(_sub(parent, "Name"), "LocalizedString", value=text)


def _classification(
    parent: etree._Element, scheme: str, owner: str, ident: str, representation: str
) -> etree._Element:
    return _sub(
        parent,
        "Classification",
        id=ident,
        classificationScheme=scheme,
        classifiedObject=owner,
        nodeRepresentation=representation,
    )


def _classify(parent: etree._Element, scheme: str, owner: str, ident: str, code: Coded) -> None:
    node = _classification(parent, scheme, owner, ident, code.code)
    _slot(node, "codingScheme", [code.scheme])
    _name(node, code.display)


def _author(
    parent: etree._Element, scheme: str, owner: str, ident: str, *, person: str, institution: str
) -> None:
    node = _classification(parent, scheme, owner, ident, "")
    _slot(node, "authorPerson", [person])
    _slot(node, "authorInstitution", [institution])


def _identifier(
    parent: etree._Element, scheme: str, owner: str, ident: str, *, value: str, label: str
) -> None:
    node = _sub(
        parent,
        "ExternalIdentifier",
        id=ident,
        identificationScheme=scheme,
        registryObject=owner,
        value=value,
    )
    _name(node, label)


def _extrinsic_object(entry: DocumentEntry, uri: str, ident: str) -> etree._Element:
    node = etree.Element(
        _rim("ExtrinsicObject"), id=ident, mimeType=entry.mime_type, objectType=STABLE_DOCUMENT
    )
    _entry_slots(node, entry, uri)
    _name(node, entry.title)
    _entry_classifications(node, entry, ident)
    _identifier(
        node,
        Scheme.DE_PATIENT_ID,
        ident,
        f"{ident}-pid",
        value=entry.patient_id,
        label="XDSDocumentEntry.patientId",
    )
    _identifier(
        node,
        Scheme.DE_UNIQUE_ID,
        ident,
        f"{ident}-uid",
        value=entry.unique_id,
        label="XDSDocumentEntry.uniqueId",
    )
    return node


def _entry_slots(node: etree._Element, entry: DocumentEntry, uri: str) -> None:
    """The document entry's slots, the optional ones only when the document has them."""
    _slot(node, "creationTime", [entry.creation_time])
    _slot(node, "languageCode", [entry.language])
    if entry.legal_authenticator:
        _slot(node, "legalAuthenticator", [entry.legal_authenticator])
    if entry.service_start:
        _slot(node, "serviceStartTime", [entry.service_start])
    if entry.service_stop:
        _slot(node, "serviceStopTime", [entry.service_stop])
    _slot(node, "sourcePatientId", [entry.source_patient_id])
    _slot(node, "sourcePatientInfo", entry.source_patient_info)
    _slot(node, "hash", [entry.hash_sha1])
    _slot(node, "size", [str(entry.size)])
    _slot(node, "URI", [uri])
    if entry.reference_ids:
        _slot(node, REFERENCE_ID_LIST, entry.reference_ids)


def _entry_classifications(node: etree._Element, entry: DocumentEntry, ident: str) -> None:
    """The document entry's author and coded classifications (class, confidentiality, ...)."""
    _author(
        node,
        Scheme.DE_AUTHOR,
        ident,
        f"{ident}-author",
        person=entry.author_person,
        institution=entry.author_institution,
    )
    _classify(node, Scheme.DE_CLASS, ident, f"{ident}-class", entry.class_code)
    for n, code in enumerate(entry.confidentiality):
        _classify(node, Scheme.DE_CONFIDENTIALITY, ident, f"{ident}-conf{n}", code)
    _classify(node, Scheme.DE_FORMAT, ident, f"{ident}-format", entry.format_code)
    _classify(node, Scheme.DE_FACILITY, ident, f"{ident}-facility", entry.healthcare_facility_type)
    _classify(node, Scheme.DE_PRACTICE, ident, f"{ident}-practice", entry.practice_setting)
    _classify(node, Scheme.DE_TYPE, ident, f"{ident}-type", entry.type_code)


def _registry_package(submission: SubmissionSet, patient_id: str) -> etree._Element:
    owner = "SubmissionSet01"
    node = etree.Element(_rim("RegistryPackage"), id=owner)
    _slot(node, "submissionTime", [submission.submission_time])
    _name(node, submission.title)
    _classify(node, Scheme.SS_CONTENT_TYPE, owner, "ss-content", submission.content_type)
    _identifier(
        node,
        Scheme.SS_UNIQUE_ID,
        owner,
        "ss-uid",
        value=submission.unique_id,
        label="XDSSubmissionSet.uniqueId",
    )
    _identifier(
        node,
        Scheme.SS_SOURCE_ID,
        owner,
        "ss-source",
        value=submission.source_id,
        label="XDSSubmissionSet.sourceId",
    )
    _identifier(
        node,
        Scheme.SS_PATIENT_ID,
        owner,
        "ss-pid",
        value=patient_id,
        label="XDSSubmissionSet.patientId",
    )
    return node


def _first(node: etree._Element, path: str, what: str) -> str:
    found = node.xpath(path, namespaces=NS)
    values = [str(v).strip() for v in found] if isinstance(found, list) else []
    if not values:
        raise PackageError(f"METADATA.XML: document entry {node.get('id', '?')} has no {what}")
    return values[0]


def _slot_value(node: etree._Element, name: str) -> str:
    return _first(node, f"rim:Slot[@name='{name}']/rim:ValueList/rim:Value/text()", f"{name} slot")


def _identifier_value(node: etree._Element, scheme: str, label: str) -> str:
    return _first(node, f"rim:ExternalIdentifier[@identificationScheme='{scheme}']/@value", label)


def read_metadata(xml: bytes) -> list[PackagedDocument]:
    """The document entries of a METADATA.XML (any namespace prefix; ebRIM 3.0)."""
    try:
        root = etree.fromstring(xml, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise PackageError(f"METADATA.XML is not well-formed XML (line {exc.lineno})") from None
    documents = []
    for node in root.iter(_rim("ExtrinsicObject")):
        size = _slot_value(node, "size")
        if not size.isdigit():
            raise PackageError(
                f"METADATA.XML: document entry {node.get('id')} size is not a number"
            )
        documents.append(
            PackagedDocument(
                entry_id=node.get("id", "?"),
                unique_id=_identifier_value(node, Scheme.DE_UNIQUE_ID, "XDSDocumentEntry.uniqueId"),
                patient_id=_identifier_value(
                    node, Scheme.DE_PATIENT_ID, "XDSDocumentEntry.patientId"
                ),
                uri=_slot_value(node, "URI"),
                mime_type=node.get("mimeType", ""),
                hash_sha1=_slot_value(node, "hash").lower(),
                size=int(size),
            )
        )
    if not documents:
        raise PackageError("METADATA.XML describes no document (no ExtrinsicObject)")
    return documents
