"""Errors raised while reading an inbound HL7 v2 message (producers side).

Each error carries what a technical ACK needs (CI-SIS volet "Transmission de
document(s) CDA en HL7v2", error codes page): the HL7 table 0357 code for
ERR-3, the volet application code for ERR-5 when there is one, the location
for ERR-2 and a human message for ERR-8 that tells the sender what to fix.
Messages never quote patient data (names, INS, dates): they name the field.

Errors (one tree; python-hl7 exceptions never escape)::

    Hl7Error                 base; not retriable: resending the same bytes fails again
     ├── Hl7ParseError       not HL7 at all: no MSH first, bad encoding characters,
     │                       undeclared/unknown charset, bytes that do not decode
     └── Hl7ValidationError  parsed, but a rule failed: required field missing,
                             unsupported type/version, bad table value, broken base64
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final

#: HL7 table 0357 "Message error condition" (ERR-3), texts as in HL7 v2.5+.
HL7_ERROR_TEXT: Final[Mapping[str, str]] = MappingProxyType(
    {
        "0": "Message accepted",
        "100": "Segment sequence error",
        "101": "Required field missing",
        "102": "Data type error",
        "103": "Table value not found",
        "198": "Non-conformant cardinality",
        "199": "Other HL7 error",
        "200": "Unsupported message type",
        "201": "Unsupported event code",
        "202": "Unsupported processing id",
        "203": "Unsupported version id",
        "207": "Application internal error",
    }
)
HL7_ERROR_TABLE: Final = "HL70357"

#: Volet application error codes (ERR-5), table "applicationErrorCode" in the ANS
#: examples. 900-905 come from the volet; 906 is this project's "other".
APP_ERROR_LABEL: Final[Mapping[str, str]] = MappingProxyType(
    {
        "900": "Version du document incorrecte",
        "901": "Auteur non autorise a remplacer ou supprimer le document",
        "902": "Identifiant de patient inconnu",
        "903": "INS non present",
        "904": "INS ne correspondant pas aux traits connus",
        "905": "INS incomplet",
        "906": "Autre erreur",
    }
)
APP_ERROR_TABLE: Final = "applicationErrorCode"


class Hl7Error(Exception):
    """An inbound HL7 v2 message cannot be accepted.

    ``location`` is ``SEG`` or ``SEG-n`` (optionally ``SEG-n.c``), e.g. ``PID-3``;
    ``segment_sequence`` is the 1-based occurrence of that segment in the message
    (ERR-2 ERL.2: the third OBX is sequence 3).
    """

    retriable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        hl7_error_code: str = "207",
        app_error_code: str | None = None,
        location: str | None = None,
        segment_sequence: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hl7_error_code = hl7_error_code
        self.app_error_code = app_error_code
        self.location = location
        self.segment_sequence = segment_sequence

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.message} (HL7 error {self.hl7_error_code})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, hl7_error_code={self.hl7_error_code!r}, "
            f"app_error_code={self.app_error_code!r}, location={self.location!r}, "
            f"segment_sequence={self.segment_sequence})"
        )


class Hl7ParseError(Hl7Error):
    """The bytes are not a readable HL7 v2 message (ACK AE, ERR from the raw MSH)."""


class Hl7ValidationError(Hl7Error):
    """The message parsed, but breaks a rule of HL7 or of the volet (ACK AE)."""
