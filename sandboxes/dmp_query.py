"""ITI-18 stored queries and ITI-62 removals, read by the DMP sandbox (pure).

* ITI-18 (IHE ITI TF-2a §3.18.4.1): ``query:AdhocQueryRequest`` valid against the ebRS 3.0
  ``query.xsd``; ``ResponseOption/@returnType`` ``ObjectRef`` or ``LeafClass``; the stored
  query's id (GetDocuments, FindDocuments) and its ``$`` parameters as slots whose values
  are single values or ``('a','b')`` lists (§3.18.4.1.2.3.5: strings quoted, ``''`` escapes).
* ITI-62 (IHE ITI TF-2b §3.62.4.1): ``lcm:RemoveObjectsRequest`` valid against ``lcm.xsd``,
  naming DocumentEntries by entryUUID in ``rim:ObjectRefList``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sandboxes.dmp_envelope import Envelope
from sandboxes.dmp_refusals import Faulted
from sandboxes.dmp_xml import SchemaInvalid, elements, first, strings, validate

ITI18: Final = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI62: Final = "urn:ihe:iti:2010:DeleteDocumentSet"
GET_DOCUMENTS: Final = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
FIND_DOCUMENTS: Final = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
RETURN_TYPES: Final = frozenset({"ObjectRef", "LeafClass"})


@dataclass(frozen=True)
class Query:
    query_id: str
    return_type: str  # ObjectRef | LeafClass
    parameters: Mapping[str, tuple[str, ...]]  # "$XDSDocumentEntryUniqueId" -> values

    def values(self, name: str) -> tuple[str, ...]:
        return self.parameters.get(name, ())


def read_query(envelope: Envelope, schema_dir: Path) -> Query:
    """The stored query of an ITI-18 request; :class:`Faulted` when it is not one."""
    if not elements(envelope.payload, "self::query:AdhocQueryRequest"):
        raise Faulted("rim:InvalidRequestException", "the Body is not a query:AdhocQueryRequest")
    try:
        validate(schema_dir, "query", envelope.payload)
    except SchemaInvalid as exc:
        raise Faulted("rim:InvalidRequestException", str(exc)) from None
    return_type = first(envelope.payload, "query:ResponseOption/@returnType") or "RegistryObject"
    if return_type not in RETURN_TYPES:
        raise Faulted("rim:InvalidRequestException", "returnType must be ObjectRef or LeafClass")
    parameters: dict[str, tuple[str, ...]] = {}
    for slot in elements(envelope.payload, "rim:AdhocQuery/rim:Slot"):
        name = slot.get("name", "")
        found = tuple(v for raw in strings(slot, "rim:ValueList/rim:Value") for v in values(raw))
        parameters[name] = parameters.get(name, ()) + found
    query_id = first(envelope.payload, "rim:AdhocQuery/@id")
    return Query(query_id, return_type, parameters)


def values(raw: str) -> tuple[str, ...]:
    """The values of one ``rim:Value``: ``'a'``, ``('a','b')``, ``42`` or ``(1,2)``."""
    text = raw.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    found: list[str] = []
    current: list[str] = []
    quoted = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == "'" and quoted and text[index + 1 : index + 2] == "'":
            current.append("'")
            index += 1
        elif char == "'":
            quoted = not quoted
        elif char == "," and not quoted:
            found.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        index += 1
    found.append("".join(current).strip())
    return tuple(v for v in found if v)


def read_removal(envelope: Envelope, schema_dir: Path) -> tuple[str, ...]:
    """The entryUUIDs an ITI-62 request removes; :class:`Faulted` when it is not one."""
    if not elements(envelope.payload, "self::lcm:RemoveObjectsRequest"):
        raise Faulted("rim:InvalidRequestException", "the Body is not an lcm:RemoveObjectsRequest")
    try:
        validate(schema_dir, "lcm", envelope.payload)
    except SchemaInvalid as exc:
        raise Faulted("rim:InvalidRequestException", str(exc)) from None
    removed = tuple(strings(envelope.payload, "rim:ObjectRefList/rim:ObjectRef/@id"))
    if not removed:
        raise Faulted("rim:InvalidRequestException", "RemoveObjectsRequest names no ObjectRef")
    return removed
