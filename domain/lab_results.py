"""Structured lab results, as a laboratory sends them and as the CDA needs them (pure types).

A :class:`LabResult` is one OBX of a results message, with the laboratory's
local code. Transcoding maps it to a :class:`CodedResult` (LOINC code, French
display name, UCUM unit) using the laboratory's catalogue; a result whose
local code has no mapping keeps the LOINC *waiting* code system instead, so
that it never silently disappears.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
from dataclasses import dataclass
from typing import Final

LOINC_OID: Final = "2.16.840.1.113883.6.1"
UCUM_OID: Final = "2.16.840.1.113883.6.8"
#: "codes d'attente LOINC": results not (yet) mapped to LOINC (CI-SIS CR-BIO).
LOINC_WAITING_OID: Final = "1.2.250.1.213.1.1.5.130"


class ValueType(enum.StrEnum):
    NUMERIC = "NM"  # a quantity with a UCUM unit (CDA PQ)
    TEXT = "ST"  # free text (CDA ST)
    CODED = "CE"  # a coded value (CDA CD)


class MappingStatus(enum.StrEnum):
    MAPPED = "mapped"  # catalogue maps the local code to a known LOINC code, units agree
    WAITING = "waiting"  # no mapping: sent with the LOINC waiting code system
    SUSPICIOUS = "suspicious"  # mapped, but unknown LOINC or a unit that does not agree


@dataclass(frozen=True)
class LabResult:
    """One result as the laboratory sent it (OBX-3 local code, OBX-5 value, OBX-6 unit)."""

    local_code: str
    local_label: str
    value: str
    value_type: ValueType
    unit: str | None = None
    reference_range: str | None = None  # OBX-7, e.g. "0.4-4.0"
    interpretation: str | None = None  # OBX-8: N, H, L, HH, LL, A...
    observed_at: str | None = None  # OBX-14, HL7 TS
    specimen: str | None = None


@dataclass(frozen=True)
class CodedResult:
    """A result ready for the CDA: the LOINC code (or a waiting code) and a UCUM unit."""

    result: LabResult
    code: str  # LOINC code, or the local code under the waiting code system
    code_system: str  # LOINC_OID or LOINC_WAITING_OID
    display_name: str  # French LOINC display name, or the local label
    ucum_unit: str | None
    status: MappingStatus
    problems: tuple[str, ...] = ()  # why SUSPICIOUS / WAITING, for the catalogue report


#: Media type of a lab report the transcode stage builds: structured results + the PDF copy.
LAB_REPORT_MEDIA: Final = "application/vnd.relais.lab-report+json"


def encode_lab_report(results: tuple[LabResult, ...], pdf: bytes) -> bytes:
    """The results and the PDF of an ORU^R01, as the sealed content of a document event."""
    payload = {
        "results": [{**dataclasses.asdict(r), "value_type": r.value_type.value} for r in results],
        "pdf": base64.b64encode(pdf).decode(),
    }
    return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()


def decode_lab_report(content: bytes) -> tuple[tuple[LabResult, ...], bytes]:
    """Inverse of :func:`encode_lab_report`; ValueError when the content is not one."""
    try:
        payload = json.loads(content)
        results = tuple(
            LabResult(**{**r, "value_type": ValueType(r["value_type"])}) for r in payload["results"]
        )
        return results, base64.b64decode(payload["pdf"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a lab report ({type(exc).__name__})") from None
