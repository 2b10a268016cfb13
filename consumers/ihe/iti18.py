"""IHE ITI-18 Registry Stored Query, GetDocuments by uniqueId (pure).

The DMP sink asks it before it sends a document again after a crash or a
timeout (the delivery ledger's "reconcile" step), before a replacement, a deletion or a
visibility update: which entry does the registry hold for this uniqueId *now*? SOAP 1.2
with WS-Addressing, an ``AdhocQueryRequest`` with the GetDocuments stored query and
``returnType="LeafClass"``: GetDocuments by uniqueId answers every version of the
document (Approved and Deprecated, IHE XDS Metadata Update), and only the full
``ExtrinsicObject`` carries its ``status``, ``lid``, version (``rim:VersionInfo
versionName``), ``repositoryUniqueId`` and confidentiality codes; one without its status
or its version is an unreadable answer (the client: ``DmpUnavailable`` ``BadAnswer``).
An answer of ``ObjectRef`` elements (no status) is read as well. The VIHF travels like for ITI-41.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from lxml import etree

from domain.document_id import safe_parser
from domain.xds.ebrim import QUERY, RIM, RS, SOAP, WSA, Scheme

ACTION: Final = "urn:ihe:iti:2007:RegistryStoredQuery"
RESPONSE_ACTION: Final = "urn:ihe:iti:2007:RegistryStoredQueryResponse"
GET_DOCUMENTS: Final = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
SUCCESS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
APPROVED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
NS: Final = {"s": SOAP, "a": WSA, "query": QUERY, "rim": RIM, "rs": RS}
CONTENT_TYPE: Final = 'application/soap+xml; charset=utf-8; action="' + ACTION + '"'


class Iti18Error(ValueError):
    """A query or an answer that is not an ITI-18 GetDocuments exchange."""


@dataclass(frozen=True)
class Found:
    """One version of a DocumentEntry, as a LeafClass answer describes it."""

    entry_uuid: str
    lid: str  # the logical id of the series: the first version's entryUUID
    version: str  # rim:VersionInfo/@versionName ("1" for the first version)
    status: str  # the StatusType's last part: Approved | Deprecated | ...
    repository_unique_id: str | None
    confidentiality: tuple[str, ...]  # the confidentialityCode codes

    @property
    def approved(self) -> bool:
        return self.status == "Approved"


@dataclass(frozen=True)
class Answer:
    status: str  # Success | Failure
    entry_uuids: tuple[str, ...]  # the ObjectRefs found, or the Approved versions (LeafClass)
    errors: tuple[str, ...] = ()  # errorCode of each RegistryError
    versions: tuple[Found, ...] = ()  # every version a LeafClass answer lists

    @property
    def current(self) -> Found | None:
        """The Approved version (None: none, or an ObjectRef answer)."""
        return next((f for f in self.versions if f.approved), None)


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def envelope(action: str, message_id: str, to: str, relates_to: str = "") -> etree._Element:
    """A SOAP 1.2 envelope with its WS-Addressing headers and an empty Body."""
    root = etree.Element(_q(SOAP, "Envelope"), nsmap={"s": SOAP, "a": WSA})
    header = etree.SubElement(root, _q(SOAP, "Header"))
    etree.SubElement(header, _q(WSA, "Action"), {_q(SOAP, "mustUnderstand"): "1"}).text = action
    etree.SubElement(header, _q(WSA, "MessageID")).text = message_id
    if relates_to:
        etree.SubElement(header, _q(WSA, "RelatesTo")).text = relates_to
    if to:
        etree.SubElement(header, _q(WSA, "To")).text = to
    etree.SubElement(root, _q(SOAP, "Body"))
    return root


def get_documents(
    unique_ids: tuple[str, ...],
    *,
    to: str,
    security: etree._Element | None = None,
    message_id: str | None = None,
    return_type: str = "LeafClass",
) -> bytes:
    """The SOAP request asking which of ``unique_ids`` the registry holds (every version)."""
    if not unique_ids:
        raise Iti18Error("GetDocuments needs at least one uniqueId")
    root = envelope(ACTION, message_id or f"urn:uuid:{uuid.uuid4()}", to)
    if security is not None:
        root[0].append(security)
    request = etree.SubElement(
        root[1], _q(QUERY, "AdhocQueryRequest"), nsmap={"query": QUERY, "rim": RIM}
    )
    etree.SubElement(request, _q(QUERY, "ResponseOption"), returnType=return_type)
    query = etree.SubElement(request, _q(RIM, "AdhocQuery"), id=GET_DOCUMENTS)
    slot = etree.SubElement(query, _q(RIM, "Slot"), name="$XDSDocumentEntryUniqueId")
    values = etree.SubElement(slot, _q(RIM, "ValueList"))
    quoted = ",".join("'" + u.replace("'", "''") + "'" for u in unique_ids)
    etree.SubElement(values, _q(RIM, "Value")).text = f"({quoted})"
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _parse(body: bytes) -> etree._Element:
    try:
        return etree.fromstring(body, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise Iti18Error(f"not XML: {exc}") from None


def read_answer(body: bytes) -> Answer:
    """What the sink reads back: the status, the documents found, the error codes."""
    root = _parse(body)
    response = root.find("s:Body/query:AdhocQueryResponse", NS)
    if response is None:
        raise Iti18Error("no AdhocQueryResponse in the answer")
    status = (response.get("status") or "").rsplit(":", 1)[-1]
    refs = tuple(
        str(ref.get("id")) for ref in response.findall("rim:RegistryObjectList/rim:ObjectRef", NS)
    )
    versions = tuple(
        _found(e) for e in response.findall("rim:RegistryObjectList/rim:ExtrinsicObject", NS)
    )
    errors = tuple(
        str(e.get("errorCode"))
        for e in response.findall("rs:RegistryErrorList/rs:RegistryError", NS)
    )
    approved = tuple(f.entry_uuid for f in versions if f.approved)
    return Answer(status, refs + approved, errors, versions)


def _found(entry: etree._Element) -> Found:
    """One ExtrinsicObject of a LeafClass answer; :class:`Iti18Error` without its id, its
    status or its version (``rim:VersionInfo versionName``): never guessed (a missing status
    read as Approved, a missing version as "1", would aim an update at a stale version)."""
    entry_uuid = entry.get("id")
    status = entry.get("status")
    version = entry.find("rim:VersionInfo", NS)
    name = version.get("versionName") if version is not None else None
    if not entry_uuid or not status or not name:
        raise Iti18Error("a LeafClass DocumentEntry without its id, status or versionName")
    repository = entry.findtext(
        "rim:Slot[@name='repositoryUniqueId']/rim:ValueList/rim:Value", namespaces=NS
    )
    codes = entry.iterfind(
        f"rim:Classification[@classificationScheme='{Scheme.DE_CONFIDENTIALITY}']", NS
    )
    return Found(
        entry_uuid=entry_uuid,
        lid=str(entry.get("lid") or entry_uuid),
        version=name,
        status=status.rsplit(":", 1)[-1],
        repository_unique_id=repository.strip() if repository else None,
        confidentiality=tuple(str(c.get("nodeRepresentation")) for c in codes),
    )
