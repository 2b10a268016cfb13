"""What the DMP sandbox checks in an ITI-41 request, as the DMP would (pure).

Every check is written from the specifications, none is the client's (``consumers``):

1. the envelope (:mod:`sandboxes.dmp_envelope`): MTOM/XOP, SOAP 1.2 schema, WS-Addressing;
2. the VIHF (:mod:`sandboxes.dmp_vihf`): SAML 2.0 schema, XML signature, the structure's
   certificate (trusted CA, the TLS one), the DMP's attributes;
3. ``lcm:SubmitObjectsRequest`` valid against the ebRS 3.0 ``lcm.xsd`` (IHE ITI TF-2b
   §3.41.4.1.2: ``xdsb:ProvideAndRegisterDocumentSetRequest`` wraps one of them and one
   ``xdsb:Document`` per DocumentEntry);
4. the metadata (:mod:`sandboxes.dmp_metadata`) against the ANS value sets;
5. the documents: each DocumentEntry has its attached document whose SHA-1 and size are
   its ``hash`` and ``size`` slots (ITI TF-3 §4.2.3.2.13/.20, XDSRepositoryMetadataError),
   no attachment without an entry (XDSMissingDocumentMetadata); the CDA's id is the
   uniqueId, its code the typeCode and its recordTarget the patient (CI-SIS);
6. the signed submission set (:mod:`sandboxes.dmp_signature`), unless the sandbox is told
   not to require it.

A refusal is :class:`Faulted` (steps 1-2) or :class:`Rejected` (3-6).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from lxml import etree

from domain.xds.ebrim import HAS_MEMBER, Scheme
from sandboxes.dmp_ebrim import Objects, RimObject, read_objects
from sandboxes.dmp_envelope import Envelope, read
from sandboxes.dmp_metadata import check_entry, check_submission_set, members, patient
from sandboxes.dmp_refusals import (
    METADATA_ERROR,
    MISSING_DOCUMENT,
    MISSING_METADATA,
    PATIENT_MISMATCH,
    REPOSITORY_METADATA_ERROR,
    SIGNATURE_ERROR,
    Faulted,
    Rejected,
)
from sandboxes.dmp_signature import check_signed_set
from sandboxes.dmp_valuesets import ValueSets
from sandboxes.dmp_vihf import RESOURCE_ID, Vihf, patient_of, verified
from sandboxes.dmp_xml import SchemaInvalid, elements, first, parse, validate

ACTION: Final = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
RPLC: Final = "urn:ihe:iti:2007:AssociationType:RPLC"
MAX_BODY: Final = 32 << 20
#: The fictitious filer of the local stack: the demo laboratory and its biologist.
LOCAL_FILER: Final = {
    "RELAIS_DMP_STRUCTURE_ID": "1120459876",
    "RELAIS_DMP_SUBJECT_ID": "801234567866",
    "RELAIS_DMP_SUBJECT_NAME": "DEMO Biologiste",
    "RELAIS_DMP_SUBJECT_ROLE": "10^1.2.250.1.71.1.2.7,SM03^1.2.250.1.71.4.2.5",
    "RELAIS_DMP_SOURCE_ID": "2.25.121669151512218839935402744578862317633",
    "RELAIS_DMP_LPS_HOMOLOGATION": "SANDBOX",
}


@dataclass(frozen=True)
class Oracle:
    """What the checks judge with: the trusted CA, the data folder and the value sets."""

    ca_file: Path
    data_dir: Path
    value_sets: ValueSets
    require_signed_submission: bool = True

    @property
    def schema_dir(self) -> Path:
        return self.data_dir / "ihe-xsd"


@dataclass(frozen=True)
class Filed:
    unique_id: str
    entry_uuid: str  # assigned by the sandbox when it files the document
    patient_id: str
    type_code: str
    sha256: str
    sha1: str
    size_bytes: int
    received_at: str
    submission_set: str  # its uniqueId
    structure_id: str  # Identifiant_Structure of the VIHF
    replaces: str | None = None  # RPLC: the entryUUID named, then the replaced uniqueId
    status: str = "Approved"  # Approved | Deprecated (replaced) | Deleted (ITI-62)


@dataclass(frozen=True)
class Checked:
    filed: Filed
    content: bytes
    metadata: bytes  # the ProvideAndRegisterDocumentSetRequest (xop:Include), kept to inspect


def check_envelope(
    oracle: Oracle,
    content_type: str,
    body: bytes,
    *,
    now: datetime,
    client_cert: x509.Certificate | None,
    action: str | frozenset[str] = ACTION,
) -> tuple[Envelope, Vihf]:
    """The envelope and its verified VIHF; :class:`Faulted` when either fails."""
    envelope = read(content_type, body, action=action, schema_dir=oracle.schema_dir)
    vihf = verified(
        envelope.assertion,
        ca_file=oracle.ca_file,
        schema_dir=oracle.schema_dir,
        now=now,
        client_cert=client_cert,
    )
    return envelope, vihf


def check_submission(oracle: Oracle, envelope: Envelope, vihf: Vihf, *, now: datetime) -> Checked:
    """The metadata, documents and signature; :class:`Rejected` with an XDS errorCode."""
    objects = _objects(oracle, envelope.payload)
    entry, submission_set, signature = members(objects)
    patient_id = patient(entry, submission_set, vihf.value(RESOURCE_ID))
    check_entry(entry, oracle.value_sets)
    check_submission_set(submission_set, oracle.value_sets)
    attached = _attached(envelope, objects)
    content = _document(entry, attached)
    unique_id = entry.identifier(Scheme.DE_UNIQUE_ID)
    type_code = entry.coded(Scheme.DE_TYPE)[0].node
    _check_cda(content, unique_id, type_code, patient_id)
    _check_signature(
        oracle, objects, (submission_set, signature), attached, {unique_id: content}, now=now
    )
    replaced = [a.target for a in objects.associations if a.type == RPLC and a.source == entry.id]
    return Checked(
        filed=Filed(
            unique_id=unique_id,
            entry_uuid="",
            patient_id=patient_id,
            type_code=type_code,
            sha256=hashlib.sha256(content).hexdigest(),
            sha1=hashlib.sha1(content, usedforsecurity=False).hexdigest(),
            size_bytes=len(content),
            received_at=now.isoformat(),
            submission_set=submission_set.identifier(Scheme.SS_UNIQUE_ID),
            structure_id=vihf.value("Identifiant_Structure"),
            replaces=replaced[0] if replaced else None,
        ),
        content=content,
        metadata=etree.tostring(envelope.payload),
    )


def _check_signature(
    oracle: Oracle,
    objects: Objects,
    signing: tuple[RimObject, RimObject | None],
    attached: dict[str, bytes],
    documents: dict[str, bytes],
    *,
    now: datetime,
) -> None:
    """The signed submission set (IHE DSG), required unless the oracle says otherwise:
    ``signing`` is (SubmissionSet, its signature entry or None)."""
    submission_set, signature = signing
    if signature is None:
        if oracle.require_signed_submission:
            raise Rejected(SIGNATURE_ERROR, "the submission set is not signed (IHE DSG, XAdES)")
        return
    check_signed_set(
        signature,
        _document(signature, attached),
        objects=objects,
        submission_set=submission_set,
        documents=documents,
        ca_file=oracle.ca_file,
        now=now,
        schema_dir=oracle.schema_dir,
    )


def _objects(oracle: Oracle, payload: etree._Element) -> Objects:
    """The registry objects of the request, once ``lcm.xsd`` says the request is valid."""
    requests = elements(
        payload, "self::xdsb:ProvideAndRegisterDocumentSetRequest/lcm:SubmitObjectsRequest"
    )
    if len(requests) != 1:
        raise Faulted(
            "rim:InvalidRequestException",
            "the Body must be a ProvideAndRegisterDocumentSetRequest with one SubmitObjectsRequest",
        )
    try:
        validate(oracle.schema_dir, "lcm", requests[0])
    except SchemaInvalid as exc:
        raise Rejected(METADATA_ERROR, str(exc)) from None
    objects = read_objects(requests[0])
    for association in objects.associations:
        if association.type == HAS_MEMBER and association.slots.get("SubmissionSetStatus") != (
            "Original",
        ):
            raise Rejected(METADATA_ERROR, "HasMember needs SubmissionSetStatus Original")
    return objects


def _attached(envelope: Envelope, objects: Objects) -> dict[str, bytes]:
    """The attached documents by the id of their ExtrinsicObject."""
    if envelope.unreferenced():
        raise Rejected(MISSING_METADATA, "a MIME part is not referenced by a Document")
    entry_ids = {e.id for e in objects.extrinsic}
    attached: dict[str, bytes] = {}
    for holder in elements(envelope.payload, "xdsb:Document"):
        document_id = holder.get("id", "")
        if document_id not in entry_ids or document_id in attached:
            raise Rejected(MISSING_METADATA, "an xdsb:Document has no DocumentEntry of its own")
        included = envelope.included(holder)
        attached[document_id] = included if included is not None else _inline(holder)
    return attached


def _inline(holder: etree._Element) -> bytes:
    """A document sent inline (base64Binary, without MTOM)."""
    try:
        return base64.b64decode("".join((holder.text or "").split()), validate=True)
    except binascii.Error:
        raise Rejected(
            MISSING_DOCUMENT, "an xdsb:Document is neither xop:Include nor base64"
        ) from None


def _document(entry: RimObject, attached: dict[str, bytes]) -> bytes:
    """The document of ``entry``, as its ``hash`` and ``size`` say."""
    content = attached.get(entry.id)
    if content is None:
        raise Rejected(MISSING_DOCUMENT, "no xdsb:Document for a DocumentEntry")
    sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()
    if entry.slot("hash").lower() != sha1 or entry.slot("size") != str(len(content)):
        raise Rejected(REPOSITORY_METADATA_ERROR, "hash/size do not match the document")
    return content


def cda_unique_ids(root: etree._Element) -> set[str]:
    """The uniqueIds a CDA's ``id`` may be written as: ``root``, ``root^extension`` (CI-SIS)
    and ``root.extension`` (an OID extended by a numeric extension)."""
    oid, extension = first(root, "v3:id/@root"), first(root, "v3:id/@extension")
    if not extension:
        return {oid}
    return {f"{oid}^{extension}"} | ({f"{oid}.{extension}"} if extension.isdigit() else set())


def _check_cda(content: bytes, unique_id: str, type_code: str, patient_id: str) -> None:
    try:
        root = parse(content)
    except etree.XMLSyntaxError:
        raise Rejected(METADATA_ERROR, "the document is not well-formed XML") from None
    if root.tag != "{urn:hl7-org:v3}ClinicalDocument":
        raise Rejected(METADATA_ERROR, "the document is not an HL7 CDA ClinicalDocument")
    if unique_id not in cda_unique_ids(root):
        raise Rejected(METADATA_ERROR, "ClinicalDocument/id differs from the uniqueId")
    if first(root, "v3:code/@code") != type_code:
        raise Rejected(METADATA_ERROR, "ClinicalDocument/code differs from the typeCode")
    ins, oid = patient_of(patient_id) or ("", "")
    ids = elements(root, "v3:recordTarget/v3:patientRole/v3:id[@root=$oid]", oid=oid)
    if ins not in {i.get("extension") for i in ids}:
        raise Rejected(PATIENT_MISMATCH, "recordTarget does not carry the patientId")
