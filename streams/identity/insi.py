"""Adapters between the identity rules and the INS core / INSi client.

The rules work on the traits dict decrypted from a record; these functions
turn it into the typed inputs of :mod:`domain.ins_traits` and
:mod:`streams.identity.insi_client`, and INSi's answers into an :class:`InsiOutcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.ins_traits import Traits, check_consistency
from streams.identity.insi_client import Insi
from streams.identity.insi_messages import InsiRejected, InsiTraits, InsiUnavailable
from streams.identity.processor import InsiVerifier
from streams.identity.rules import InsiOutcome

#: INSi verification codes -> what the rules understand ("03": known, other traits).
VERIFY_CODES = {"00": "00", "01": "01", "02": "02", "03": "mismatch"}


def traits_of(traits: Mapping[str, Any]) -> Traits:
    return Traits(
        birth_name=str(traits.get("birth_name") or ""),
        given_names=str(traits.get("given_names") or ""),
        birth_date=str(traits.get("birth_date") or ""),
        sex=str(traits.get("sex") or ""),
        birthplace_code=traits.get("birthplace_code") or None,
    )


def consistency_problems(traits: Mapping[str, Any]) -> list[str]:
    """Named reasons why the INS and the traits disagree ([] when they agree)."""
    found = check_consistency(str(traits["ins"]), str(traits["ins_oid"]), traits_of(traits))
    return [m.value for m in found]


def insi_verifier(client: Insi) -> InsiVerifier:
    """Verify the held INS with INSi; outages become "unavailable", never an exception."""

    async def verify(traits: Mapping[str, Any]) -> InsiOutcome:
        t = traits_of(traits)
        sent = InsiTraits(t.birth_name, t.given_names, t.birth_date, t.sex, t.birthplace_code)
        try:
            answer = await client.verify(str(traits["ins"]), str(traits["ins_oid"]), sent)
        except InsiUnavailable:
            return InsiOutcome("unavailable")
        except InsiRejected:
            return InsiOutcome("rejected")
        return InsiOutcome(VERIFY_CODES.get(answer.code, "unavailable"))

    return verify
