"""Building an ITI-41 request: the submission set, the document entry, the MTOM package (pure).

:func:`request` is the SOAP 1.2 request — WS-Addressing (Action, MessageID, To, ReplyTo),
the signed VIHF in ``wsse:Security``, and the body ``ProvideAndRegisterDocumentSetRequest``
(:func:`provide_and_register`): ebRIM ``SubmitObjectsRequest`` with the submission set
(RegistryPackage), the document entry (ExtrinsicObject) of
:class:`~domain.xds.metadata.DocumentEntry`, the HasMember association (and RPLC to the
replaced document), and the document by ``xop:Include`` — packaged as MTOM/XOP
(:mod:`consumers.ihe.mtom`). Given the structure's key, the submission set is signed as the
DMP wants (STANDARDS.md §4): one more ExtrinsicObject, the IHE DSG signature document of
:mod:`consumers.ihe.dsg` (:func:`signature_entry`), a HasMember to it, the association
``signs`` from it to the submission set, and its own MIME part.

The entry's own id is derived from the document's uniqueId (:func:`entry_uuid`): a
symbolic id the DMP replaces with the entryUUID it assigns (one per version). A replacement
names its parent by that DMP-assigned entryUUID (found with ITI-18 or kept by the sink,
docs/dmp-feeding.md); the other object ids are derived too (:class:`_Ids`), so that the same
document always makes the same request.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from lxml import etree

from consumers.ihe import dsg, mtom
from consumers.ihe.iti41.soap import ACTION, NSMAP, envelope, text
from consumers.ihe.vihf import SigningKey
from domain.xds.codes import Coded
from domain.xds.ebrim import (
    HAS_MEMBER,
    LCM,
    REFERENCE_ID_LIST,
    RIM,
    STABLE_DOCUMENT,
    SUBMISSION_SET_NODE,
    XDSB,
    Scheme,
)
from domain.xds.metadata import DocumentEntry

RPLC: Final = "urn:ihe:iti:2007:AssociationType:RPLC"
SIGNS: Final = "urn:ihe:iti:2007:AssociationType:signs"
EVENT_CODE_LIST: Final = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
#: namespace of the UUIDs Relais derives (entry UUIDs, submission set uniqueIds)
RELAIS_UUIDS: Final = uuid.UUID("5b0c1c36-55a3-4c8e-9d36-6f2f3a2d8e41")


#: JDV_J59 submission set contentTypeCode from the visit class (PV1-2), STANDARDS.md §4.
CONTENT_TYPE_OID: Final = "1.2.250.1.213.2.2"
CONTENT_TYPES: Final = {
    "I": Coded("03", CONTENT_TYPE_OID, "Hospitalisation (PV1-2 I)"),
    "O": Coded("07", CONTENT_TYPE_OID, "Consultation externe (PV1-2 O)"),
    "E": Coded("07", CONTENT_TYPE_OID, "Consultation externe (PV1-2 E)"),
    "R": Coded("19", CONTENT_TYPE_OID, "Séances (PV1-2 R)"),
    "N": Coded("97", CONTENT_TYPE_OID, "Sans objet (PV1-2 N)"),
}


@dataclass(frozen=True)
class SubmissionSet:
    unique_id: str  # OID
    source_id: str  # OID of the sending system
    submission_time: str  # XDS time, UTC
    content_type: Coded
    author_person: str  # XCN
    author_institution: str  # XON
    patient_id: str  # CX ^NH, the same as the entry's


def entry_uuid(unique_id: str) -> str:
    """The entryUUID Relais gives the document entry of ``unique_id`` (stable across re-sends)."""
    return f"urn:uuid:{uuid.uuid5(RELAIS_UUIDS, f'entry:{unique_id}')}"


def content_type_of(visit_class: str | None) -> Coded:
    """contentTypeCode for PV1-2; an unknown or absent class is "not applicable" (97)."""
    return CONTENT_TYPES.get((visit_class or "N").strip().upper()[:1], CONTENT_TYPES["N"])


def submission_set_of(
    entry: DocumentEntry, *, source_id: str, now: datetime, visit_class: str | None = None
) -> SubmissionSet:
    """The submission set of one document: its uniqueId is stable for the same bytes."""
    seed = uuid.uuid5(RELAIS_UUIDS, f"submission:{entry.unique_id}:{entry.hash_sha1}")
    return SubmissionSet(
        unique_id=f"2.25.{seed.int}",
        source_id=source_id,
        submission_time=now.strftime("%Y%m%d%H%M%S"),
        content_type=content_type_of(visit_class),
        author_person=entry.author_person,
        author_institution=entry.author_institution,
        patient_id=entry.patient_id,
    )


def provide_and_register(
    entry: DocumentEntry,
    submission_set: SubmissionSet,
    *,
    document_cid: str,
    replaces: str | None = None,
    signature: dsg.SignatureDocument | None = None,
) -> etree._Element:
    """The ``ProvideAndRegisterDocumentSetRequest`` (RPLC to ``replaces``: the parent's
    entryUUID as the DMP returned it, ITI-18), with the submission set's ``signature``
    document when given (HasMember and ``signs``)."""
    ids = _Ids(entry.unique_id)
    de_id, ss_id = entry_uuid(entry.unique_id), ids.next()
    root = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap=NSMAP)
    request = etree.SubElement(root, f"{{{LCM}}}SubmitObjectsRequest")
    objects = etree.SubElement(request, f"{{{RIM}}}RegistryObjectList")
    _document_entry(objects, entry, de_id, ids)
    documents = {de_id: document_cid}
    if signature is not None:
        signature_id = entry_uuid(signature.unique_id)
        signed = signature_entry(entry, signature)
        _document_entry(objects, signed, signature_id, ids, events=(dsg.PURPOSE,))
        documents[signature_id] = content_id(signature.unique_id)
    _submission_set(objects, submission_set, ss_id, ids)
    node = _rim(objects, "Classification", id=ids.next(), classifiedObject=ss_id)
    node.set("classificationNode", SUBMISSION_SET_NODE)
    for member_id in documents:
        _association(objects, HAS_MEMBER, ss_id, member_id, ids)
    if signature is not None:
        _association(objects, SIGNS, entry_uuid(signature.unique_id), ss_id, ids)
    if replaces is not None:
        replacement = _rim(objects, "Association", id=ids.next(), associationType=RPLC)
        replacement.set("sourceObject", de_id)
        replacement.set("targetObject", replaces)  # the entryUUID the DMP assigned the parent
    for document_id, cid in documents.items():
        document = etree.SubElement(root, f"{{{XDSB}}}Document", id=document_id)
        etree.SubElement(document, f"{{{mtom.XOP}}}Include", href=f"cid:{cid}")
    return root


def request(
    entry: DocumentEntry,
    submission_set: SubmissionSet,
    content: bytes,
    *,
    vihf: etree._Element,
    endpoint: str,
    message_id: str,
    replaces: str | None = None,
    signing: SigningKey | None = None,
) -> tuple[str, bytes]:
    """(Content-Type, body) of the MTOM package of one ITI-41 request; with the structure's
    ``signing`` key, the submission set is signed (:func:`signature_of`), as the DMP wants."""
    cid = content_id(entry.unique_id)
    attachments = {cid: mtom.Part(entry.mime_type, content)}
    signature = None
    if signing is not None:
        signature = signature_of(entry, submission_set, content, signing)
        attachments[content_id(signature.unique_id)] = mtom.Part(dsg.MIME_TYPE, signature.content)
    body = provide_and_register(
        entry, submission_set, document_cid=cid, replaces=replaces, signature=signature
    )
    soap = envelope(
        body,
        action=ACTION,
        headers=[("MessageID", message_id), ("To", endpoint)],
        security=vihf,
    )
    return mtom.build(soap, attachments, action=ACTION)


def content_id(unique_id: str) -> str:
    """The MIME Content-ID of the document ``unique_id`` in the package (stable)."""
    return f"{uuid.uuid5(RELAIS_UUIDS, unique_id).hex}@relais"


def signature_of(
    entry: DocumentEntry, submission_set: SubmissionSet, content: bytes, key: SigningKey
) -> dsg.SignatureDocument:
    """The DSG signature document of the submission: the document's bytes and the submission
    set's uniqueId in the manifest, signed at the submission time with the structure's key."""
    signed_at = datetime.strptime(submission_set.submission_time, "%Y%m%d%H%M%S")
    return dsg.sign_submission_set(
        [dsg.Signed(entry.unique_id, content)],
        submission_set.unique_id,
        key,
        now=signed_at.replace(tzinfo=UTC),
    )


def signature_entry(entry: DocumentEntry, signature: dsg.SignatureDocument) -> DocumentEntry:
    """The signature document's DocumentEntry (DMP publication.xml, IHE DSG §5.5.6): the
    DSG codes, language ``art``, its own hash and size, and the signed document's patient,
    author, confidentiality, facility and practice setting (so it is masked alike)."""
    at = signature.signed_at.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return replace(
        entry,
        unique_id=signature.unique_id,
        source_patient_id=entry.patient_id,
        source_patient_info=(),
        class_code=dsg.CLASS_CODE,
        type_code=dsg.TYPE_CODE,
        format_code=dsg.FORMAT_CODE,
        creation_time=at,
        service_start=at,
        service_stop=at,
        language=dsg.LANGUAGE,
        title=dsg.TITLE,
        mime_type=dsg.MIME_TYPE,
        hash_sha1=signature.hash_sha1,
        size=signature.size,
        reference_ids=(),
    )


# building blocks ---------------------------------------------------------------------


class _Ids:
    """Deterministic ``urn:uuid:`` ids for the objects of one submission."""

    def __init__(self, seed: str) -> None:
        self._namespace = uuid.uuid5(RELAIS_UUIDS, f"objects:{seed}")
        self._count: Iterator[int] = iter(range(1_000_000))

    def next(self) -> str:
        return f"urn:uuid:{uuid.uuid5(self._namespace, str(next(self._count)))}"


def _document_entry(
    objects: etree._Element,
    entry: DocumentEntry,
    de_id: str,
    ids: _Ids,
    *,
    events: Sequence[Coded] = (),
) -> None:
    extrinsic = _rim(objects, "ExtrinsicObject", id=de_id, mimeType=entry.mime_type)
    extrinsic.set("objectType", STABLE_DOCUMENT)
    slots: list[tuple[str, Sequence[str]]] = [
        ("creationTime", [entry.creation_time]),
        ("hash", [entry.hash_sha1]),
        ("size", [str(entry.size)]),
        ("languageCode", [entry.language]),
        ("serviceStartTime", [entry.service_start] if entry.service_start else []),
        ("serviceStopTime", [entry.service_stop] if entry.service_stop else []),
        ("sourcePatientId", [entry.source_patient_id]),
        ("sourcePatientInfo", entry.source_patient_info),
        ("legalAuthenticator", [entry.legal_authenticator] if entry.legal_authenticator else []),
        (REFERENCE_ID_LIST, entry.reference_ids),
    ]
    for name, values in slots:
        if values:
            _slot(extrinsic, name, values)
    _name(extrinsic, entry.title)
    _entry_classifications(extrinsic, entry, de_id, ids, events)
    _identifier(extrinsic, Scheme.DE_PATIENT_ID, de_id, entry.patient_id, ids, label="patientId")
    _identifier(extrinsic, Scheme.DE_UNIQUE_ID, de_id, entry.unique_id, ids, label="uniqueId")


def _entry_classifications(
    extrinsic: etree._Element, entry: DocumentEntry, de_id: str, ids: _Ids, events: Sequence[Coded]
) -> None:
    """The author, then the coded classifications (eventCodeList last)."""
    author = _classification(extrinsic, Scheme.DE_AUTHOR, de_id, "", ids)
    _slot(author, "authorPerson", [entry.author_person])
    _slot(author, "authorInstitution", [entry.author_institution])
    codes: list[tuple[str, Coded]] = [
        (Scheme.DE_CLASS, entry.class_code),
        *((Scheme.DE_CONFIDENTIALITY, c) for c in entry.confidentiality),
        (Scheme.DE_FORMAT, entry.format_code),
        (Scheme.DE_FACILITY, entry.healthcare_facility_type),
        (Scheme.DE_PRACTICE, entry.practice_setting),
        (Scheme.DE_TYPE, entry.type_code),
        *((EVENT_CODE_LIST, e) for e in events),
    ]
    for scheme, coded in codes:
        _coded(extrinsic, scheme, de_id, coded, ids)


def _submission_set(objects: etree._Element, ss: SubmissionSet, ss_id: str, ids: _Ids) -> None:
    package = _rim(objects, "RegistryPackage", id=ss_id)
    _slot(package, "submissionTime", [ss.submission_time])
    author = _classification(package, Scheme.SS_AUTHOR, ss_id, "", ids)
    _slot(author, "authorPerson", [ss.author_person])
    _slot(author, "authorInstitution", [ss.author_institution])
    _coded(package, Scheme.SS_CONTENT_TYPE, ss_id, ss.content_type, ids)
    _identifier(package, Scheme.SS_UNIQUE_ID, ss_id, ss.unique_id, ids, label="SS.uniqueId")
    _identifier(package, Scheme.SS_SOURCE_ID, ss_id, ss.source_id, ids, label="SS.sourceId")
    _identifier(package, Scheme.SS_PATIENT_ID, ss_id, ss.patient_id, ids, label="SS.patientId")


def _association(objects: etree._Element, kind: str, source: str, target: str, ids: _Ids) -> None:
    """An association; ``SubmissionSetStatus`` Original, as the DMP's sample writes on both
    the HasMember and the ``signs`` ones."""
    association = _rim(objects, "Association", id=ids.next(), associationType=kind)
    association.set("sourceObject", source)
    association.set("targetObject", target)
    _slot(association, "SubmissionSetStatus", ["Original"])


def _rim(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{RIM}}}{tag}", attrs)


def _slot(parent: etree._Element, name: str, values: Sequence[str]) -> None:
    listing = etree.SubElement(_rim(parent, "Slot", name=name), f"{{{RIM}}}ValueList")
    for value in values:
        text(listing, RIM, "Value", value)


def _name(parent: etree._Element, value: str) -> None:
    _rim(_rim(parent, "Name"), "LocalizedString", value=value)


def _classification(
    parent: etree._Element, scheme: str, classified: str, node: str, ids: _Ids
) -> etree._Element:
    element = _rim(parent, "Classification", classificationScheme=scheme)
    element.set("classifiedObject", classified)
    element.set("nodeRepresentation", node)
    element.set("id", ids.next())
    return element


def _coded(parent: etree._Element, scheme: str, classified: str, coded: Coded, ids: _Ids) -> None:
    element = _classification(parent, scheme, classified, coded.code, ids)
    _slot(element, "codingScheme", [coded.scheme])
    _name(element, coded.display)


def _identifier(
    parent: etree._Element, scheme: str, owner: str, value: str, ids: _Ids, *, label: str
) -> None:
    element = _rim(parent, "ExternalIdentifier", identificationScheme=scheme, value=value)
    element.set("registryObject", owner)
    element.set("id", ids.next())
    prefix = "XDSSubmissionSet." if label.startswith("SS.") else "XDSDocumentEntry."
    _name(element, prefix + label.removeprefix("SS."))
