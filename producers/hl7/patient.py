"""The patient of an inbound HL7 v2 message: PID read into a :class:`PatientIdentity` (pure).

PID-3 holds the INS (CX.5 ``INS``/``NH``, checked: 15 characters, a valid key, CX.4.2 an
INS OID) and the local identifiers, each with its assigning authority; PID-5 the birth
name (name type ``L``) and the given names as PAM FR writes them; PID-7, PID-8 and PID-11
(``BDL``) the other INS traits; PID-32 the identity status and the RNIV attributes.
Error messages name fields, never their patient data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from domain.ins import INS_OIDS, ins_key_valid
from producers.hl7.segments import Segment, component

STATUSES: Final = frozenset({"PROV", "RECUP", "VALI", "QUAL"})
ATTRIBUTES: Final = frozenset({"DOUT", "FICT", "HOMD", "HOMA"})
_INS_RE: Final = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{8}")


@dataclass(frozen=True)
class PatientIdentity:
    """PID: INS (CX.5 INS/NH) + OID, other PID-3 ids, the 5 INS traits, PID-32 status."""

    ins: str | None
    ins_oid: str | None
    local_ids: tuple[tuple[str, str], ...]
    birth_name: str
    given_names: str
    birth_date: str
    sex: str
    birthplace_code: str | None
    reliability: str | None
    attributes: tuple[str, ...] = ()  # PID-32 repetitions of table 0445: DOUT, FICT, HOMD, HOMA


def read_patient(pid: Segment, *, strict: bool) -> PatientIdentity:
    """The identity PID gives; ``strict`` (documents) requires identifiers and a birth name."""
    ins, ins_oid, local_ids = _identifiers(pid)
    if strict and ins is None and not local_ids:
        raise pid.error(3, "PID-3 must hold the patient identifiers (INS and/or IPP)", "101")
    family, given = _birth_name(pid)
    if strict and not family:
        raise pid.error(5, "PID-5 must hold the birth name (name type code L)", "101")
    birthplaces = [rep for rep in pid.reps(11) if component(rep, 7) == "BDL"]
    return PatientIdentity(
        ins=ins,
        ins_oid=ins_oid,
        local_ids=local_ids,
        birth_name=family,
        given_names=given,
        birth_date=pid.get(7),
        sex=pid.get(8),
        birthplace_code=(component(birthplaces[0], 9) or None) if birthplaces else None,
        reliability=next((r for r in _reps(pid, 32) if r in STATUSES), None),
        attributes=tuple(r for r in _reps(pid, 32) if r in ATTRIBUTES),
    )


def _reps(segment: Segment, field: int) -> list[str]:
    """The values of a repeated simple field (PID-32: a status plus RNIV attributes)."""
    return [component(rep, 1).upper() for rep in segment.reps(field) if component(rep, 1)]


def _identifiers(pid: Segment) -> tuple[str | None, str | None, tuple[tuple[str, str], ...]]:
    ins: str | None = None
    oid: str | None = None
    local: list[tuple[str, str]] = []
    for rep in pid.reps(3):
        value = component(rep, 1)
        if value and ins is None and component(rep, 5).upper() in ("INS", "NH"):
            ins, oid = value, component(rep, 4, 2) or None
        elif value:
            authority = component(rep, 4, 1) or component(rep, 4, 2)
            if not authority:  # an IPP means nothing without the structure that assigned it
                raise pid.error(3, "a local identifier in PID-3 needs its authority in CX.4", "101")
            local.append((value, authority))
    if ins is not None and not (_INS_RE.fullmatch(ins) and ins_key_valid(ins)):
        raise pid.error(3, "the INS in PID-3 must be 15 characters with a valid key", "102")
    if ins is not None and oid not in INS_OIDS:
        raise pid.error(
            3, "the INS in PID-3 needs CX.4.2 = an INS OID (1.2.250.1.213.1.4.8/9/10/11)", "103"
        )
    return ins, oid, tuple(local)


def _birth_name(pid: Segment) -> tuple[str, str]:
    reps = pid.reps(5)
    chosen = next((r for r in reps if component(r, 7) == "L"), None)
    chosen = chosen or next((r for r in reps if not component(r, 7)), None)
    if chosen is None:
        return "", ""
    return component(chosen, 1), _given_names(component(chosen, 2), component(chosen, 3))


def _given_names(first: str, others: str) -> str:
    """PAM FR puts the first birth first name in PID-5.2 and all of them in PID-5.3."""
    words = others.split()
    if first and (not words or words[0] != first):
        words.insert(0, first)
    return " ".join(words)
