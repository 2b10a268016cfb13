"""What the DMP sink sends for one delivery request, and what the DMP's answer means (pure).

The exchange itself is IHE ITI-41 (:mod:`consumers.ihe.iti41`: SOAP 1.2, MTOM/XOP, the VIHF);
this module holds the :class:`Submission` it is built from and :func:`read_answer`, which
maps the DMP's HTTP status and RegistryResponse (or SOAP Fault) to an :class:`Answer` or a
:class:`DmpError` that says whether trying again can help.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumers.dmp.error_codes import retriable
from consumers.ihe.iti41 import ALREADY_HELD, Iti41Error, RegistryError, SoapFault, read_response
from consumers.ihe.mtom import MtomError
from domain.xds.metadata import DocumentEntry


class DmpError(Exception):
    """Base of DMP delivery errors; ``retriable`` says whether trying again can help."""

    retriable = False

    def __init__(self, message: str, *, code: str = "DMPError") -> None:
        super().__init__(message)
        self.code = code


class DmpUnavailable(DmpError):
    """The DMP could not be reached or answered 5xx: try again later."""

    retriable = True


class DmpRejected(DmpError):
    """The DMP refused the document: retrying the same submission will fail again."""


@dataclass(frozen=True)
class Submission:
    unique_id: str
    patient_id: str  # XDS CX: <matricule>^^^&<OID>&ISO^NH
    type_code: str
    content: bytes
    metadata: DocumentEntry | None = None  # the XDS DocumentEntry (required by the DMP)
    parent_unique_id: str | None = None  # the document this one replaces (RPLC), if any
    #: the replaced document's entryUUID as the DMP assigned it (None: look it up, ITI-18)
    parent_entry_uuid: str | None = None


@dataclass(frozen=True)
class Answer:
    status: str  # "success" | "duplicate" (the DMP already held this very document)
    code: str | None = None


def patient_cx(ins: str, oid: str) -> str:
    return f"{ins}^^^&{oid}&ISO^NH"


def ins_of(patient_cx: str) -> tuple[str, str]:
    """(matricule, OID) of an XDS patient id ``<ins>^^^&<oid>&ISO^NH``."""
    parts = patient_cx.split("^")
    authority = parts[3].split("&") if len(parts) > 3 else []
    if not parts[0] or len(authority) < 2 or not authority[1]:
        raise DmpRejected("the patient id is not an INS CX", code="XDSUnknownPatientId")
    return parts[0], authority[1]


def read_answer(status: int, content_type: str, body: bytes) -> Answer:
    """Map the DMP's HTTP answer to an :class:`Answer` or a :class:`DmpError`.

    5xx, 408 and 429, a Receiver fault and the codes :mod:`consumers.dmp.error_codes` says to
    retry are transient (:class:`DmpUnavailable`); so is an answer that cannot be read, since a
    re-send of the same document is harmless. A Sender fault and a Failure are
    :class:`DmpRejected` with the fault's subcode or the first error's code, unless the table
    says that code is worth retrying.
    """
    transient = status >= 500 or status in {408, 429}
    try:
        response = read_response(content_type, body)
    except SoapFault as fault:
        code = fault.subcode or f"HTTP{status}"
        if transient or fault.code == "Receiver" or retriable(fault.subcode):
            raise DmpUnavailable(f"DMP answered {status}: {fault}", code=code) from None
        raise DmpRejected(f"DMP refused the request: {fault}", code=code) from None
    except (Iti41Error, MtomError) as exc:
        raise DmpUnavailable(
            f"DMP answered {status}, unreadable: {exc}", code=f"HTTP{status}"
        ) from None
    errors = response.failed
    if transient or any(retriable(e.code) for e in errors):
        code = next((e.code for e in errors), f"HTTP{status}")
        raise DmpUnavailable(f"DMP answered {status}: {_describe(errors)}", code=code)
    if response.status == "Success" and not errors and status < 300:
        warnings = [e.code for e in response.errors]
        if ALREADY_HELD in warnings:
            return Answer("duplicate", ALREADY_HELD)
        return Answer("success", warnings[0] if warnings else None)
    code = errors[0].code if errors else f"HTTP{status}"
    raise DmpRejected(f"DMP refused the document: {_describe(errors)}", code=code)


def _describe(errors: tuple[RegistryError, ...]) -> str:
    return "; ".join(f"{e.code} ({e.context})" for e in errors) or "no error listed"
