"""IHE ITI-57 Update Document Set: a new version of a DocumentEntry's metadata (pure).

The DMP's TD3.3b (patient visibility, ../shared/STANDARDS.md §4) changes a filed
document's confidentialityCode list: XDS Metadata Update (IHE ITI supplement) sends
a *new version* of the DocumentEntry, the document itself unchanged. The request is a
``lcm:SubmitObjectsRequest`` in SOAP 1.2 (WS-Addressing action
:data:`ACTION`, the VIHF in ``wsse:Security`` as for ITI-41) holding:

* a SubmissionSet (RegistryPackage) of its own, with a new uniqueId;
* the DocumentEntry (ExtrinsicObject) with its full metadata, the new codes, its
  ``repositoryUniqueId`` (Metadata Update follows the ITI-42 Register rules, where it is
  required) and ``lid`` = the logical id of the document (the entryUUID of its first
  version); its own ``id`` is symbolic: the registry gives the new version a new
  entryUUID. The lid, the current version and the repositoryUniqueId come from the
  registry (ITI-18 LeafClass, :class:`consumers.ihe.iti18.Found`);
* the HasMember association SubmissionSet → DocumentEntry with the slots
  ``SubmissionSetStatus`` = ``Original`` and ``PreviousVersion`` = the version being
  replaced (the registry refuses a stale one and deprecates the previous version).

The ebRIM objects are those :func:`consumers.ihe.iti41.provide_and_register` writes for
a filing (one mapping of :class:`~domain.xds.metadata.DocumentEntry`), renamed with
fresh ids (a registry refuses ids it already holds) and without the document.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Final

from lxml import etree

from consumers.ihe import iti41
from consumers.ihe.iti41.soap import envelope
from domain.xds.codes import Coded
from domain.xds.ebrim import HAS_MEMBER, LCM, RIM, STABLE_DOCUMENT
from domain.xds.metadata import DocumentEntry

ACTION: Final = "urn:ihe:iti:2010:UpdateDocumentSet"
RESPONSE_ACTION: Final = "urn:ihe:iti:2010:UpdateDocumentSetResponse"
CONTENT_TYPE: Final = 'application/soap+xml; charset=utf-8; action="' + ACTION + '"'
#: symbolic ids of the new objects: the registry assigns their entryUUIDs
ENTRY_ID: Final = "DocumentEntry01"
SUBMISSION_SET_ID: Final = "SubmissionSet01"
#: attributes that name another object of the request
_REFERENCES: Final = ("classifiedObject", "registryObject", "sourceObject", "targetObject")
_KEPT: Final = frozenset({"ExtrinsicObject", "RegistryPackage", "Classification", "Association"})


class Iti57Error(ValueError):
    """An update that cannot be built; the message says what is missing."""


@dataclass(frozen=True)
class Update:
    """What changes: the new metadata of the document ``lid``, replacing ``previous_version``."""

    entry: DocumentEntry  # the full metadata of the new version
    lid: str  # logical id: urn:uuid of the document's first version (the registry's lid)
    previous_version: str  # versionName of the version replaced (rim:VersionInfo)
    repository_unique_id: str  # where the document is held (required as for ITI-42)


def with_confidentiality(entry: DocumentEntry, codes: tuple[Coded, ...]) -> DocumentEntry:
    """``entry`` with another confidentialityCode list (TD3.3b, TD3.3a)."""
    if not codes:
        raise Iti57Error("a DocumentEntry needs at least one confidentialityCode")
    return dataclasses.replace(entry, confidentiality=codes)


def without(entry: DocumentEntry, code: str) -> DocumentEntry:
    """``entry`` without the confidentiality code ``code`` (e.g. INVISIBLE_PATIENT)."""
    return with_confidentiality(entry, tuple(c for c in entry.confidentiality if c.code != code))


def submit_objects(update: Update, *, source_id: str, submission_time: str) -> etree._Element:
    """The ``lcm:SubmitObjectsRequest`` of ``update`` (see the module docstring)."""
    if not update.lid.startswith("urn:uuid:") or not update.previous_version.strip():
        raise Iti57Error("an update names the document's lid (urn:uuid:…) and its version")
    if not update.repository_unique_id.strip():
        raise Iti57Error("an update names the document's repositoryUniqueId (ask ITI-18 LeafClass)")
    seed = f"{update.lid}:{update.previous_version}:{update.entry.confidentiality}"
    submission_set = iti41.SubmissionSet(
        unique_id=f"2.25.{uuid.uuid5(iti41.RELAIS_UUIDS, f'update:{seed}').int}",
        source_id=source_id,
        submission_time=submission_time,
        content_type=iti41.content_type_of(None),
        author_person=update.entry.author_person,
        author_institution=update.entry.author_institution,
        patient_id=update.entry.patient_id,
    )
    filing = iti41.provide_and_register(update.entry, submission_set, document_cid="none")
    request = filing.find(f"{{{LCM}}}SubmitObjectsRequest")
    if request is None:  # pragma: no cover - provide_and_register always writes one
        raise Iti57Error("the ITI-41 builder wrote no SubmitObjectsRequest")
    objects = request[0]
    _keep_members(objects)
    _rename(objects)
    entry = objects.find(f"{{{RIM}}}ExtrinsicObject")
    member = objects.find(f"{{{RIM}}}Association[@associationType='{HAS_MEMBER}']")
    if entry is None or member is None:  # pragma: no cover - the ITI-41 builder writes both
        raise Iti57Error("the ITI-41 builder wrote no DocumentEntry or no HasMember")
    entry.set("lid", update.lid)
    _slot(entry, "repositoryUniqueId", update.repository_unique_id)
    _slot(member, "PreviousVersion", update.previous_version)
    standalone = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    standalone.append(objects)
    return standalone


def update_document_set(
    update: Update,
    *,
    source_id: str,
    submission_time: str,
    vihf: etree._Element,
    to: str,
    message_id: str | None = None,
) -> bytes:
    """The SOAP 1.2 ITI-57 request (WS-Addressing, the VIHF in ``wsse:Security``)."""
    body = submit_objects(update, source_id=source_id, submission_time=submission_time)
    headers = [("MessageID", message_id or f"urn:uuid:{uuid.uuid4()}"), ("To", to)]
    return envelope(body, action=ACTION, headers=headers, security=vihf)


def _keep_members(objects: etree._Element) -> None:
    """Only the entry, the submission set, its classification and HasMember stay."""
    for child in list(objects):
        name = etree.QName(child).localname
        other_object = name == "ExtrinsicObject" and child.get("objectType") != STABLE_DOCUMENT
        other_link = name == "Association" and child.get("associationType") != HAS_MEMBER
        if name not in _KEPT or other_object or other_link:
            objects.remove(child)


def _rename(objects: etree._Element) -> None:
    """Fresh ids for every object, the references following: entry and set symbolic."""
    entry = objects.find(f"{{{RIM}}}ExtrinsicObject")
    package = objects.find(f"{{{RIM}}}RegistryPackage")
    names: dict[str, str] = {}
    if entry is not None and package is not None:
        names = {str(entry.get("id")): ENTRY_ID, str(package.get("id")): SUBMISSION_SET_ID}
    for element in objects.iter(f"{{{RIM}}}*"):
        old = element.get("id")
        if old is not None:
            element.set("id", names.setdefault(old, f"urn:uuid:{uuid.uuid4()}"))
    for element in objects.iter(f"{{{RIM}}}*"):
        for attribute in _REFERENCES:
            if (target := element.get(attribute)) in names:
                element.set(attribute, names[str(target)])


def _slot(parent: etree._Element, name: str, value: str) -> None:
    """A slot after the element's other slots (ebRIM: slots come first)."""
    slot = etree.Element(f"{{{RIM}}}Slot", name=name)
    etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = value
    parent.insert(len(parent.findall(f"{{{RIM}}}Slot")), slot)
