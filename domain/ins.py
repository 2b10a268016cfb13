"""INS matricule and assigning authorities (pure, no I/O).

The matricule INS is a NIR or a NIA: 13 characters and a 2-digit key,
key = 97 - (N mod 97), with Corsica's département 2A read as 19 and 2B as 18.
Which of NIR or NIA it is comes from the OID, not from the digits.

Layout of the 13 characters (a NIA is built like a NIR):

====== ===================================================================
0      sex: 1 male, 2 female; 3/4 and 7/8 (same parity: odd male, even
       female) on numbers given while a registration is under way
1-2    last two digits of the birth year
3-4    birth month 01-12; 20-42 or 50 when the civil-status record gives
       no month (incomplete record): these carry no month to compare
5-9    birthplace, the 5 characters of the INSEE COG code: département (2;
       2A/2B for Corsica since 1976, 20 before) + commune (3), or overseas
       97x/98x (3) + commune (2), or 99 + country (3) for people born
       abroad; 91-94 / 95 / 96 for Algeria / Morocco / Tunisia before
       their independence
10-12  order number of the birth record
13-14  key
====== ===================================================================

Sources: décret 82-103 art. 4 (as quoted by xml.insee.fr/schema/2004/nir.html);
service-public.fr F33078 (sex 1/2, 99 + country, 91-96 for North Africa);
DSS/INSEE assured-person leaflet (2A/2B since 1 January 1976, 97/98 overseas);
comptavoo.com (months 20-30 and 50 for incomplete records; 31-42 were not found in a
public source, they are accepted on the project's brief so that no such NIR is
refused: they only ever waive the month comparison); aide-sociale.fr
(provisional numbers starting with 3, 7 or 8); formation-net-entreprises.fr quoting
circulaire DSS/SD4C 2012-213 (a NIA "is built like a NIR"); STANDARDS.md §1 (OIDs).
"""

from __future__ import annotations

import enum
from typing import Final

INS_NIR: Final = "1.2.250.1.213.1.4.8"
INS_NIA: Final = "1.2.250.1.213.1.4.9"
INS_NIR_TEST: Final = "1.2.250.1.213.1.4.10"
INS_NIR_DEMO: Final = "1.2.250.1.213.1.4.11"
INS_C_OLD: Final = "1.2.250.1.213.1.4.2"  # the old computed INS-C: never an INS

INS_OIDS: Final = frozenset({INS_NIR, INS_NIA, INS_NIR_TEST, INS_NIR_DEMO})
TEST_OIDS: Final = frozenset({INS_NIR_TEST, INS_NIR_DEMO})

# Sex digit -> INS sex trait. 1/2 are the rule; 3/4 and 7/8 are numbers given
# while a registration is under way, with the same odd/even convention.
SEX_BY_DIGIT: Final = {"1": "M", "2": "F", "3": "M", "4": "F", "7": "M", "8": "F"}
# Month digits written when the civil-status record gives no month.
INCOMPLETE_MONTHS: Final = frozenset(range(20, 43)) | {50}


class InsKind(enum.Enum):
    NIR = "NIR"
    NIA = "NIA"


_KINDS: Final = {
    INS_NIR: InsKind.NIR,
    INS_NIR_TEST: InsKind.NIR,
    INS_NIR_DEMO: InsKind.NIR,
    INS_NIA: InsKind.NIA,
}


def ins_kind(oid: str) -> InsKind | None:
    """NIR (.8, test .10, demo .11) or NIA (.9); None for INS-C (.2) and any other OID."""
    return _KINDS.get(oid)


def is_test_oid(oid: str) -> bool:
    """The test (.10) and demo (.11) authorities: fictitious patients only."""
    return oid in TEST_OIDS


def ins_number(matricule: str) -> int | None:
    """The 13-character body as a number (2A -> 19, 2B -> 18), or None if malformed."""
    if len(matricule) != 15:
        return None
    body = matricule[:13].upper()
    if body[5:7] == "2A":
        body = body[:5] + "19" + body[7:]
    elif body[5:7] == "2B":
        body = body[:5] + "18" + body[7:]
    return int(body) if body.isdigit() and body.isascii() else None


def ins_key(number: int) -> int:
    return 97 - (number % 97)


def ins_key_valid(matricule: str) -> bool:
    number = ins_number(matricule)
    key = matricule[13:]
    if number is None or not (key.isdigit() and key.isascii()):
        return False
    return ins_key(number) == int(key)


def with_key(body: str) -> str:
    """The 15-character matricule for a 13-character body (raises ValueError if malformed)."""
    number = ins_number(body + "00")
    if len(body) != 13 or number is None:
        raise ValueError("a matricule body is 13 digits, 2A/2B allowed at positions 6-7")
    return f"{body}{ins_key(number):02d}"


class Mismatch(enum.Enum):
    """Why an INS is refused. Values are stable codes; ``explain`` states the rule only."""

    # The matricule and its authority.
    BAD_LENGTH = "bad-length"
    BAD_CHARACTERS = "bad-characters"
    BAD_KEY = "bad-key"
    BAD_SEX_DIGIT = "bad-sex-digit"
    BAD_MONTH = "bad-month"
    NOT_AN_INS_OID = "not-an-ins-oid"
    INS_C_NOT_AN_INS = "ins-c-not-an-ins"
    # The five traits on their own.
    EMPTY_BIRTH_NAME = "empty-birth-name"
    EMPTY_GIVEN_NAMES = "empty-given-names"
    INVALID_CHARACTER = "invalid-character"
    BAD_BIRTH_DATE = "bad-birth-date"
    BAD_SEX = "bad-sex"
    BAD_BIRTHPLACE = "bad-birthplace"
    MISSING_BIRTHPLACE = "missing-birthplace"
    # The matricule against the traits.
    SEX_MISMATCH = "sex-mismatch"
    BIRTH_YEAR_MISMATCH = "birth-year-mismatch"
    BIRTH_MONTH_MISMATCH = "birth-month-mismatch"
    BIRTHPLACE_MISMATCH = "birthplace-mismatch"
    BORN_ABROAD_MISMATCH = "born-abroad-mismatch"
    BIRTH_COUNTRY_MISMATCH = "birth-country-mismatch"

    @property
    def explain(self) -> str:
        return _EXPLANATIONS[self]


_EXPLANATIONS: Final = {
    Mismatch.BAD_LENGTH: "a matricule INS has 15 characters: a 13-character number and a "
    "2-digit key",
    Mismatch.BAD_CHARACTERS: "a matricule INS has ASCII digits only, except 2A or 2B as the "
    "Corsican département at positions 6-7",
    Mismatch.BAD_KEY: "the key of a matricule INS is 97 - (N mod 97), N the 13-character "
    "number with 2A read as 19 and 2B as 18",
    Mismatch.BAD_SEX_DIGIT: "the first digit of a matricule INS is 1 (male) or 2 (female), "
    "or 3/4 or 7/8 for numbers given while a registration is under way",
    Mismatch.BAD_MONTH: "the month digits of a matricule INS are 01-12, or 20-42 or 50 when "
    "the civil-status record gives no month",
    Mismatch.NOT_AN_INS_OID: "the assigning authority is not an INS OID (1.2.250.1.213.1.4.8 "
    "NIR, .9 NIA, .10 test, .11 demo)",
    Mismatch.INS_C_NOT_AN_INS: "1.2.250.1.213.1.4.2 is the retired computed INS-C, which is "
    "not an INS",
    Mismatch.EMPTY_BIRTH_NAME: "the birth name (nom de naissance) is a required INS trait",
    Mismatch.EMPTY_GIVEN_NAMES: "the birth first names (prénoms de naissance) are a required "
    "INS trait",
    Mismatch.INVALID_CHARACTER: "INS names hold letters A-Z (diacritics removed), space, "
    "hyphen and apostrophe only",
    Mismatch.BAD_BIRTH_DATE: "the INS birth date is YYYYMMDD, with 00 for an unknown month "
    "or day, and must be a real calendar date",
    Mismatch.BAD_SEX: "the INS sex trait is M or F",
    Mismatch.BAD_BIRTHPLACE: "the INS birthplace is a 5-character INSEE COG code: commune "
    "(2A/2B for Corsica) or 99 + country code",
    Mismatch.MISSING_BIRTHPLACE: "the birthplace code is one of the five INS traits and is missing",
    Mismatch.SEX_MISMATCH: "the sex digit of the matricule does not agree with the sex trait",
    Mismatch.BIRTH_YEAR_MISMATCH: "the year digits of the matricule do not agree with the "
    "birth year",
    Mismatch.BIRTH_MONTH_MISMATCH: "the month digits of the matricule do not agree with the "
    "birth month",
    Mismatch.BIRTHPLACE_MISMATCH: "the birthplace digits of the matricule do not agree with "
    "the birthplace code",
    Mismatch.BORN_ABROAD_MISMATCH: "the matricule and the birthplace code disagree on whether "
    "the person was born abroad (99)",
    Mismatch.BIRTH_COUNTRY_MISMATCH: "the country digits of the matricule do not agree with "
    "the country of birth",
}


def _structure(matricule: str) -> Mismatch | None:
    """The first structural fault of a matricule, if any (length, characters, key)."""
    if len(matricule) != 15:
        return Mismatch.BAD_LENGTH
    number = ins_number(matricule)
    key = matricule[13:]
    if number is None or not (key.isdigit() and key.isascii()):
        return Mismatch.BAD_CHARACTERS
    if ins_key(number) != int(key):
        return Mismatch.BAD_KEY
    return None


def check_oid(oid: str) -> list[Mismatch]:
    """[] for an INS authority; the named reason otherwise."""
    if oid == INS_C_OLD:
        return [Mismatch.INS_C_NOT_AN_INS]
    return [] if oid in INS_OIDS else [Mismatch.NOT_AN_INS_OID]


def check_matricule(matricule: str, oid: str) -> list[Mismatch]:
    """[] when the matricule is a well-formed INS under an INS authority.

    The sex digit and the month are checked against the values that exist;
    a length or character fault stops there (nothing else can be read).
    """
    reasons = check_oid(oid)
    fault = _structure(matricule)
    if fault is not None:
        reasons.append(fault)
        if fault is not Mismatch.BAD_KEY:
            return reasons
    if matricule[0] not in SEX_BY_DIGIT:
        reasons.append(Mismatch.BAD_SEX_DIGIT)
    month = int(matricule[3:5])
    if not (1 <= month <= 12 or month in INCOMPLETE_MONTHS):
        reasons.append(Mismatch.BAD_MONTH)
    return reasons
