"""What the DMP sandbox requires of the XDS metadata of an ITI-41 submission (pure).

Sources: IHE ITI TF-3 §4.2.3.2 (DocumentEntry), §4.2.3.3 (SubmissionSet), §4.2.2
(associations), Table 4.2.4.1-2 (error codes); the DMP's transmission guide (ANS CI-SIS,
STANDARDS.md §4) for what is required and the value sets (:mod:`sandboxes.dmp_valuesets`).
The signature object of a signed submission set (IHE DSG) is not a clinical entry: it is
told apart by its classCode (:data:`SIGNATURE_CLASS`) and checked by
:mod:`sandboxes.dmp_signature`. Every failure is :class:`Rejected` with an XDS errorCode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from domain.xds.ebrim import HAS_MEMBER, STABLE_DOCUMENT, SUBMISSION_SET_NODE, Scheme
from sandboxes.dmp_ebrim import Objects, RimObject
from sandboxes.dmp_refusals import METADATA_ERROR, PATIENT_MISMATCH, UNKNOWN_PATIENT, Rejected
from sandboxes.dmp_valuesets import ValueSets
from sandboxes.dmp_vihf import patient_of

SIGNATURE_CLASS: Final = "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1"
EVENT_CODES: Final = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
#: DocumentEntry classifications: scheme -> (label, value set, exactly one)
CODED: Final[Mapping[str, tuple[str, str, bool]]] = {
    Scheme.DE_CLASS: ("classCode", "J57", True),
    Scheme.DE_TYPE: ("typeCode", "J07", True),
    Scheme.DE_FORMAT: ("formatCode", "J60", True),
    Scheme.DE_FACILITY: ("healthcareFacilityTypeCode", "J02", True),
    Scheme.DE_PRACTICE: ("practiceSettingCode", "J04", True),
    Scheme.DE_CONFIDENTIALITY: ("confidentialityCode", "J08", False),
}
ENTRY_SCHEMES: Final = frozenset({*CODED, Scheme.DE_AUTHOR, EVENT_CODES})
SET_SCHEMES: Final = frozenset({Scheme.SS_AUTHOR, Scheme.SS_CONTENT_TYPE})
ENTRY_IDS: Final = frozenset({Scheme.DE_PATIENT_ID, Scheme.DE_UNIQUE_ID})
SET_IDS: Final = frozenset({Scheme.SS_PATIENT_ID, Scheme.SS_UNIQUE_ID, Scheme.SS_SOURCE_ID})
ENTRY_SLOTS: Final = (
    "creationTime",
    "hash",
    "size",
    "languageCode",
    "sourcePatientId",
    "sourcePatientInfo",
)


def members(objects: Objects) -> tuple[RimObject, RimObject, RimObject | None]:
    """(DocumentEntry, SubmissionSet, signature entry or None) of a submission."""
    sets = [p for p in objects.packages if objects.classified_as(p.id, SUBMISSION_SET_NODE)]
    if len(sets) != 1:
        raise Rejected(METADATA_ERROR, "exactly one RegistryPackage classified as SubmissionSet")
    signatures = [e for e in objects.extrinsic if _class_node(e) == SIGNATURE_CLASS]
    entries = [e for e in objects.extrinsic if _class_node(e) != SIGNATURE_CLASS]
    if len(entries) != 1 or len(signatures) > 1:
        raise Rejected(METADATA_ERROR, "one DocumentEntry (and one signature at most) expected")
    submission_set, entry = sets[0], entries[0]
    if not any(
        a.type == HAS_MEMBER and a.source == submission_set.id and a.target == entry.id
        for a in objects.associations
    ):
        raise Rejected(METADATA_ERROR, "no HasMember association SubmissionSet -> DocumentEntry")
    return entry, submission_set, signatures[0] if signatures else None


def _class_node(entry: RimObject) -> str:
    found = entry.coded(Scheme.DE_CLASS)
    return found[0].node if found else ""


def patient(entry: RimObject, submission_set: RimObject, resource_id: str) -> str:
    """The patientId (an INS CX), the same in the entry, the set and the VIHF."""
    patient_id = entry.identifier(Scheme.DE_PATIENT_ID)
    if not patient_id:
        raise Rejected(METADATA_ERROR, "DocumentEntry.patientId is missing")
    if patient_of(patient_id) is None:
        raise Rejected(UNKNOWN_PATIENT, "patientId must be an INS: <INS>^^^&<INS OID>&ISO^NH")
    if submission_set.identifier(Scheme.SS_PATIENT_ID) != patient_id:
        raise Rejected(PATIENT_MISMATCH, "SubmissionSet and DocumentEntry patientId differ")
    if resource_id != patient_id:
        raise Rejected(PATIENT_MISMATCH, "the VIHF resource-id is not the patientId")
    return patient_id


def check_entry(entry: RimObject, value_sets: ValueSets) -> None:
    """The DocumentEntry's attributes, slots, classifications and identifiers."""
    if entry.attributes.get("objectType") != STABLE_DOCUMENT:
        raise Rejected(METADATA_ERROR, "DocumentEntry objectType is not a stable document")
    if entry.attributes.get("mimeType") != "text/xml":
        raise Rejected(METADATA_ERROR, "DocumentEntry mimeType must be text/xml (a CDA)")
    for name in ENTRY_SLOTS:
        if not any(entry.slots.get(name, ())):
            raise Rejected(METADATA_ERROR, f"DocumentEntry.{name} is missing")
    if not entry.name:
        raise Rejected(METADATA_ERROR, "DocumentEntry.title is missing")
    _known(entry, ENTRY_SCHEMES, ENTRY_IDS, "DocumentEntry")
    _author(entry, Scheme.DE_AUTHOR, "DocumentEntry")
    for scheme, (label, value_set, single) in CODED.items():
        found = entry.coded(scheme)
        if not found or (single and len(found) != 1):
            raise Rejected(
                METADATA_ERROR, f"DocumentEntry.{label}: {'one' if single else 'a'} code"
            )
        for coded in found:
            if not value_sets.holds(value_set, coded.node, coded.coding_scheme):
                raise Rejected(
                    METADATA_ERROR,
                    f"DocumentEntry.{label} {coded.node} is not in JDV_{value_set}",
                )
    if not entry.identifier(Scheme.DE_UNIQUE_ID):
        raise Rejected(METADATA_ERROR, "DocumentEntry.uniqueId is missing")


def check_submission_set(submission_set: RimObject, value_sets: ValueSets) -> None:
    """The SubmissionSet's slots, classifications and identifiers."""
    if not submission_set.slot("submissionTime"):
        raise Rejected(METADATA_ERROR, "SubmissionSet.submissionTime is missing")
    for scheme, label in ((Scheme.SS_UNIQUE_ID, "uniqueId"), (Scheme.SS_SOURCE_ID, "sourceId")):
        if not submission_set.identifier(scheme):
            raise Rejected(METADATA_ERROR, f"SubmissionSet.{label} is missing")
    _known(submission_set, SET_SCHEMES, SET_IDS, "SubmissionSet")
    _author(submission_set, Scheme.SS_AUTHOR, "SubmissionSet")
    content = submission_set.coded(Scheme.SS_CONTENT_TYPE)
    if len(content) != 1 or not value_sets.holds("J59", content[0].node, content[0].coding_scheme):
        raise Rejected(METADATA_ERROR, "SubmissionSet.contentTypeCode is not one of JDV_J59")


def _known(
    registry_object: RimObject, schemes: frozenset[str], ids: frozenset[str], label: str
) -> None:
    """Every classification and identifier is one XDS defines, and is about this object."""
    for classification in registry_object.classifications:
        if classification.scheme and classification.scheme not in schemes:
            raise Rejected(METADATA_ERROR, f"{label}: unknown classificationScheme")
        if classification.scheme and classification.classified != registry_object.id:
            raise Rejected(METADATA_ERROR, f"{label}: a Classification classifies another object")
        if (
            classification.scheme
            and classification.scheme != _author_scheme(label)
            and (not classification.coding_scheme)
        ):
            raise Rejected(METADATA_ERROR, f"{label}: a code has no codingScheme slot")
    for scheme, _value, target in registry_object.identifiers:
        if scheme not in ids:
            raise Rejected(METADATA_ERROR, f"{label}: unknown identificationScheme")
        if target != registry_object.id:
            raise Rejected(METADATA_ERROR, f"{label}: an ExternalIdentifier names another object")


def _author_scheme(label: str) -> str:
    return Scheme.DE_AUTHOR if label == "DocumentEntry" else Scheme.SS_AUTHOR


def _author(registry_object: RimObject, scheme: str, label: str) -> None:
    authors = registry_object.coded(scheme)
    if not any(any(a.slots.get("authorPerson", ())) for a in authors):
        raise Rejected(METADATA_ERROR, f"{label}.author (authorPerson) is missing")
    if not any(any(a.slots.get("authorInstitution", ())) for a in authors):
        raise Rejected(METADATA_ERROR, f"{label}.author (authorInstitution) is missing")
