"""The answers to an ITI-41 request: the registry's response, or a SOAP fault (pure).

:func:`registry_response` and :func:`soap_fault` build them (the DMP sandbox's side);
:func:`read_response` reads either (the DMP sink's side): a ``RegistryResponse`` comes back
as a :class:`RegistryResponse`, a fault is raised as :class:`SoapFault`. Error codes and
severities are those of IHE ITI TF-3 §4.2 (ebRS).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from lxml import etree

from consumers.ihe import mtom
from consumers.ihe.iti41.soap import NS, NSMAP, RESPONSE_ACTION, Iti41Error, envelope, parse, text
from domain.xds.ebrim import RS, SOAP, WSA

STATUS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:"
SEVERITY: Final = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:"
#: the warning of a repository that already holds this very document (same uniqueId and hash)
ALREADY_HELD: Final = "XDSDuplicateUniqueIdInRegistry"


@dataclass(frozen=True)
class RegistryError:
    code: str  # errorCode, e.g. XDSRegistryMetadataError
    context: str  # codeContext: what is wrong (never patient data)
    severity: str = "Error"  # Error | Warning
    location: str = ""


@dataclass(frozen=True)
class RegistryResponse:
    status: str  # Success | PartialSuccess | Failure
    errors: tuple[RegistryError, ...] = ()

    @property
    def failed(self) -> tuple[RegistryError, ...]:
        return tuple(e for e in self.errors if e.severity == "Error")


@dataclass(frozen=True)
class SoapFault(Exception):
    """A SOAP 1.2 Fault: ``code`` Sender | Receiver, ``subcode`` (e.g. wsse:InvalidSecurity)."""

    code: str
    subcode: str
    reason: str

    def __str__(self) -> str:
        return f"SOAP fault {self.code}/{self.subcode}: {self.reason}"


def registry_response(errors: Sequence[RegistryError] = (), *, relates_to: str = "") -> bytes:
    """A SOAP 1.2 RegistryResponse: Failure when any error has severity Error."""
    status = "Failure" if any(e.severity == "Error" for e in errors) else "Success"
    response = etree.Element(f"{{{RS}}}RegistryResponse", status=STATUS + status, nsmap=NSMAP)
    if errors:
        listing = etree.SubElement(response, f"{{{RS}}}RegistryErrorList")
        for error in errors:
            item = etree.SubElement(listing, f"{{{RS}}}RegistryError")
            item.set("errorCode", error.code)
            item.set("codeContext", error.context)
            item.set("severity", SEVERITY + error.severity)
            if error.location:
                item.set("location", error.location)
    headers = [("MessageID", f"urn:uuid:{uuid.uuid4()}")]
    if relates_to:
        headers.append(("RelatesTo", relates_to))
    return envelope(response, action=RESPONSE_ACTION, headers=headers)


def soap_fault(fault: SoapFault, *, relates_to: str = "") -> bytes:
    """A SOAP 1.2 Fault envelope (HTTP 400 for Sender, 500 for Receiver)."""
    root = etree.Element(f"{{{SOAP}}}Envelope", nsmap=NSMAP)
    header = etree.SubElement(root, f"{{{SOAP}}}Header")
    text(header, WSA, "Action", "http://www.w3.org/2005/08/addressing/soap/fault")
    if relates_to:
        text(header, WSA, "RelatesTo", relates_to)
    element = etree.SubElement(etree.SubElement(root, f"{{{SOAP}}}Body"), f"{{{SOAP}}}Fault")
    code = etree.SubElement(element, f"{{{SOAP}}}Code")
    text(code, SOAP, "Value", f"soap:{fault.code}")
    text(etree.SubElement(code, f"{{{SOAP}}}Subcode"), SOAP, "Value", fault.subcode)
    reason = etree.SubElement(element, f"{{{SOAP}}}Reason")
    text(reason, SOAP, "Text", fault.reason).set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def read_response(content_type: str, body: bytes) -> RegistryResponse:
    """The RegistryResponse of an answer; raises :class:`SoapFault` for a fault."""
    if "multipart/related" in content_type.lower():
        body = mtom.read(content_type, body).root
    answer = parse(body, "the answer")
    fault = answer.find("soap:Body/soap:Fault", NS)
    if fault is not None:
        raise SoapFault(
            code=fault.findtext("soap:Code/soap:Value", "", NS).strip().partition(":")[2],
            subcode=fault.findtext("soap:Code/soap:Subcode/soap:Value", "", NS).strip(),
            reason=fault.findtext("soap:Reason/soap:Text", "", NS).strip(),
        )
    response = answer.find("soap:Body/rs:RegistryResponse", NS)
    if response is None:
        raise Iti41Error("the answer holds neither a RegistryResponse nor a SOAP Fault")
    status = response.get("status", "").removeprefix(STATUS)
    if status not in {"Success", "PartialSuccess", "Failure"}:
        raise Iti41Error(f"RegistryResponse status {status!r} is not an ebRS status")
    return RegistryResponse(
        status=status,
        errors=tuple(
            RegistryError(
                code=e.get("errorCode", ""),
                context=e.get("codeContext", ""),
                severity=e.get("severity", "").removeprefix(SEVERITY) or "Error",
                location=e.get("location", ""),
            )
            for e in response.iterfind("rs:RegistryErrorList/rs:RegistryError", NS)
        ),
    )
