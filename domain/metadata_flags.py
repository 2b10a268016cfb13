"""The producer's MetaDMPMSS flags (STANDARDS.md §2): defaults and the MSSanté combinations.

Pure and shared: the gateway refuses a forbidden combination before its ACK, the route
stage reads the same table when it decides the destinations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "FLAG_DEFAULTS",
    "MSSANTE_COMBINATIONS",
    "effective_flags",
    "mssante_combination_problem",
    "yes_no",
]

#: MetaDMPMSS Y/N flags (STANDARDS.md §2) and their value when the producer left them out:
#: DESTDMP defaults to Y (the volet's default), every other flag to N (also for route.fanout).
FLAG_DEFAULTS: Final[Mapping[str, bool]] = {
    **dict.fromkeys(("MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REP_LEGAUX"), False),
    **dict.fromkeys(("CONNEXION_SECRETE", "MODIF_CONF_CODE", "ACK_RECEPTION"), False),
    **dict.fromkeys(("DESTMSSANTEPS", "DESTMSSANTEPAT", "ACK_LECTURE_MSS"), False),
    "DESTDMP": True,
}


def effective_flags(flags: Mapping[str, bool]) -> dict[str, bool]:
    """Every MetaDMPMSS flag, as given or as :data:`FLAG_DEFAULTS` has it when left out."""
    return {name: flags.get(name, default) for name, default in FLAG_DEFAULTS.items()}


def yes_no(value: bool) -> str:
    return "Y" if value else "N"


#: (DESTMSSANTEPS, DESTMSSANTEPAT) -> required flags: the volet's table (regles-gestion-
#: mssante.md) lists just these, others are errors; MODIF_CONF_CODE, ACK_*: N or Y in each.
MSSANTE_COMBINATIONS: Final[Mapping[tuple[bool, bool], str]] = {
    (True, True): "MASQUE_PS=N INVISIBLE_PATIENT=N INVISIBLE_REP_LEGAUX=N CONNEXION_SECRETE=N",
    (True, False): "INVISIBLE_PATIENT=Y INVISIBLE_REP_LEGAUX=N CONNEXION_SECRETE=N",
    (False, True): "INVISIBLE_PATIENT=N CONNEXION_SECRETE=N DESTDMP=N",
}


def mssante_combination_problem(flags: Mapping[str, bool]) -> str | None:
    """The volet rule that the flags break, or None (also None when no MSSanté is asked)."""
    value = {name: yes_no(flag) for name, flag in effective_flags(flags).items()}
    asked = (value["DESTMSSANTEPS"] == "Y", value["DESTMSSANTEPAT"] == "Y")
    required = MSSANTE_COMBINATIONS.get(asked, "")
    terms = [term.split("=") for term in required.split()]
    if not (broken := [f"{name}={value[name]}" for name, wanted in terms if value[name] != wanted]):
        return None
    whom = zip(("the professionals", "the patient"), asked, strict=True)
    to = " and ".join(who for who, yes in whom if yes)
    return (
        f"MSSanté to {to}{' only' if not all(asked) else ''} (DESTMSSANTEPS="
        f"{value['DESTMSSANTEPS']}, DESTMSSANTEPAT={value['DESTMSSANTEPAT']}) requires "
        f"{required.replace(' ', ', ')}; got {', '.join(broken)} "
        "(volet CDA en HL7v2, règles de gestion MSSanté)"
    )
