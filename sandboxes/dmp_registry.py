"""The DMP sandbox's registry: what it holds, the entryUUIDs it issues, what it finds.

As the DMP does (ANS PDSM4DMP: "entryUUID is assigned by the DMP and changes per
version"), the registry gives each document version it files an entryUUID of its own,
``urn:uuid:<uuid4>``, whatever id the submitter proposed (ITI TF-3 §4.2.3.1.7 lets a
registry replace symbolic ids). An RPLC association (ITI TF-3 §4.2.2.2) or an ITI-62
removal must name an entryUUID it issued, else ``UnresolvedReferenceException``; the
uniqueId of a held document comes back ``XDSDuplicateUniqueIdInRegistry`` (a warning when
the hash is the same, ITI TF-3 §4.2.4; ``XDSNonIdenticalHash`` otherwise).

Every version stays (IHE XDS Metadata Update): a version an update (ITI-57,
:mod:`sandboxes.dmp_update`) replaced is kept ``Deprecated`` under its own entryUUID, and
GetDocuments by uniqueId answers all of them — ObjectRefs, or (LeafClass)
ExtrinsicObjects with their status, ``lid`` (the first version's entryUUID),
``rim:VersionInfo versionName``, ``repositoryUniqueId`` and confidentiality codes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Final

from lxml import etree

from domain.document_id import safe_parser
from domain.xds.ebrim import RIM, STABLE_DOCUMENT, Scheme
from sandboxes.dmp_answers import Error
from sandboxes.dmp_checks import Checked, Filed
from sandboxes.dmp_query import FIND_DOCUMENTS, GET_DOCUMENTS, Query
from sandboxes.dmp_refusals import (
    DUPLICATE_UNIQUE_ID,
    METADATA_ERROR,
    NON_IDENTICAL_HASH,
    PATIENT_MISMATCH,
    STORED_QUERY_PARAM,
    UNKNOWN_STORED_QUERY,
    UNRESOLVED,
    Rejected,
)

STATUS: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:"
#: the repositoryUniqueId of the sandbox's repository (the ITI-18 LeafClass answers it)
REPOSITORY_UNIQUE_ID: Final = "1.2.250.1.213.1.1.9.1"
_CONFIDENTIALITY: Final = (
    f".//{{{RIM}}}Classification[@classificationScheme='{Scheme.DE_CONFIDENTIALITY}']"
)


@dataclass(frozen=True)
class VersionInfo:
    """What the registry knows of one version beyond :class:`Filed`."""

    lid: str  # the entryUUID of the first version
    number: int  # versionName: 1, 2, ...
    confidentiality: tuple[str, ...]  # the codes of its confidentialityCode list


@dataclass(frozen=True)
class Listed(Filed):
    """A version as a query finds it: its :class:`Filed` and its :class:`VersionInfo`."""

    lid: str = ""
    version: int = 1
    confidentiality: tuple[str, ...] = ()


def confidentiality_of(metadata: bytes) -> tuple[str, ...]:
    """The confidentiality codes of the DocumentEntry in an ITI-41 request's metadata."""
    root = etree.fromstring(metadata, safe_parser())
    entry = root.find(f".//{{{RIM}}}ExtrinsicObject[@objectType='{STABLE_DOCUMENT}']")
    if entry is None:
        return ()
    path = f"{{{RIM}}}Classification[@classificationScheme='{Scheme.DE_CONFIDENTIALITY}']"
    return tuple(str(c.get("nodeRepresentation")) for c in entry.iterfind(path))


class Registry:
    """The documents the sandbox holds, in memory and optionally on disk."""

    def __init__(self, store_dir: Path | None = None) -> None:
        self.store_dir = store_dir
        self.filed: dict[str, Filed] = {}  # by uniqueId
        self.content: dict[str, bytes] = {}
        self.by_entry: dict[str, str] = {}  # entryUUID issued -> uniqueId
        self.versions: dict[str, VersionInfo] = {}  # entryUUID -> lid, number, codes
        self.deprecated: dict[str, Filed] = {}  # entryUUID -> a version an update replaced
        #: requests that passed every check, by uniqueId: 1 when a document was sent once
        self.submissions: Counter[str] = Counter()
        #: idempotent re-sends (same uniqueId, same hash), answered without storing again
        self.resent: Counter[str] = Counter()
        self.rejections = 0
        #: ITI-18 stored queries answered
        self.queries = 0
        #: ITI-62 deletions applied, by uniqueId (a deleted document is not found any more)
        self.deletions: Counter[str] = Counter()
        if store_dir:
            store_dir.mkdir(parents=True, exist_ok=True)

    def register(self, checked: Checked) -> list[Error]:
        """File a checked document under a new entryUUID; the warnings of the answer."""
        filed = checked.filed
        held = self.filed.get(filed.unique_id)
        if held is not None:
            if held.sha1 != filed.sha1:
                raise Rejected(NON_IDENTICAL_HASH, "this uniqueId is held with another hash")
            self.submissions[filed.unique_id] += 1
            self.resent[filed.unique_id] += 1
            return [Error(DUPLICATE_UNIQUE_ID, "this document is already held", "Warning")]
        parent = self._replaced(filed) if filed.replaces is not None else None
        filed = replace(
            filed,
            entry_uuid=f"urn:uuid:{uuid.uuid4()}",
            replaces=parent.unique_id if parent else None,
        )
        if parent is not None:
            self.filed[parent.unique_id] = replace(parent, status="Deprecated")
        self.filed[filed.unique_id] = filed
        self.content[filed.unique_id] = checked.content
        self.by_entry[filed.entry_uuid] = filed.unique_id
        codes = confidentiality_of(checked.metadata)
        self.versions[filed.entry_uuid] = VersionInfo(filed.entry_uuid, 1, codes)
        self.submissions[filed.unique_id] += 1
        self._store(filed, checked)
        return []

    def _replaced(self, filed: Filed) -> Filed:
        unique_id = self.by_entry.get(filed.replaces or "")
        parent = self.filed.get(unique_id) if unique_id else None
        if parent is None or parent.status == "Deleted":
            raise Rejected(UNRESOLVED, "the RPLC target is not an entryUUID this DMP issued")
        if parent.patient_id != filed.patient_id:
            raise Rejected(PATIENT_MISMATCH, "the replaced entry is another patient's")
        if parent.status != "Approved" or parent.entry_uuid != filed.replaces:
            raise Rejected(METADATA_ERROR, "the replaced entry is already deprecated")
        return parent

    def _store(self, filed: Filed, checked: Checked) -> None:
        if not self.store_dir:
            return
        name = hashlib.sha256(filed.unique_id.encode()).hexdigest()[:32]
        (self.store_dir / f"{name}.xml").write_bytes(checked.content)
        (self.store_dir / f"{name}.metadata.xml").write_bytes(checked.metadata)
        (self.store_dir / f"{name}.json").write_text(json.dumps(asdict(filed)))

    def find(self, query: Query) -> list[Filed]:
        """The entries a stored query finds, every version; :class:`Rejected` for a wrong
        query."""
        self.queries += 1
        held = [*self.filed.values(), *self.deprecated.values()]
        listed = [self._listed(f) for f in held if f.status != "Deleted"]
        if query.query_id == GET_DOCUMENTS:
            unique_ids = query.values("$XDSDocumentEntryUniqueId")
            entry_uuids = query.values("$XDSDocumentEntryEntryUUID")
            if bool(unique_ids) == bool(entry_uuids):
                raise Rejected(STORED_QUERY_PARAM, "GetDocuments: uniqueIds or entryUUIDs")
            return [f for f in listed if f.unique_id in unique_ids or f.entry_uuid in entry_uuids]
        if query.query_id == FIND_DOCUMENTS:
            patients = query.values("$XDSDocumentEntryPatientId")
            statuses = {s.removeprefix(STATUS) for s in query.values("$XDSDocumentEntryStatus")}
            if len(patients) != 1 or not statuses:
                raise Rejected(STORED_QUERY_PARAM, "FindDocuments: one patientId and a status")
            return [f for f in listed if f.patient_id == patients[0] and f.status in statuses]
        raise Rejected(UNKNOWN_STORED_QUERY, "only GetDocuments and FindDocuments are served")

    def _listed(self, filed: Filed) -> Listed:
        info = self.versions.get(filed.entry_uuid, VersionInfo(filed.entry_uuid, 1, ()))
        return Listed(**asdict(filed), lid=info.lid, version=info.number,
                      confidentiality=info.confidentiality)  # fmt: skip

    def delete(self, entry_uuids: Sequence[str], patient_id: str) -> list[Error]:
        """ITI-62: remove entries it issued, all of the VIHF's patient; the errors if not."""
        targets = [self.by_entry.get(entry) for entry in entry_uuids]
        held = [self.filed[uid] for uid in targets if uid and uid in self.filed]
        if len(held) != len(targets) or any(
            f.status == "Deleted" or f.entry_uuid not in entry_uuids for f in held
        ):
            return [Error(UNRESOLVED, "no such document to delete")]
        if any(f.patient_id != patient_id for f in held):
            return [Error(PATIENT_MISMATCH, "the VIHF is for another patient")]
        for filed in held:
            self.filed[filed.unique_id] = replace(filed, status="Deleted")
            self.deletions[filed.unique_id] += 1
            gone = [e for e, f in self.deprecated.items() if f.unique_id == filed.unique_id]
            for entry_uuid in gone:  # its older versions go with it
                self.deprecated[entry_uuid] = replace(self.deprecated[entry_uuid], status="Deleted")
        return []


def found_elements(found: Sequence[Filed], return_type: str) -> list[etree._Element]:
    """ObjectRefs, or (LeafClass) ExtrinsicObjects with their ids, status and codes."""
    if return_type == "ObjectRef":
        return [etree.Element(f"{{{RIM}}}ObjectRef", id=f.entry_uuid) for f in found]
    return [_extrinsic(f) for f in found]


def _extrinsic(filed: Filed) -> etree._Element:
    """A LeafClass ExtrinsicObject: ids, status, slots, VersionInfo, codes, identifiers."""
    listed = filed if isinstance(filed, Listed) else Listed(**asdict(filed), lid=filed.entry_uuid)
    entry = etree.Element(
        f"{{{RIM}}}ExtrinsicObject",
        id=listed.entry_uuid,
        lid=listed.lid,
        objectType=STABLE_DOCUMENT,
        mimeType="text/xml",
        status=STATUS + listed.status,
    )
    for name, value in (
        ("hash", listed.sha1),
        ("size", str(listed.size_bytes)),
        ("repositoryUniqueId", REPOSITORY_UNIQUE_ID),
    ):
        slot = etree.SubElement(entry, f"{{{RIM}}}Slot", name=name)
        etree.SubElement(
            etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value"
        ).text = value
    etree.SubElement(entry, f"{{{RIM}}}VersionInfo", versionName=str(listed.version))
    _classified(entry, listed)
    return entry


def _classified(entry: etree._Element, listed: Listed) -> None:
    """The confidentiality codes and the identifiers of a LeafClass ExtrinsicObject."""
    for code in listed.confidentiality:
        etree.SubElement(
            entry,
            f"{{{RIM}}}Classification",
            id=f"urn:uuid:{uuid.uuid4()}",
            classificationScheme=Scheme.DE_CONFIDENTIALITY,
            classifiedObject=listed.entry_uuid,
            nodeRepresentation=code,
        )
    for scheme, value in (
        (Scheme.DE_PATIENT_ID, listed.patient_id),
        (Scheme.DE_UNIQUE_ID, listed.unique_id),
    ):
        etree.SubElement(
            entry,
            f"{{{RIM}}}ExternalIdentifier",
            id=f"urn:uuid:{uuid.uuid4()}",
            registryObject=listed.entry_uuid,
            identificationScheme=scheme,
            value=value,
        )
