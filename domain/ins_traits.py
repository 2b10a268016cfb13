"""The five INS traits: national normalisation and consistency with the matricule (pure).

Names (birth name, birth first names) are written as INSi returns them:
upper case A-Z with diacritics removed (É -> E, Ç -> C), ligatures split
(Œ -> OE, Æ -> AE, ß -> SS), and only three separators kept: space, hyphen
and apostrophe (typographic variants such as U+2019 or U+2013 are read as ' and -).
Runs of spaces become one space, spaces around a hyphen are dropped, a run of
hyphens becomes "--" when longer than one (the double hyphen is the civil-status
separator of a "double nom" for births from 2005 to November 2011: circulaires
of 6 December 2004 and 25 October 2011, so it is kept, never merged into "-"),
and leading or trailing spaces and hyphens are removed. The apostrophe is part
of a name (D'ARC, 'T HOOFT) and is kept where it stands. Any other character
(digit, punctuation, a letter outside the Latin script) is refused: the name
is never guessed.

The consistency rules (``check_consistency``), each failure a named ``Mismatch``:

* sex digit: odd (1, 3, 7) is M, even (2, 4, 8) is F;
* year: the two digits equal the birth year modulo 100;
* month: 01-12 must equal the birth month (an unknown month, 00, in the traits
  does not agree with a known one); 20-42 and 50, written when the civil-status
  record gave no month, agree with any birth month;
* birthplace: the five characters 6-10 of the matricule equal the COG code,
  except for three documented equivalences: Corsica written 20 (before 1976) on
  one side and 2A/2B on the other with the same commune number; Paris, Lyon
  and Marseille written as the commune (75056, 69123, 13055) on one side and
  as one of its municipal arrondissements (75101-75120, 69381-69389,
  13201-13216) on the other; and births in Algeria, Morocco, Tunisia before
  independence, written 91-94 / 95 / 96 in the matricule and 99352 / 99350 /
  99351 (INSEE COG country codes, data.gouv.fr "pays" file) in the traits.
  Both born abroad with different countries is BIRTH_COUNTRY_MISMATCH; only
  one side abroad is BORN_ABROAD_MISMATCH; otherwise BIRTHPLACE_MISMATCH. Other legitimate
  divergences exist (a commune merged or renamed since the birth, the special
  commune codes used when a large commune runs out of order numbers): they are
  reported, so that a person reviews them; nothing is filed on a guess.
* a missing birthplace code is MISSING_BIRTHPLACE: an INS has five traits and
  receivers refuse incomplete traits (error 905 of the CI-SIS transmission IG).

A NIA is built like a NIR (circulaire DSS/SD4C 2012-213), so every check above
applies to it as well; the test and demo OIDs are checked like production ones.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Final

from domain.ins import SEX_BY_DIGIT, Mismatch, check_matricule

__all__ = [
    "BirthDate",
    "Mismatch",
    "Traits",
    "TraitsError",
    "check_consistency",
    "check_traits",
    "normalise_birth_date",
    "normalise_name",
    "normalise_traits",
    "parse_birth_date",
]


class TraitsError(ValueError):
    """A trait that cannot be normalised; the message names the rule, never the value."""

    def __init__(self, reason: Mismatch) -> None:
        super().__init__(reason.explain)
        self.reason = reason


@dataclass(frozen=True)
class Traits:
    birth_name: str
    given_names: str  # all birth first names, space-separated
    birth_date: str  # YYYYMMDD, 00 for an unknown month or day
    sex: str  # M or F
    birthplace_code: str | None  # INSEE COG: 63220, 2A004, 97411, or 99xxx abroad

    @property
    def first_given_name(self) -> str:
        """The first birth first name (the one MSSanté and CDA ``given qualifier="BR"`` use)."""
        return self.given_names.split(" ", 1)[0]


@dataclass(frozen=True)
class BirthDate:
    year: int
    month: int | None  # None: unknown (00)
    day: int | None

    @property
    def partial(self) -> bool:
        return self.month is None or self.day is None


def parse_birth_date(value: str) -> BirthDate | None:
    """YYYYMMDD with 00 for an unknown month or day (a known day needs a known month)."""
    if len(value) != 8 or not (value.isdigit() and value.isascii()):
        return None
    year, month, day = int(value[:4]), int(value[4:6]), int(value[6:])
    if year == 0 or month > 12 or (month == 0 and day != 0):
        return None
    if month and day > calendar.monthrange(year, month)[1]:
        return None
    return BirthDate(year, month or None, day or None)


_ISO_DATE: Final = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")


def normalise_birth_date(value: str) -> str:
    """YYYYMMDD from YYYYMMDD, YYYYMM, YYYY or their ISO forms (missing parts as 00).

    Anything else comes back stripped but otherwise untouched, for the check to refuse.
    """
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) in (4, 6, 8):
        return value.ljust(8, "0")
    iso = _ISO_DATE.fullmatch(value)
    if iso:
        return "".join(part or "00" for part in iso.groups())
    return value


# Letters that Unicode decomposition does not split into a base letter.
_SPLIT: Final = {
    "Œ": "OE",
    "œ": "OE",
    "Æ": "AE",
    "æ": "AE",
    "ß": "SS",
    "ẞ": "SS",
    "Ø": "O",
    "ø": "O",
    "Ł": "L",
    "ł": "L",
    "Đ": "D",
    "đ": "D",
    "Ð": "D",
    "ð": "D",
    "Þ": "TH",
    "þ": "TH",
}
_APOSTROPHES: Final = frozenset("'\u2019\u2018\u02bc`\u00b4\u2032")
_HYPHENS: Final = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d")
_ALLOWED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ -'")


def _characters(value: str) -> str:
    out: list[str] = []
    for ch in value:
        if ch in _SPLIT:
            out.append(_SPLIT[ch])
        elif ch in _APOSTROPHES:
            out.append("'")
        elif ch in _HYPHENS:
            out.append("-")
        elif ch.isspace():
            out.append(" ")
        else:
            out.append(ch)
    decomposed = unicodedata.normalize("NFKD", "".join(out))
    kept = (c for c in decomposed if not unicodedata.combining(c))
    text = "".join(c for c in kept if unicodedata.category(c) != "Cf").upper()
    if not set(text) <= _ALLOWED:
        raise TraitsError(Mismatch.INVALID_CHARACTER)
    return text


def normalise_name(value: str) -> str:
    """An INS name: A-Z, space, hyphen, apostrophe (see the module notes); "" if no letter.

    Raises TraitsError (reason INVALID_CHARACTER) for any other character.
    """
    text = _characters(value)
    text = re.sub(r" *- *", "-", text)
    text = re.sub(r"-{2,}", "--", text)
    text = re.sub(r"'{2,}", "'", text)
    text = re.sub(r" {2,}", " ", text)
    text = text.strip(" -")
    return text if any("A" <= c <= "Z" for c in text) else ""


def normalise_traits(traits: Traits) -> Traits:
    """Names to the national rules, date to YYYYMMDD, sex and birthplace upper-cased.

    Raises TraitsError when a name holds a character outside the rules.
    """
    place = (traits.birthplace_code or "").strip().upper()
    return replace(
        traits,
        birth_name=normalise_name(traits.birth_name),
        given_names=normalise_name(traits.given_names),
        birth_date=normalise_birth_date(traits.birth_date),
        sex=traits.sex.strip().upper(),
        birthplace_code=place or None,
    )


_PLACE: Final = re.compile(r"(?:[0-9]{2}|2A|2B)[0-9]{3}")


def _name_reasons(traits: Traits) -> list[Mismatch]:
    reasons: list[Mismatch] = []
    empty = (Mismatch.EMPTY_BIRTH_NAME, Mismatch.EMPTY_GIVEN_NAMES)
    for value, if_empty in zip((traits.birth_name, traits.given_names), empty, strict=True):
        try:
            if normalise_name(value) == "":
                reasons.append(if_empty)
        except TraitsError:
            if Mismatch.INVALID_CHARACTER not in reasons:
                reasons.insert(0, Mismatch.INVALID_CHARACTER)
    return reasons


def _other_traits(traits: Traits) -> Traits:
    """Birth date, sex and birthplace normalised (the names are checked on their own)."""
    return normalise_traits(replace(traits, birth_name="", given_names=""))


def check_traits(traits: Traits) -> list[Mismatch]:
    """[] when the five traits are complete and well formed, on their own."""
    reasons = _name_reasons(traits)
    norm = _other_traits(traits)
    if parse_birth_date(norm.birth_date) is None:
        reasons.append(Mismatch.BAD_BIRTH_DATE)
    if norm.sex not in ("M", "F"):
        reasons.append(Mismatch.BAD_SEX)
    if norm.birthplace_code is None:
        reasons.append(Mismatch.MISSING_BIRTHPLACE)
    elif not _PLACE.fullmatch(norm.birthplace_code):
        reasons.append(Mismatch.BAD_BIRTHPLACE)
    return reasons


# Communes with municipal arrondissements: commune code -> arrondissement codes.
_ARRONDISSEMENTS: Final = {
    "75056": frozenset(f"751{n:02d}" for n in range(1, 21)),
    "69123": frozenset(f"6938{n}" for n in range(1, 10)),
    "13055": frozenset(f"132{n:02d}" for n in range(1, 17)),
}
# North Africa before independence: matricule département -> INSEE country code.
_BEFORE_INDEPENDENCE: Final = {
    "91": "99352",
    "92": "99352",
    "93": "99352",
    "94": "99352",
    "95": "99350",
    "96": "99351",
}
_CORSICA: Final = frozenset({"20", "2A", "2B"})


def _same_place(place: str, code: str) -> bool:
    if place == code:
        return True
    if _BEFORE_INDEPENDENCE.get(place[:2]) == code:
        return True
    if place[:2] in _CORSICA and code[:2] in _CORSICA and "20" in (place[:2], code[:2]):
        return place[2:] == code[2:]
    return any(
        (place == commune and code in parts) or (code == commune and place in parts)
        for commune, parts in _ARRONDISSEMENTS.items()
    )


def _birthplace(place: str, code: str) -> Mismatch | None:
    if _same_place(place, code):
        return None
    abroad = (place.startswith("99"), code.startswith("99"))
    if all(abroad):
        return Mismatch.BIRTH_COUNTRY_MISMATCH
    if any(abroad):
        return Mismatch.BORN_ABROAD_MISMATCH
    return Mismatch.BIRTHPLACE_MISMATCH


def check_consistency(matricule: str, oid: str, traits: Traits) -> list[Mismatch]:
    """[] when the matricule is a valid INS and its digits agree with the five traits.

    Reasons come in a fixed order: matricule, traits, then each comparison.
    A comparison is made only when both of its sides could be read.
    """
    reasons = check_matricule(matricule, oid)
    reasons += check_traits(traits)
    if Mismatch.BAD_LENGTH in reasons or Mismatch.BAD_CHARACTERS in reasons:
        return reasons
    norm = _other_traits(traits)
    matricule = matricule.upper()
    digit_sex = SEX_BY_DIGIT.get(matricule[0])
    if digit_sex is not None and norm.sex in ("M", "F") and digit_sex != norm.sex:
        reasons.append(Mismatch.SEX_MISMATCH)
    born = parse_birth_date(norm.birth_date)
    if born is not None:
        if int(matricule[1:3]) != born.year % 100:
            reasons.append(Mismatch.BIRTH_YEAR_MISMATCH)
        month = int(matricule[3:5])
        if 1 <= month <= 12 and month != born.month:
            reasons.append(Mismatch.BIRTH_MONTH_MISMATCH)
    code = norm.birthplace_code
    if code is not None and _PLACE.fullmatch(code):
        found = _birthplace(matricule[5:10], code)
        if found is not None:
            reasons.append(found)
    return reasons
