"""What the DMP sandbox answers, written by the sandbox (pure).

* ``rs:RegistryResponse`` (ebRS 3.0 §2.1.3; IHE ITI TF-3 §4.2.4): status Success or
  Failure, one ``rs:RegistryError`` per error or warning (errorCode, codeContext, severity);
* ``query:AdhocQueryResponse`` (ebRS 3.0 §6.2; ITI-18): ObjectRefs or ExtrinsicObjects;
* SOAP 1.2 Fault (W3C SOAP 1.2 Part 1 §5.4): Code/Value, Subcode/Value, Reason/Text.

Each in a SOAP 1.2 envelope with WS-Addressing ``Action``, ``MessageID`` and ``RelatesTo``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from lxml import etree

from domain.xds.ebrim import QUERY, RIM, RS, SOAP, WSA, WSSE
from sandboxes.dmp_xml import ERROR, FAILURE, SUCCESS, WARNING

ITI41_RESPONSE: Final = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
ITI18_RESPONSE: Final = "urn:ihe:iti:2007:RegistryStoredQueryResponse"
ITI62_RESPONSE: Final = "urn:ihe:iti:2010:DeleteDocumentSetResponse"
FAULT_ACTION: Final = "http://www.w3.org/2005/08/addressing/soap/fault"


@dataclass(frozen=True)
class Error:
    code: str
    context: str
    severity: str = "Error"  # Error | Warning


def _envelope(action: str, relates_to: str) -> etree._Element:
    root = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"env": SOAP, "wsa": WSA})
    header = etree.SubElement(root, f"{{{SOAP}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action", {f"{{{SOAP}}}mustUnderstand": "1"}).text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if relates_to:
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to
    etree.SubElement(root, f"{{{SOAP}}}Body")
    return root


def _bytes(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _errors(parent: etree._Element, errors: Sequence[Error]) -> None:
    if not errors:
        return
    listed = etree.SubElement(parent, f"{{{RS}}}RegistryErrorList")
    for error in errors:
        etree.SubElement(
            listed,
            f"{{{RS}}}RegistryError",
            errorCode=error.code,
            codeContext=error.context,
            severity=ERROR if error.severity == "Error" else WARNING,
        )


def _status(errors: Sequence[Error]) -> str:
    return FAILURE if any(e.severity == "Error" for e in errors) else SUCCESS


def registry_response(
    errors: Sequence[Error], *, relates_to: str, action: str = ITI41_RESPONSE
) -> bytes:
    """A RegistryResponse: Failure when one of ``errors`` is an Error, else Success."""
    root = _envelope(action, relates_to)
    response = etree.SubElement(
        root[1], f"{{{RS}}}RegistryResponse", status=_status(errors), nsmap={"rs": RS}
    )
    _errors(response, errors)
    return _bytes(root)


def query_response(
    found: Sequence[etree._Element], errors: Sequence[Error] = (), *, relates_to: str
) -> bytes:
    """An AdhocQueryResponse listing ``found`` (ObjectRef or ExtrinsicObject elements)."""
    root = _envelope(ITI18_RESPONSE, relates_to)
    response = etree.SubElement(
        root[1],
        f"{{{QUERY}}}AdhocQueryResponse",
        status=_status(errors),
        nsmap={"query": QUERY, "rim": RIM, "rs": RS},
    )
    listed = etree.SubElement(response, f"{{{RIM}}}RegistryObjectList")
    listed.extend(found)
    _errors(response, errors)
    return _bytes(root)


def fault(value: str, subcode: str, reason: str, *, relates_to: str) -> bytes:
    """A SOAP 1.2 Fault: Code ``env:<value>``, its subcode (a QName), the reason."""
    root = _envelope(FAULT_ACTION, relates_to)
    body = etree.SubElement(
        root[1], f"{{{SOAP}}}Fault", nsmap={"wsse": WSSE, "rim": RIM, "wsa": WSA}
    )
    code = etree.SubElement(body, f"{{{SOAP}}}Code")
    etree.SubElement(code, f"{{{SOAP}}}Value").text = f"env:{value}"
    if value == "Sender" and subcode:
        sub = etree.SubElement(code, f"{{{SOAP}}}Subcode")
        etree.SubElement(sub, f"{{{SOAP}}}Value").text = subcode
    text = etree.SubElement(etree.SubElement(body, f"{{{SOAP}}}Reason"), f"{{{SOAP}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = reason
    return _bytes(root)
