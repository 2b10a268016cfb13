"""Technical HL7 v2 acknowledgements (ACK) for inbound messages (pure, no I/O).

Per the CI-SIS volet: MSH-9 ``ACK^<trigger>^ACK``, sending and receiving
application/facility swapped, MSH-12 the original version, MSH-18
``UNICODE UTF-8``; MSA-1 ``AA`` accepted (the bus took responsibility), ``AE``
error in the message (resending it unchanged fails again), ``AR`` rejected for
a circumstance of the receiver (resend later); MSA-2 the original MSH-10. On AE
and AR an ERR segment: ERR-2 location, ERR-3 HL7 table 0357, ERR-4 ``E``, ERR-5
the volet application code when there is one, ERR-8 a human message in ASCII
that never carries patient data.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from types import MappingProxyType
from typing import Final

from producers.hl7.errors import (
    APP_ERROR_LABEL,
    APP_ERROR_TABLE,
    HL7_ERROR_TABLE,
    HL7_ERROR_TEXT,
    Hl7Error,
)
from producers.hl7.message import MessageHeader, read_header
from producers.hl7.segments import escape

ACK_CODES: Final = frozenset({"AA", "AE", "AR"})
_DEFAULT_VERSION: Final = "2.5"
_LOCATION_RE: Final = re.compile(r"([A-Z][A-Z0-9]{2})(?:-([0-9]+)(?:\.([0-9]+))?)?")
_DEFAULT_TEXT: Final = MappingProxyType(
    {
        "AE": "The message was not accepted; check it against the CI-SIS HL7 v2 volet.",
        "AR": "The receiver could not take the message now; resend it later.",
    }
)
_EMPTY_HEADER: Final = MessageHeader(*([""] * 12))


def read_msa(ack: bytes) -> tuple[str, str] | None:
    """(MSA-1, MSA-2) of an ACK payload, or None when it has no MSA segment.

    Segments may end with CR or LF; the field separator is the one after "MSA".
    """
    for segment in ack.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA") and len(segment) > 3:
            fields = segment.decode("utf-8", "replace").split(segment[3:4].decode("latin-1"))
            return fields[1].strip(), fields[2].strip() if len(fields) > 2 else ""
    return None


def ack_code_for(error: Hl7Error | None) -> str:
    """MSA-1 for an outcome: AA when accepted, AE for any error found in the message.

    AR (resend later) is for failures of the receiver itself (e.g. the broker is
    down); the caller passes it to ``build_ack`` explicitly.
    """
    return "AA" if error is None else "AE"


def build_ack(
    message: MessageHeader | None,
    raw: bytes,
    *,
    code: str,
    error: Hl7Error | None = None,
    control_id: str,
    now: datetime,
) -> bytes:
    """The ACK for ``raw`` (already parsed into ``message``, or its header read, or None).

    With no ``message``, what can be read of the raw MSH is used, else empty fields.
    On AE/AR without an ``error``, ERR says 207 (application internal error).
    """
    if code not in ACK_CODES:
        raise ValueError(f"ACK code must be one of {sorted(ACK_CODES)}, not {code!r}")
    header = message if message is not None else (read_header(raw) or _EMPTY_HEADER)
    msa = f"MSA|{code}|{escape(header.control_id)}"  # MSA-2 is required: kept even empty
    segments = [_msh(header, control_id, now), msa]
    if code != "AA":
        segments.append(_err(error, code))
    return ("\r".join(segments) + "\r").encode("utf-8")


def _fields(*values: str) -> str:
    return "|".join(values).rstrip("|")


def _msh(original: MessageHeader, control_id: str, now: datetime) -> str:
    parts = original.message_type.split("^")
    trigger = parts[1] if len(parts) > 1 else ""
    return _fields(
        "MSH",
        "^~\\&",
        original.receiving_application,
        original.receiving_facility,
        original.sending_application,
        original.sending_facility,
        now.strftime("%Y%m%d%H%M%S%z"),
        "",
        f"ACK^{escape(trigger)}^ACK" if trigger else "ACK",
        escape(control_id),
        escape(original.processing_id) or "P",
        escape(original.version) or _DEFAULT_VERSION,
        "",
        "",
        "",
        "",
        "FRA",
        "UNICODE UTF-8",
    )


def _err(error: Hl7Error | None, ack_code: str) -> str:
    if error is None:
        code, location, sequence, app, text = "207", None, 1, None, _DEFAULT_TEXT[ack_code]
    else:
        code, location, sequence = error.hl7_error_code, error.location, error.segment_sequence
        app, text = error.app_error_code, error.message
    condition = f"{code}^{escape(HL7_ERROR_TEXT.get(code, ''))}^{HL7_ERROR_TABLE}"
    application = ""
    if app is not None:
        application = f"{app}^{escape(APP_ERROR_LABEL.get(app, ''))}^{APP_ERROR_TABLE}"
    return _fields(
        "ERR",
        "",
        _error_location(location, sequence),
        condition,
        "E",
        application,
        "",
        "",
        escape(_ascii(text)),
    )


def _error_location(location: str | None, sequence: int) -> str:
    """``PID-3`` -> ``PID^1^3`` (ERL: segment, sequence, field, repetition, component)."""
    match = _LOCATION_RE.fullmatch(location or "")
    if match is None:
        return ""
    segment, field_no, component = match.groups()
    parts = [segment, str(sequence)]
    if field_no:
        parts.append(field_no)
    if component:
        parts += ["1", component]
    return "^".join(parts)


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(c if c.isprintable() else " " for c in plain)
