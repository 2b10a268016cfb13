"""The patient's DMP status and word on feeding it: PAM FR segment ZFA (pure).

IHE PAM National Extension France 2.11 carries, in the ZFA segment of an ADT
(A01/A04/A08 here), the patient's DMP status (ZFA-1..3), the patient's
information and objection to the DMP being fed (ZFA-9, ZFA-10) and to it being
consulted (ZFA-11, ZFA-12). ZFA-4..8 (access authorisation, "bris de glace" and
"centre de régulation" oppositions) are not used in 2.11 (usage X) but 2.9/2.10
senders still send them: they are not read, and not refused. The field table and
its sources are in docs/dmp-consent.md.

A ZFA that is there but malformed is refused at the door (ACK AE, ERR naming the
field): it carries a legal objection (CSP L1111-15), and reading a garbled
objection as "no objection" would feed the DMP of a patient who refused it. The
codes are the tables' words, upper case; dates are HL7 TS. Error messages quote
codes, never patient data.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from producers.hl7.rules import shown
from producers.hl7.segments import Segment

#: the ADT events whose ZFA is read (A40 merges identities: its ZFA, if any, is not read)
READ_IN: Final = frozenset({"ADT^A01", "ADT^A04", "ADT^A08"})
#: ZFA-1, table IHE-FRANCE-ZFA-1 (values seen in public samples, see docs/dmp-consent.md)
DMP_STATUSES: Final = frozenset({"ACTIF", "INEXISTANT", "FERME"})
#: ZFA-9 (IHE-FRANCE-ZFA-9): INO informed, not opposed; IO informed and opposed; NA not asked
FEEDING_CODES: Final = frozenset({"INO", "IO", "NA"})
#: ZFA-11 (IHE-FRANCE-ZFA-11): IC informed, consents; INC informed, does not consent;
#: IO as in an earlier ANS sample (informed, opposed); NA not asked
CONSULTATION_CODES: Final = frozenset({"IC", "INC", "IO", "NA"})
OBJECTED: Final = "IO"
CLOSED: Final = "FERME"
_TS: Final = re.compile(
    r"[0-9]{4}(?:(?:0[1-9]|1[0-2])(?:(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:(?:[01][0-9]|2[0-3])(?:[0-5][0-9](?:[0-5][0-9](?:\.[0-9]{1,4})?)?)?)?)?)?"
    r"(?:[+-](?:[01][0-9]|2[0-3])[0-5][0-9])?"
)
_DATES: Final = {2: "ZFA-2", 3: "ZFA-3", 10: "ZFA-10", 12: "ZFA-12"}


@dataclass(frozen=True)
class DmpConsent:
    """What one ZFA says; None where the field is empty (nothing said)."""

    dmp_status: str | None = None  # ZFA-1
    status_date: str | None = None  # ZFA-2, HL7 TS
    closed_date: str | None = None  # ZFA-3
    feeding: str | None = None  # ZFA-9
    feeding_date: str | None = None  # ZFA-10
    consultation: str | None = None  # ZFA-11
    consultation_date: str | None = None  # ZFA-12

    @property
    def objected(self) -> bool:
        """The patient objected to the feeding of their DMP (ZFA-9 IO)."""
        return self.feeding == OBJECTED

    @property
    def closed(self) -> bool:
        """The patient's DMP is closed (ZFA-1 FERME, or a closure date with no other status)."""
        if self.dmp_status is not None:
            return self.dmp_status == CLOSED
        return self.closed_date is not None


def read_consent(segments: Sequence[Segment], message_type: str) -> DmpConsent | None:
    """The ZFA of an ADT A01/A04/A08 (None when there is none); raises on a malformed one."""
    if message_type not in READ_IN:
        return None
    found = [s for s in segments if s.name == "ZFA"]
    if not found:
        return None
    if len(found) > 1:
        raise found[1].error(
            None, f"this message has {len(found)} ZFA segments; PAM FR allows one", "198"
        )
    return _consent(found[0])


def _consent(zfa: Segment) -> DmpConsent:
    for num, label in _DATES.items():
        _check_date(zfa, num, label)
    return DmpConsent(
        dmp_status=_code(zfa, 1, DMP_STATUSES, "DMP status"),
        status_date=_value(zfa, 2),
        closed_date=_value(zfa, 3),
        feeding=_code(zfa, 9, FEEDING_CODES, "information and objection to DMP feeding"),
        feeding_date=_value(zfa, 10),
        consultation=_code(zfa, 11, CONSULTATION_CODES, "consent to DMP consultation"),
        consultation_date=_value(zfa, 12),
    )


def _value(zfa: Segment, num: int) -> str | None:
    return _single(zfa, num, _DATES[num], "102")


def _single(zfa: Segment, num: int, label: str, code: str) -> str | None:
    """Field ``num``'s one value (component 1), None when the field is empty; a field that
    repeats, or that has other components but an empty first one, is refused: "nothing
    said" is an empty field, never a value Relais could not read."""
    reps = zfa.reps(num)
    if not any(part for rep in reps for comp in rep for part in comp):
        return None
    if len(reps) > 1:
        raise zfa.error(num, f"{label} repeats; PAM FR allows one value (no ~)", code)
    value = zfa.get(num)
    if not value:
        raise zfa.error(num, f"{label} has no code in its first component (^...)", code)
    return value


def _code(zfa: Segment, num: int, table: frozenset[str], what: str) -> str | None:
    value = _single(zfa, num, f"ZFA-{num} ({what})", "103")
    if value is None:
        return None
    if value not in table:
        accepted = ", ".join(sorted(table))
        raise zfa.error(
            num,
            f"ZFA-{num} ({what}) is '{shown(value)}'; PAM FR 2.11 accepts {accepted} (upper case)",
            "103",
        )
    return value


def _check_date(zfa: Segment, num: int, label: str) -> None:
    value = _single(zfa, num, label, "102")
    if value and not _TS.fullmatch(value):
        raise zfa.error(
            num,
            f"{label} is not an HL7 date (YYYYMMDD[HHMM[SS]], optional +/-ZZZZ)",
            "102",
        )


def consent_record(
    consent: DmpConsent | None, *, as_of: str, source_event_id: str
) -> dict[str, str | None] | None:
    """The ``DmpConsent`` bus record of a ZFA (None without one): ``as_of`` is the ADT's
    MSH-7, which orders the patient's words; ``source_event_id`` the identity event."""
    if consent is None:
        return None
    return {
        **dataclasses.asdict(consent),
        "as_of": as_of or None,
        "source_event_id": source_event_id,
        "feeding_facility": None,  # MSH-4: filled by the identity stage
    }
