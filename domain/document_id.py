"""Identifiers in a CDA (`ClinicalDocument/id`) and the safe XML parser every reader uses."""

from __future__ import annotations

import re
from typing import Final

from lxml import etree

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
    return id_of(root.find(f"{{{HL7V3}}}id"))


def parent_id_of(root: etree._Element) -> str | None:
    """The id a CDA replaces (``relatedDocument/parentDocument/id``), as :func:`cda_id_of`."""
    return id_of(root.find(f"{{{HL7V3}}}relatedDocument/{{{HL7V3}}}parentDocument/{{{HL7V3}}}id"))


def id_of(element: etree._Element | None) -> str | None:
    """``root`` or ``root.extension`` of an HL7 v3 ``II``; None without a root."""
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


def parse(document: bytes) -> tuple[etree._Element | None, list[str]]:
    """The root element, or None and why the bytes cannot be read as a CDA."""
    try:
        root = etree.fromstring(document, safe_parser())
    except etree.XMLSyntaxError as exc:  # libxml2's text may quote the document: not shown
        last = getattr(exc.error_log, "last_error", None)  # lxml-stubs leave it out
        name = getattr(last, "type_name", None) or "syntax error"
        what = str(name).removeprefix("ERR_").replace("_", " ").lower()
        return None, [f"well-formed: line {exc.lineno}, column {exc.offset}: {what}"]
    except ValueError as exc:  # e.g. an empty document
        return None, [f"well-formed: {exc}"]
    problems = root_problems(root)
    return (None, problems) if problems else (root, [])


def root_problems(root: etree._Element) -> list[str]:
    """Why a parsed document cannot be read as a CDA (a DOCTYPE, another root element)."""
    if root.getroottree().docinfo.internalDTD is not None:
        return ["doctype: a CDA carries no DOCTYPE (entities and DTDs are refused)"]
    if root.tag != f"{{{HL7V3}}}ClinicalDocument":
        return ["root: the root element is not an HL7 v3 ClinicalDocument"]
    return []
