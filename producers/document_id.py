"""Find a document's unique id: the CDA ``ClinicalDocument/id``, else the HL7 ids."""

from __future__ import annotations

import re
from typing import Final

from lxml import etree

from producers.hl7_message import EmbeddedDocument, Hl7Message

HL7V3 = "urn:hl7-org:v3"


def safe_parser() -> etree.XMLParser:
    """An XML parser that never fetches anything or expands external entities."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def xpath_strings(node: etree._Element, expression: str, **variables: str) -> list[str]:
    """Text results of an XPath over a CDA (``v3:`` is the HL7 v3 namespace)."""
    evaluate = etree.XPathElementEvaluator(node, namespaces={"v3": HL7V3})
    found = evaluate(expression, **variables)
    return [str(item) for item in found] if isinstance(found, list) else []


def cda_id(content: bytes) -> str | None:
    """``root`` or ``root.extension`` of a CDA's ``ClinicalDocument/id``; None if not a CDA."""
    try:
        root = etree.fromstring(content, safe_parser())
    except etree.XMLSyntaxError:
        return None
    return cda_id_of(root)


def cda_id_of(root: etree._Element) -> str | None:
    """:func:`cda_id` of an already parsed document."""
    if root.tag != f"{{{HL7V3}}}ClinicalDocument":
        return None
    element = root.find(f"{{{HL7V3}}}id")
    if element is None or not element.get("root"):
        return None
    ext = element.get("extension")
    return f"{element.get('root')}.{ext}" if ext else str(element.get("root"))


_UID: Final = re.compile(
    r"^(?:[0-2](?:\.(?:0|[1-9]\d*))+|[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})$"
)


def split_id(document_id: str) -> tuple[str, str | None]:
    """(root, extension) of an id :func:`cda_id` wrote as ``root.extension``.

    An OID or a UUID is a root alone; anything else with a dot is split at its last dot.
    """
    if _UID.match(document_id) or "." not in document_id:
        return document_id, None
    root, extension = document_id.rsplit(".", 1)
    return root, extension


def unique_id(message: Hl7Message, document: EmbeddedDocument) -> str:
    """The id a sink deduplicates on: CDA id, TXA-12, OBR-3 + OBX-1, or sender + MSH-10 + OBX-1."""
    if document.media_type == "text/xml":
        found = cda_id(document.content)
        if found:
            return found
    if message.message_type.startswith("MDM") and message.document_unique_id:
        return message.document_unique_id  # TXA-12: one document per MDM
    if message.document_unique_id:  # ORU: OBR-3 names the order, OBX-1 the document in it
        return f"{message.document_unique_id}.{document.set_id}"
    return f"{message.sending_facility}.{message.control_id}.{document.set_id}"
