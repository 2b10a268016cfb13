"""The answers to an ITI-41 request: the registry's response, or a SOAP fault (pure).

:func:`read_response` reads either (the DMP sink's side): a ``RegistryResponse`` comes back
as a :class:`RegistryResponse`, a fault is raised as :class:`SoapFault`. Writing them is the
DMP's business: its sandbox has its own writer (:mod:`sandboxes.dmp_answers`). Error codes and
severities are those of IHE ITI TF-3 §4.2 (ebRS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consumers.ihe import mtom
from consumers.ihe.iti41.soap import NS, Iti41Error, parse

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
