"""IHE ITI-18 Registry Stored Query, GetDocuments by uniqueId (pure).

The DMP sink asks it before it sends a document again after a crash or a
timeout (the delivery ledger's "reconcile" step): does the registry already
hold this uniqueId? SOAP 1.2 with WS-Addressing, an ``AdhocQueryRequest``
with the GetDocuments stored query and ``returnType="ObjectRef"``; the
answer is an ``AdhocQueryResponse`` whose ``RegistryObjectList`` has one
``ObjectRef`` per document found. The VIHF travels like for ITI-41.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from lxml import etree

from domain.document_id import safe_parser
from domain.xds.ebrim import QUERY, RIM, RS, SOAP, WSA

ACTION: Final = "urn:ihe:iti:2007:RegistryStoredQuery"
RESPONSE_ACTION: Final = "urn:ihe:iti:2007:RegistryStoredQueryResponse"
GET_DOCUMENTS: Final = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
SUCCESS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
NS: Final = {"s": SOAP, "a": WSA, "query": QUERY, "rim": RIM, "rs": RS}
CONTENT_TYPE: Final = 'application/soap+xml; charset=utf-8; action="' + ACTION + '"'


class Iti18Error(ValueError):
    """A query or an answer that is not an ITI-18 GetDocuments exchange."""


@dataclass(frozen=True)
class Query:
    message_id: str
    unique_ids: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    status: str  # Success | Failure
    entry_uuids: tuple[str, ...]  # the ObjectRefs found
    errors: tuple[str, ...] = ()  # errorCode of each RegistryError


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
) -> bytes:
    """The SOAP request asking which of ``unique_ids`` the registry holds."""
    if not unique_ids:
        raise Iti18Error("GetDocuments needs at least one uniqueId")
    root = envelope(ACTION, message_id or f"urn:uuid:{uuid.uuid4()}", to)
    if security is not None:
        root[0].append(security)
    request = etree.SubElement(
        root[1], _q(QUERY, "AdhocQueryRequest"), nsmap={"query": QUERY, "rim": RIM}
    )
    etree.SubElement(request, _q(QUERY, "ResponseOption"), returnType="ObjectRef")
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


def read_query(body: bytes) -> Query:
    """What a registry reads from a GetDocuments request."""
    root = _parse(body)
    action = root.findtext("s:Header/a:Action", namespaces=NS)
    if (action or "").strip() != ACTION:
        raise Iti18Error(f"WS-Addressing Action must be {ACTION}")
    query = root.find("s:Body/query:AdhocQueryRequest/rim:AdhocQuery", NS)
    if query is None or query.get("id") != GET_DOCUMENTS:
        raise Iti18Error("only the GetDocuments stored query is supported")
    values = query.findall(
        "rim:Slot[@name='$XDSDocumentEntryUniqueId']/rim:ValueList/rim:Value", NS
    )
    ids: list[str] = []
    for value in values:
        text = (value.text or "").strip().removeprefix("(").removesuffix(")")
        ids += [_unquote(part.strip()) for part in text.split(",") if part.strip()]
    if not ids:
        raise Iti18Error("$XDSDocumentEntryUniqueId is missing")
    message_id = (root.findtext("s:Header/a:MessageID", namespaces=NS) or "").strip()
    return Query(message_id, tuple(ids))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1]
    return value.replace("''", "'")


def query_response(entry_uuids: tuple[str, ...], *, relates_to: str = "") -> bytes:
    """The registry's answer: one ObjectRef per document found."""
    root = envelope(RESPONSE_ACTION, f"urn:uuid:{uuid.uuid4()}", "", relates_to)
    response = etree.SubElement(
        root[1], _q(QUERY, "AdhocQueryResponse"), status=SUCCESS, nsmap={"query": QUERY}
    )
    found = etree.SubElement(response, _q(RIM, "RegistryObjectList"), nsmap={"rim": RIM})
    for entry in entry_uuids:
        etree.SubElement(found, _q(RIM, "ObjectRef"), id=entry)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


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
    errors = tuple(
        str(e.get("errorCode"))
        for e in response.findall("rs:RegistryErrorList/rs:RegistryError", NS)
    )
    return Answer(status, refs, errors)
