"""What the DMP sink sends for one delivery request (pure).

The exchange with the DMP sandbox is an HTTP POST of the CDA with its XDS
identifiers and its DocumentEntry metadata (JSON) as headers; the full ITI-41
(SOAP/MTOM, VIHF) comes with the fan-out issue and replaces
:func:`http_request` only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from consumers.xds_metadata import DocumentEntry


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
    metadata: DocumentEntry | None = None  # the XDS DocumentEntry (required by the sandbox)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Answer:
    status: str  # "success" | "duplicate"
    code: str | None = None


def patient_cx(ins: str, oid: str) -> str:
    return f"{ins}^^^&{oid}&ISO^NH"


def http_request(submission: Submission) -> tuple[dict[str, str], bytes]:
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "X-Document-UniqueId": submission.unique_id,
        "X-Patient-Id": submission.patient_id,
        "X-Document-TypeCode": submission.type_code,
        "X-Content-SHA256": submission.sha256,
    }
    if submission.metadata is not None:
        headers["X-XDS-Metadata"] = json.dumps(asdict(submission.metadata), ensure_ascii=True)
    return headers, submission.content


def read_answer(status: int, body: dict[str, object]) -> Answer:
    """Map the sandbox's HTTP answer to an :class:`Answer` or a :class:`DmpError`."""
    code = str(body.get("code") or "") or None
    detail = str(body.get("detail") or "no detail")
    if status >= 500 or status in {408, 429}:
        raise DmpUnavailable(f"DMP answered {status}: {detail}", code=code or f"HTTP{status}")
    if body.get("status") in {"success", "duplicate"} and status < 300:
        return Answer(str(body["status"]), code)
    raise DmpRejected(f"DMP refused the document: {detail}", code=code or f"HTTP{status}")
