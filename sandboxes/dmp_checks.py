"""What the DMP sandbox checks in an ITI-41 request, as a registry would (pure).

The envelope (:func:`check_envelope`: WS-Addressing, the VIHF against the trusted CA and
the TLS structure) and the submission (:func:`check_submission`: the document entry, the
submission set, their association, slots, classifications and value sets, the patient's
INS, hash and size, the CDA against its metadata, RPLC). A refusal is :class:`Faulted`
(a SOAP Fault) or :class:`Rejected` (a RegistryResponse Failure with an XDS errorCode);
their messages name what is wrong, never patient data. :mod:`sandboxes.dmp` serves them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from lxml import etree

from consumers.ihe import iti41
from consumers.ihe.iti41 import Metadata, Received, RegistryObject
from consumers.ihe.vihf import RESOURCE_ID, VerifiedVihf, VihfError, verify_vihf
from domain.document_id import HL7V3, cda_id_of, safe_parser, xpath_strings
from domain.ins import INS_OIDS, ins_key_valid
from domain.xds import ebrim
from domain.xds.codes import (
    CLASS_CODES,
    CONFIDENTIALITY_CODES,
    FACILITY_TYPES,
    FORMAT_CODES,
    PRACTICE_SETTINGS,
    TYPE_CODES,
    ValueSet,
)
from domain.xds.ebrim import Scheme
from sandboxes import Refusal

PATIENT_CX = re.compile(r"^(?P<ins>[0-9AB]{15})\^\^\^&(?P<oid>[0-9.]+)&ISO\^NH$")
MAX_BODY = 32 << 20
METADATA_ERROR = "XDSRegistryMetadataError"
CODED: Mapping[str, tuple[str, ValueSet]] = {
    Scheme.DE_CLASS: ("classCode", CLASS_CODES),
    Scheme.DE_TYPE: ("typeCode", TYPE_CODES),
    Scheme.DE_FORMAT: ("formatCode", FORMAT_CODES),
    Scheme.DE_FACILITY: ("healthcareFacilityTypeCode", FACILITY_TYPES),
    Scheme.DE_PRACTICE: ("practiceSettingCode", PRACTICE_SETTINGS),
}
REQUIRED_SLOTS = ("creationTime", "hash", "size", "languageCode", "sourcePatientId")
CONTENT_TYPES = frozenset((c.code, c.scheme) for c in iti41.CONTENT_TYPES.values())
#: The fictitious filer of the local stack: the demo laboratory and its biologist.
LOCAL_FILER = {
    "RELAIS_DMP_STRUCTURE_ID": "1120459876",
    "RELAIS_DMP_SUBJECT_ID": "801234567866",
    "RELAIS_DMP_SUBJECT_NAME": "DEMO Biologiste",
    "RELAIS_DMP_SUBJECT_ROLE": "10^1.2.250.1.71.1.2.7,SM03^1.2.250.1.71.4.2.5",
    "RELAIS_DMP_SOURCE_ID": "2.25.121669151512218839935402744578862317633",
    "RELAIS_DMP_LPS_HOMOLOGATION": "SANDBOX",
}


class Rejected(Refusal):
    """The registry refuses the submission: RegistryResponse Failure with an XDS errorCode."""

    default_status = 200


class Faulted(Refusal):
    """The request is refused before its metadata is read: a SOAP 1.2 Sender Fault."""


@dataclass(frozen=True)
class Filed:
    unique_id: str
    entry_uuid: str
    patient_id: str
    type_code: str
    sha256: str
    sha1: str
    size_bytes: int
    received_at: str
    submission_set: str  # its uniqueId
    structure_id: str  # Identifiant_Structure of the VIHF
    replaces: str | None = None  # uniqueId of the replaced document
    status: str = "Approved"  # Approved | Deprecated (replaced) | Deleted (ITI-62)


@dataclass(frozen=True)
class Checked:
    filed: Filed
    content: bytes
    metadata: bytes  # the ProvideAndRegisterDocumentSetRequest (xop:Include), kept to inspect


def check_envelope(
    received: Received,
    *,
    ca_file: Path,
    now: datetime,
    client_cert: x509.Certificate | None,
) -> VerifiedVihf:
    """Addressing and the VIHF; :class:`Faulted` with the fault subcode when they fail."""
    if received.action != iti41.ACTION:
        raise Faulted("wsa:ActionNotSupported", f"wsa:Action must be {iti41.ACTION}")
    if not received.message_id or not received.to:
        raise Faulted("wsa:MessageAddressingHeaderRequired", "wsa:MessageID and wsa:To required")
    vihf = verified_vihf(received.assertion, ca_file, now=now)
    if client_cert is not None and vihf.certificate.subject != client_cert.subject:
        raise Faulted(
            "wsse:FailedAuthentication",
            "the VIHF is not signed by the structure that authenticated the TLS session",
        )
    return vihf


def verified_vihf(
    assertion: etree._Element | None, ca_file: Path, *, now: datetime
) -> VerifiedVihf:
    """The request's VIHF, its signature verified with the trusted CA; :class:`Faulted` if not."""
    if assertion is None:
        raise Faulted("wsse:InvalidSecurity", "no VIHF (saml:Assertion) in wsse:Security")
    try:
        return verify_vihf(assertion, ca_file, now=now)
    except VihfError as exc:
        raise Faulted("wsse:FailedAuthentication", exc.reason) from None


def check_submission(received: Received, vihf: VerifiedVihf, *, now: datetime) -> Checked:
    """The metadata and the document; :class:`Rejected` with an XDS errorCode when wrong."""
    metadata = iti41.read_metadata(received.body)
    entry, submission_set = _members(metadata)
    unique_id = _identifier(entry, Scheme.DE_UNIQUE_ID, "DocumentEntry.uniqueId")
    patient_id = _identifier(entry, Scheme.DE_PATIENT_ID, "DocumentEntry.patientId")
    ins, oid = _patient(patient_id)
    if _identifier(submission_set, Scheme.SS_PATIENT_ID, "SubmissionSet.patientId") != patient_id:
        raise Rejected(
            "XDSPatientIdDoesNotMatch", "SubmissionSet and DocumentEntry patientId differ"
        )
    if vihf.value(RESOURCE_ID) != patient_id:
        raise Rejected("XDSPatientIdDoesNotMatch", "the VIHF resource-id is not the patientId")
    _check_entry(entry)
    _check_submission_set(submission_set)
    content, sha1 = _document(received, entry)
    _check_cda(content, unique_id, ins, oid)
    replaced = [a for a in metadata.associations if a.type == iti41.RPLC and a.source == entry.id]
    return Checked(
        filed=Filed(
            unique_id=unique_id,
            entry_uuid=entry.id,
            patient_id=patient_id,
            type_code=_codes(entry, Scheme.DE_TYPE)[0].node,
            sha256=hashlib.sha256(content).hexdigest(),
            sha1=sha1,
            size_bytes=len(content),
            received_at=now.isoformat(),
            submission_set=_identifier(submission_set, Scheme.SS_UNIQUE_ID, "SS.uniqueId"),
            structure_id=vihf.value("Identifiant_Structure"),
            replaces=replaced[0].target if replaced else None,  # an entryUUID until resolved
        ),
        content=content,
        metadata=etree.tostring(received.body),
    )


def _document(received: Received, entry: RegistryObject) -> tuple[bytes, str]:
    """The one document of the entry and its SHA-1, as the entry's hash and size say."""
    if received.unreferenced_parts:
        raise Rejected("XDSMissingDocumentMetadata", "a MIME part is not referenced by a Document")
    content = received.documents.get(entry.id)
    if content is None:
        raise Rejected("XDSMissingDocument", "no xdsb:Document for the DocumentEntry")
    sha1 = hashlib.sha1(content, usedforsecurity=False).hexdigest()
    if (entry.slot("hash") or "").lower() != sha1 or entry.slot("size") != str(len(content)):
        raise Rejected("XDSRepositoryMetadataError", "hash/size do not match the document")
    return content, sha1


def _members(metadata: Metadata) -> tuple[RegistryObject, RegistryObject]:
    if len(metadata.entries) != 1 or len(metadata.submission_sets) != 1:
        raise Rejected(METADATA_ERROR, "one DocumentEntry and one SubmissionSet expected")
    entry, submission_set = metadata.entries[0], metadata.submission_sets[0]
    if metadata.nodes.get(submission_set.id) != ebrim.SUBMISSION_SET_NODE:
        raise Rejected(METADATA_ERROR, "the RegistryPackage is not classified as SubmissionSet")
    if not any(
        a.type == ebrim.HAS_MEMBER and a.source == submission_set.id and a.target == entry.id
        for a in metadata.associations
    ):
        raise Rejected(METADATA_ERROR, "no HasMember association SubmissionSet -> DocumentEntry")
    if entry.attributes.get("objectType") != ebrim.STABLE_DOCUMENT:
        raise Rejected(METADATA_ERROR, "DocumentEntry objectType is not a stable document")
    return entry, submission_set


def _identifier(registry_object: RegistryObject, scheme: str, label: str) -> str:
    value = registry_object.identifiers.get(scheme, "").strip()
    if not value:
        raise Rejected(METADATA_ERROR, f"{label} is missing")
    return value


def _patient(patient_id: str) -> tuple[str, str]:
    match = PATIENT_CX.match(patient_id)
    if not match:
        raise Rejected("XDSUnknownPatientId", "patientId must be <INS>^^^&<OID>&ISO^NH")
    if match["oid"] not in INS_OIDS:
        raise Rejected("XDSUnknownPatientId", f"{match['oid']} is not an INS assigning authority")
    if not ins_key_valid(match["ins"]):
        raise Rejected("XDSUnknownPatientId", "the INS matricule fails its key check")
    return match["ins"], match["oid"]


def _codes(registry_object: RegistryObject, scheme: str) -> tuple[iti41.Classified, ...]:
    return registry_object.classifications.get(scheme, ())


def _check_entry(entry: RegistryObject) -> None:
    if entry.attributes.get("mimeType") != "text/xml":
        raise Rejected(METADATA_ERROR, "DocumentEntry mimeType must be text/xml (a CDA)")
    for name in REQUIRED_SLOTS:
        if not entry.slot(name):
            raise Rejected(METADATA_ERROR, f"DocumentEntry.{name} is missing")
    if not any(entry.slots.get("sourcePatientInfo", ())):
        raise Rejected(METADATA_ERROR, "DocumentEntry.sourcePatientInfo is missing")
    if not entry.name:
        raise Rejected(METADATA_ERROR, "DocumentEntry.title is missing")
    _check_author(entry, Scheme.DE_AUTHOR, "DocumentEntry")
    for scheme, (label, value_set) in CODED.items():
        found = _codes(entry, scheme)
        if len(found) != 1:
            raise Rejected(METADATA_ERROR, f"DocumentEntry.{label}: exactly one expected")
        _in(found[0], value_set, f"DocumentEntry.{label}")
    confidentiality = _codes(entry, Scheme.DE_CONFIDENTIALITY)
    if not confidentiality:
        raise Rejected(METADATA_ERROR, "DocumentEntry.confidentialityCode is missing")
    for coded in confidentiality:
        _in(coded, CONFIDENTIALITY_CODES, "DocumentEntry.confidentialityCode")


def _check_submission_set(submission_set: RegistryObject) -> None:
    if not submission_set.slot("submissionTime"):
        raise Rejected(METADATA_ERROR, "SubmissionSet.submissionTime is missing")
    _check_author(submission_set, Scheme.SS_AUTHOR, "SubmissionSet")
    _identifier(submission_set, Scheme.SS_UNIQUE_ID, "SubmissionSet.uniqueId")
    _identifier(submission_set, Scheme.SS_SOURCE_ID, "SubmissionSet.sourceId")
    content_type = _codes(submission_set, Scheme.SS_CONTENT_TYPE)
    if len(content_type) != 1 or (content_type[0].node, content_type[0].scheme) not in (
        CONTENT_TYPES
    ):
        raise Rejected(METADATA_ERROR, "SubmissionSet.contentTypeCode is not one of JDV_J59")


def _check_author(registry_object: RegistryObject, scheme: str, label: str) -> None:
    authors = _codes(registry_object, scheme)
    if not any(any(a.slots.get("authorPerson", ())) for a in authors):
        raise Rejected(METADATA_ERROR, f"{label}.author (authorPerson) is missing")
    if not any(any(a.slots.get("authorInstitution", ())) for a in authors):
        raise Rejected(METADATA_ERROR, f"{label}.author (authorInstitution) is missing")


def _in(coded: iti41.Classified, value_set: ValueSet, label: str) -> None:
    if value_set.find(coded.node, coded.scheme or "") is None:
        raise Rejected(METADATA_ERROR, f"{label} {coded.node} is not in {value_set.name}")


def _check_cda(content: bytes, unique_id: str, ins: str, oid: str) -> None:
    try:
        root = etree.fromstring(content, safe_parser())
    except etree.XMLSyntaxError:
        raise Rejected(METADATA_ERROR, "the document is not well-formed XML") from None
    if root.tag != f"{{{HL7V3}}}ClinicalDocument":
        raise Rejected(METADATA_ERROR, "the document is not an HL7 CDA ClinicalDocument")
    if cda_id_of(root) != unique_id:
        raise Rejected(METADATA_ERROR, "ClinicalDocument/id differs from the uniqueId")
    targets = xpath_strings(
        root, "v3:recordTarget/v3:patientRole/v3:id[@root=$oid]/@extension", oid=oid
    )
    if ins not in targets:
        raise Rejected("XDSPatientIdDoesNotMatch", "recordTarget does not carry the patientId")
