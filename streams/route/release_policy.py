"""Release rules: when the patient, professionals and legal representatives may see a document.

Pure and declarative: a :class:`Rule` matches documents (:class:`Match`: type codes, sectors,
CI-SIS model, imaging modality, MetaDMPMSS flags; an empty condition matches all) and imposes an
:class:`Effect`. :func:`decide` runs the rules in order, the most restrictive outcome wins, and
keeps what each applied rule decided and why (:func:`explain`, for ``relais explain``).
:func:`load_policy` reads a policy from TOML (:data:`DEFAULT_POLICY`: ``release_policy.toml``).
A policy must honour the producer's hiding flags and only adds restrictions (no rule requires a
hiding flag to be N), so raising a hiding flag never makes a document more visible. Nuclear
medicine is recognised by the DICOM acquisition modality (``NM``, ``PT``) of the CR-IMG header's
``documentationOf/serviceEvent/code/translation`` (JDV_ModaliteAcquisition-CISIS): every
imaging report has the type 18748-4 and JDV_J07 has no nuclear-medicine type.
"""

from __future__ import annotations

import calendar
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Final

from domain.metadata_flags import (
    FLAG_DEFAULTS,
    effective_flags,
    yes_no,
)

#: The flags that hide a document, and the Effect field that honours each.
HIDING_FLAGS: Final[Mapping[str, str]] = {
    "MASQUE_PS": "hidden_from_professionals",
    "INVISIBLE_PATIENT": "hidden_from_patient",
    "INVISIBLE_REP_LEGAUX": "hidden_from_legal_representatives",
}
SECTORS: Final = frozenset({"HOSPITAL", "LAB", "RADIOLOGY", "CITY", "MSSANTE", "OTHER"})


class PolicyError(ValueError):
    """A release policy that cannot be used; the message says where and why."""


def _listed(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


_UNITS: Final[Mapping[str, tuple[int, int]]] = {  # unit -> (months, days)
    **dict.fromkeys(("y", "year", "years", "an", "ans"), (12, 0)),
    **dict.fromkeys(("mo", "month", "months", "mois"), (1, 0)),
    **dict.fromkeys(("w", "week", "weeks", "semaine", "semaines"), (0, 7)),
    **dict.fromkeys(("d", "day", "days", "j", "jour", "jours"), (0, 1)),
}
_ISO: Final = re.compile(r"P(?=\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?")
_HUMAN: Final = re.compile(r"(?:\s*\d+\s*[a-z]+\s*,?)+")


@dataclass(frozen=True)
class Delay:
    """A delay after validation: calendar months, then days."""

    months: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        if self.months < 0 or self.days < 0:
            raise PolicyError(f"a delay cannot be negative: {self.months} months {self.days} days")

    def after(self, moment: datetime) -> datetime:
        """``moment`` plus this delay; one month after 31 January is the last day of February."""
        year, month0 = divmod(moment.year * 12 + moment.month - 1 + self.months, 12)
        day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
        return moment.replace(year=year, month=month0 + 1, day=day) + timedelta(days=self.days)

    def __str__(self) -> str:
        parts = ((self.months, "month"), (self.days, "day"))
        return " ".join(f"{n} {unit}{'s' * (n > 1)}" for n, unit in parts if n) or "0 days"


def parse_delay(text: str) -> Delay:
    """``"15 days"``, ``"15d"``, ``"15 jours"``, ``"1 month"``, ``"2 weeks"``, ``"P15D"``..."""
    if iso := _ISO.fullmatch(text.strip().upper()):
        years, months, weeks, days = (int(g or 0) for g in iso.groups())
        return Delay(months=12 * years + months, days=7 * weeks + days)
    lowered = text.strip().lower()
    parts = re.findall(r"(\d+)\s*([a-z]+)", lowered) if _HUMAN.fullmatch(lowered) else []
    if not parts or any(unit not in _UNITS for _, unit in parts):
        raise PolicyError(f"bad duration {text!r}: write e.g. '15 days', '1 month' or 'P15D'")
    months = sum(int(n) * _UNITS[unit][0] for n, unit in parts)
    return Delay(months=months, days=sum(int(n) * _UNITS[unit][1] for n, unit in parts))


@dataclass(frozen=True)
class Match:
    """Which documents a rule applies to: every non-empty condition must hold."""

    type_codes: frozenset[str] = frozenset()  # document type (LOINC, JDV_J07)
    sectors: frozenset[str] = frozenset()  # Sector enum symbols
    #: CI-SIS model as the transcode stage names it, or its first words: "CR-IMG" = "CR-IMG N1"/"N3"
    cda_models: frozenset[str] = frozenset()
    modalities: frozenset[str] = frozenset()  # DICOM acquisition modalities: any one of them
    flags: frozenset[tuple[str, bool]] = frozenset()  # (MetaDMPMSS flag, required value)

    def __post_init__(self) -> None:
        names = [name for name, _ in self.flags]
        if sectors := self.sectors - SECTORS:
            raise PolicyError(f"unknown sector {_listed(sectors)}; sectors: {_listed(SECTORS)}")
        if unknown := set(names) - set(FLAG_DEFAULTS):
            raise PolicyError(f"unknown flag {_listed(unknown)}; flags: {_listed(FLAG_DEFAULTS)}")
        if len(set(names)) != len(names):
            raise PolicyError(f"a flag is named twice: {_listed(names)}")
        if off := {name for name, value in self.flags if name in HIDING_FLAGS and not value}:
            raise PolicyError(f"a rule cannot require {_listed(off)}=N: it may only restrict")
        if "" in self.type_codes | self.cda_models | self.modalities:
            raise PolicyError("empty string in a match condition")


@dataclass(frozen=True)
class Effect:
    """What a rule imposes; without a delay, patient visibility is left as it is."""

    patient_visible_after: Delay | None = None
    hidden_from_patient: bool = False
    hidden_from_professionals: bool = False
    hidden_from_legal_representatives: bool = False

    def __post_init__(self) -> None:
        hides = any(getattr(self, field) for field in HIDING_FLAGS.values())
        if self.patient_visible_after is None and not hides:
            raise PolicyError("the effect does nothing: give a delay or hide the document")


@dataclass(frozen=True)
class Rule:
    name: str  # lower-case letters, digits, - and _
    description: str
    applies: Match
    effect: Effect


def check_policy(policy: Iterable[Rule]) -> None:
    """Policy-wide checks: rule names, and each hiding flag honoured by a plain rule."""
    rules = tuple(policy)
    names = [rule.name for rule in rules]
    if wrong := [name for name in names if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name)]:
        raise PolicyError(f"rule name {wrong[0]!r}: use lower-case letters, digits, - and _")
    if twice := {name for name in names if names.count(name) > 1}:
        raise PolicyError(f"rule names must be unique: {_listed(twice)} used twice")
    for flag, hides in HIDING_FLAGS.items():
        plain = Match(flags=frozenset({(flag, True)}))
        if not any(rule.applies == plain and getattr(rule.effect, hides) for rule in rules):
            raise PolicyError(
                f"the policy must honour {flag}: add a rule whose only condition is "
                f"flags = {{ {flag} = true }} and whose effect sets {hides} = true"
            )


#: Match's set-valued conditions, and how an explanation names each.
_CONDITIONS: Final = {
    "type_codes": "type code",
    "sectors": "sector",
    "cda_models": "CDA model",
    "modalities": "modality",
}
_FIELDS: Final[Mapping[str, Mapping[str, type[Any]]]] = {
    "[[rule]]": {"name": str, "description": str, "match": dict, "effect": dict},
    "[rule.match]": dict.fromkeys(_CONDITIONS, list) | {"flags": dict},
    "[rule.effect]": {"patient_visible_after": str} | dict.fromkeys(HIDING_FLAGS.values(), bool),
}
_KINDS: Final = {str: "a string", dict: "a table", list: "a list of strings", bool: "true|false"}


def _fields(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The fields of ``table``, checked against _FIELDS[where]: names, then types."""
    expected = _FIELDS[where]
    if bad := set(table) - set(expected):
        raise PolicyError(f"unknown field {_listed(bad)} in {where}; expected {_listed(expected)}")
    for key, value in table.items():
        kind = expected[key]
        if not isinstance(value, kind) or (kind is list and any(type(v) is not str for v in value)):
            raise PolicyError(f"{key} in {where} must be {_KINDS[kind]}")
    return dict(table)


def _rule(index: int, raw: Any) -> Rule:
    name = raw.get("name") if isinstance(raw, dict) else None
    where = f"rule {index} ({name})" if isinstance(name, str) else f"rule {index}"
    try:
        if not isinstance(raw, dict):
            raise PolicyError("must be a [[rule]] table")
        fields = _fields(raw, "[[rule]]")
        if missing := set(_FIELDS["[[rule]]"]) - set(fields):
            raise PolicyError(f"missing {_listed(missing)} ([rule.match] empty: every document)")
        match = _fields(fields["match"], "[rule.match]")
        flags = match.pop("flags", {})
        if any(type(value) is not bool for value in flags.values()):
            raise PolicyError("flags in [rule.match] must be a table of FLAG = true|false")
        effect = _fields(fields["effect"], "[rule.effect]")
        delay = effect.pop("patient_visible_after", None)
        return Rule(
            fields["name"],
            fields["description"],
            Match(**{k: frozenset(v) for k, v in match.items()}, flags=frozenset(flags.items())),
            Effect(None if delay is None else parse_delay(delay), **effect),
        )
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def load_policy(text: str) -> tuple[Rule, ...]:
    """Read a policy written as TOML ``[[rule]]`` tables, in evaluation order."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"the policy is not valid TOML: {exc}") from None
    if set(data) != {"rule"} or not isinstance(data["rule"], list):
        raise PolicyError("a policy is a list of [[rule]] tables and nothing else")
    rules = tuple(_rule(index, raw) for index, raw in enumerate(data["rule"], 1))
    check_policy(rules)
    return rules


#: The bundled policy (``release_policy.toml``): what the route stage applies unless
#: RELAIS_RELEASE_POLICY names the operators' own.
DEFAULT_POLICY: Final[tuple[Rule, ...]] = load_policy(
    resources.files("streams.route").joinpath("release_policy.toml").read_text(encoding="utf-8")
)


@dataclass(frozen=True)
class Explanation:
    rule: str
    decided: str  # what the rule imposed
    because: str  # which of its conditions the document met


@dataclass(frozen=True)
class Decision:
    validated_at: datetime
    patient_visible_from: datetime | None  # None: never visible to the patient
    hidden_from_professionals: bool
    hidden_from_legal_representatives: bool
    rules: tuple[Explanation, ...]  # every rule that applied, in policy order

    def visible_to_patient(self, at: datetime) -> bool:
        """Whether the patient may see the document at ``at`` (its embargo has passed)."""
        return self.patient_visible_from is not None and at >= self.patient_visible_from


def _why(
    match: Match, facts: Mapping[str, frozenset[str]], flags: Mapping[str, bool]
) -> str | None:
    """Why ``match`` holds for the document, or None when it does not."""
    reasons: list[str] = []
    for key, label in _CONDITIONS.items():
        wanted: frozenset[str] = getattr(match, key)
        if wanted and not wanted & facts[key]:
            return None
        if wanted:
            reasons.append(f"{label} {_listed(wanted & facts[key])} is one of [{_listed(wanted)}]")
    for name, value in sorted(match.flags):
        if flags[name] != value:
            return None
        reasons.append(f"flag {name}={yes_no(value)}")
    return " and ".join(reasons) or "the rule applies to every document"


def _decided(effect: Effect, validated_at: datetime) -> str:
    what = [
        text
        for hides, text in (
            (effect.hidden_from_patient, "never visible to the patient"),
            (effect.hidden_from_professionals, "hidden from professionals"),
            (effect.hidden_from_legal_representatives, "hidden from legal representatives"),
        )
        if hides
    ]
    if (delay := effect.patient_visible_after) is not None:
        at = delay.after(validated_at).isoformat()
        what.insert(0, f"visible to the patient from {at} ({delay} after validation)")
    return "; ".join(what)


def decide(
    policy: Iterable[Rule],
    *,
    type_code: str,
    sector: str,
    flags: Mapping[str, bool],
    validated_at: datetime,
    cda_model: str | None = None,
    modalities: Iterable[str] = (),
) -> Decision:
    """Run the rules in order; the latest visibility date and any hiding win. Absent flags
    take FLAG_DEFAULTS; ``modalities`` are the DICOM modalities of an imaging report."""
    if validated_at.utcoffset() is None:
        raise ValueError("validated_at must be timezone-aware")
    words = (cda_model or "").split()
    facts = {
        "type_codes": frozenset({type_code}),
        "sectors": frozenset({sector}),
        "cda_models": frozenset(" ".join(words[:i]) for i in range(1, len(words) + 1)),
        "modalities": frozenset(modalities),
    }
    effective = effective_flags(flags)
    visible_from: datetime | None = validated_at
    hide_ps = hide_legal = False
    applied: list[Explanation] = []
    for rule in policy:
        if (because := _why(rule.applies, facts, effective)) is None:
            continue
        effect = rule.effect
        if effect.patient_visible_after is not None and visible_from is not None:
            visible_from = max(visible_from, effect.patient_visible_after.after(validated_at))
        if effect.hidden_from_patient:
            visible_from = None
        hide_ps = hide_ps or effect.hidden_from_professionals
        hide_legal = hide_legal or effect.hidden_from_legal_representatives
        applied.append(Explanation(rule.name, _decided(effect, validated_at), because))
    return Decision(validated_at, visible_from, hide_ps, hide_legal, tuple(applied))


def explain(decision: Decision) -> str:
    """One line per rule that applied, in order, then the outcome."""
    lines = [f"rule {e.rule}: {e.decided} because {e.because}" for e in decision.rules]
    patient = "never visible to the patient"
    if (when := decision.patient_visible_from) is not None:
        on = " (on validation)" if when == decision.validated_at else ""
        patient = f"visible to the patient from {when.isoformat()}{on}"
    ps = "hidden from" if decision.hidden_from_professionals else "visible to"
    legal = "hidden from" if decision.hidden_from_legal_representatives else "visible to"
    outcome = f"outcome: {patient}; {ps} professionals; {legal} legal representatives"
    return "\n".join([*(lines or ["no rule applied: nothing restricts this document"]), outcome])
