"""HL7 TS values (``YYYYMMDD[HH[MM[SS[.S]]]][+hhmm]``) as instants (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, NamedTuple
from zoneinfo import ZoneInfo

_TS: Final = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?(?:([+-])(\d{2})(\d{2}))?$"
)


#: the local time of French senders: an HL7 time of day without its offset is read in it
PARIS: Final = ZoneInfo("Europe/Paris")


class Hl7TimeError(ValueError):
    """Not an HL7 TS Relais can place in time; the message says what is wrong."""


class Instant(NamedTuple):
    at: datetime  # UTC
    digits: int  # precision kept: 4, 6, 8, 10, 12 or 14 digits

    def xds(self) -> str:
        """The XDS DTM form: UTC, as many digits as the source had."""
        return self.at.strftime("%Y%m%d%H%M%S")[: self.digits]


def instant(value: str) -> Instant:
    """The UTC instant of an HL7 TS; a time of day needs its offset, a date does not."""
    if (match := _TS.match(value.strip())) is None:
        raise Hl7TimeError("not an HL7 TS (YYYYMMDD[HH[MM[SS]]] and an offset +hhmm)")
    parts = [int(g) for g in match.groups()[:6] if g is not None]
    digits = 4 + 2 * (len(parts) - 1)
    sign, hours, minutes = match.group(7), match.group(8), match.group(9)
    if digits > 8 and sign is None:
        raise Hl7TimeError("a time needs its UTC offset (+hhmm) to be put in UTC")
    try:
        year, month, day, hour, minute, second = parts + [1, 1, 0, 0, 0][len(parts) - 1 :]
        if digits <= 8 or sign is None:  # a date: the day stays the day
            return Instant(datetime(year, month, day, tzinfo=UTC), digits)
        if int(minutes) >= 60:
            raise ValueError("offset minutes must be < 60")
        delta = timedelta(hours=int(hours), minutes=int(minutes)) * (-1 if sign == "-" else 1)
        local = datetime(year, month, day, hour, minute, second, tzinfo=timezone(delta))
    except ValueError as exc:
        raise Hl7TimeError(f"not a valid date, time or offset ({exc})") from exc
    # an offset with minutes (+0530) moves the minutes: keep them
    return Instant(local.astimezone(UTC), max(digits, 12) if int(minutes) else digits)


def paris_instant(value: str) -> Instant:
    """:func:`instant`, a time of day without its offset being Europe/Paris local time
    (the sender's clock, as MSH-7 of French senders), so words from senders that give an
    offset and senders that do not are ordered alike."""
    match = _TS.match(value.strip())
    if match is None or match.group(7) is not None or match.group(4) is None:
        return instant(value)
    digits = value.strip().split(".")[0]
    try:
        local = datetime.strptime(digits.ljust(14, "0"), "%Y%m%d%H%M%S").replace(tzinfo=PARIS)
    except ValueError as exc:
        raise Hl7TimeError(f"not a valid date or time ({exc})") from exc
    return instant(value.strip() + local.strftime("%z"))
