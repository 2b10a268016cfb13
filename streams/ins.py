"""INS arithmetic and assigning authorities (pure).

The matricule INS is a NIR or NIA: 13 characters and a 2-digit key,
key = 97 - (N mod 97), with Corsica's département 2A read as 19 and 2B as 18.
Which of NIR or NIA it is comes from the OID, not from the digits.
"""

from __future__ import annotations

from typing import Final

INS_NIR: Final = "1.2.250.1.213.1.4.8"
INS_NIA: Final = "1.2.250.1.213.1.4.9"
INS_NIR_TEST: Final = "1.2.250.1.213.1.4.10"
INS_NIR_DEMO: Final = "1.2.250.1.213.1.4.11"
INS_C_OLD: Final = "1.2.250.1.213.1.4.2"  # the old computed INS-C: never an INS

INS_OIDS: Final = frozenset({INS_NIR, INS_NIA, INS_NIR_TEST, INS_NIR_DEMO})


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
