"""Adapters between the identity rules and the INS core / INSi client.

The rules work on the traits dict decrypted from a record; these functions turn it
into the typed inputs of :mod:`domain.ins_traits` and
:mod:`streams.identity.insi_client`, and INSi's answers into an :class:`InsiOutcome`.

INSi has one operation, the récupération by traits. A *récupération* that answers
``02`` (several identities) is tried again as the teleservice's guide says: with
every birth first name, then also with the birthplace COG (:func:`narrowings`, at
most three calls). A *verification* of a held INS is a récupération with the held
traits, then a comparison of INSi's identity with what the sender holds: matricule,
OID and the five traits (:func:`differences`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from domain.ins_traits import Traits, check_consistency
from streams.identity.insi_client import Insi, Operation
from streams.identity.insi_messages import (
    InsiAnswer,
    InsiIdentity,
    InsiRejected,
    InsiTraits,
    InsiUnavailable,
    normalised,
)
from streams.identity.processor import InsiVerifier
from streams.identity.rules import InsiOutcome

#: What a narrowing after a ``02`` adds: every birth first name, then the birthplace.
NARROWINGS: Final = ("first-names", "birthplace")
#: Verification outcomes (a metric label): agree, unknown, several, disagree.
VERIFY_OUTCOMES: Final = {"00": "agree", "01": "unknown", "02": "several", "mismatch": "disagree"}


class StepObserver(Protocol):
    """Told of each narrowing and of each verification's outcome (metrics)."""

    def narrowed(self, operation: str, narrowing: str) -> None: ...

    def verified(self, outcome: str) -> None: ...


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


def narrowings(traits: InsiTraits) -> list[tuple[str | None, InsiTraits]]:
    """The récupérations to try in turn while INSi answers ``02``.

    First the birth name, the first birth first name, the sex and the birth date; then
    every birth first name; then the birthplace COG too. A step that would send the
    same request again is left out.
    """
    traits = normalised(traits)
    names = traits.given_names.split()
    first = InsiTraits(traits.birth_name, " ".join(names[:1]), traits.birth_date, traits.sex)
    every = InsiTraits(traits.birth_name, " ".join(names), traits.birth_date, traits.sex)
    placed = InsiTraits(
        every.birth_name, every.given_names, every.birth_date, every.sex, traits.birthplace_code
    )
    steps: list[tuple[str | None, InsiTraits]] = [(None, first)]
    for narrowing, step in zip(NARROWINGS, (every, placed), strict=True):
        if step != steps[-1][1]:
            steps.append((narrowing, step))
    return steps


async def retrieve(
    client: Insi,
    traits: InsiTraits,
    *,
    operation: Operation = "search",
    observer: StepObserver | None = None,
) -> InsiAnswer:
    """Récupération by traits, narrowed after each ``02`` (see :func:`narrowings`)."""
    answer = InsiAnswer("01")
    for narrowing, step in narrowings(traits):
        if narrowing is not None and observer is not None:
            observer.narrowed(operation, narrowing)
        answer = await client.retrieve(step, operation=operation)
        if answer.code != "02":
            return answer
    return answer


def differences(ins: str, oid: str, held: InsiTraits, found: InsiIdentity) -> list[str]:
    """What differs between the held INS and traits and INSi's identity ([] when all agree).

    Both sides' traits compare once normalised by the national rules
    (:func:`~streams.identity.insi_messages.normalised`, :mod:`domain.ins_traits`): names,
    birth date, sex and COG; the birth first names compare as the whole list, in order.
    A name INSi returns outside the rules differs.
    """
    mine = normalised(held)
    try:
        theirs = normalised(found.traits)
    except InsiRejected:
        theirs = InsiTraits("", "", "", "", None)
    pairs = {
        "ins": (ins.upper(), found.ins.upper()),
        "oid": (oid, found.oid),
        "birth_name": (mine.birth_name, theirs.birth_name),
        "given_names": (mine.given_names, theirs.given_names),
        "birth_date": (mine.birth_date, theirs.birth_date),
        "sex": (mine.sex, theirs.sex),
        "birthplace_code": (mine.birthplace_code or "", theirs.birthplace_code or ""),
    }
    return [name for name, (a, b) in pairs.items() if a != b]


def insi_verifier(client: Insi, *, observer: StepObserver | None = None) -> InsiVerifier:
    """Verify the held INS with INSi; outages become "unavailable", never an exception.

    ``00``: INSi finds exactly the held INS and traits; ``mismatch``: it finds an
    identity that differs; ``01`` / ``02``: none / several even after narrowing.
    """

    async def verify(traits: Mapping[str, Any]) -> InsiOutcome:
        outcome = await _verify(client, traits, observer)
        if observer is not None and outcome.code in VERIFY_OUTCOMES:
            observer.verified(VERIFY_OUTCOMES[outcome.code])
        return outcome

    return verify


async def _verify(
    client: Insi, traits: Mapping[str, Any], observer: StepObserver | None
) -> InsiOutcome:
    t = traits_of(traits)
    held = InsiTraits(t.birth_name, t.given_names, t.birth_date, t.sex, t.birthplace_code)
    try:
        answer = await retrieve(client, held, operation="verify", observer=observer)
    except InsiUnavailable:
        return InsiOutcome("unavailable")
    except InsiRejected:
        return InsiOutcome("rejected")
    if answer.code != "00":
        return InsiOutcome(answer.code)
    found = differences(str(traits["ins"]), str(traits["ins_oid"]), held, answer.identities[0])
    return InsiOutcome("mismatch" if found else "00")
