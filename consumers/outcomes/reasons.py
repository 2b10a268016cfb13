"""What a ZAM N says for each reason a document will not reach a destination (pure).

ERR-5 is ``<reason code>^<label>^99RELAIS``: the volet's ZAM tables list the
destination's own answers (``DMPERRORCODE`` for the DMP, ``SMTPERRORCODE`` for
MSSanté), and a document stopped inside Relais never met its destination, so
no code of theirs fits. Relais's dead-letter reason code is the code — the
same word the operator sees in ``relais dlq`` and in the metrics — in a local
table (HL7 names local tables ``99zzz``). ERR-8 says what the sender can do, in
ASCII, with codes and ids only (never patient data). :data:`REASONS` is the
table docs/outcomes.md shows; a reason not in it gets :func:`explain`'s
default, which names the stage and the dead letter for the operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

#: ERR-5.3: Relais's own reason codes (an HL7 local table)
TABLE: Final = "99RELAIS"

_IDENTITY_FIX: Final = (
    "send an ADT update (A08/A31) with the qualified INS and traits (PID-32 VALI/QUAL), or "
    "ask the identity officer to release the document (relais identity release)"
)


@dataclass(frozen=True)
class Explanation:
    """ERR-5 code and label, ERR-8 text, ERR-4 severity (W: it may still be delivered)."""

    code: str
    label: str
    text: str
    severity: str = "E"


REASONS: Final = MappingProxyType(
    {
        "identity-held": Explanation(
            "identity-held",
            "Document en attente d'identite qualifiee",
            f"held, not delivered yet: the patient identity is not qualified; {_IDENTITY_FIX}",
            "W",
        ),
        "identity-still-held": Explanation(
            "identity-still-held",
            "Document toujours en attente d'identite qualifiee",
            f"still held, not delivered: the patient identity is not qualified; {_IDENTITY_FIX}; "
            "it is refused when the hold expires",
            "W",
        ),
        "identity-rejected": Explanation(
            "identity-rejected",
            "Refuse par l'identitovigilance",
            "refused by the identity officer (identitovigilance): the identity sent does not "
            "match the patient; correct the identity in your system, then send the document again",
        ),
        "identity-expired": Explanation(
            "identity-expired",
            "Attente d'identite expiree",
            "refused: the patient identity was not qualified before the hold expired; qualify "
            "the INS (INSi + identity document), then send the document again",
        ),
        "cda-ins-mismatch": Explanation(
            "cda-ins-mismatch",
            "INS du CDA different de PID-3",
            "refused: the CDA recordTarget INS is not the INS of PID-3; one message carries one "
            "patient: fix the CDA or the PID and send again",
        ),
        "pdf-not-wrappable": Explanation(
            "pdf-not-wrappable",
            "PDF non transformable en CDA",
            "refused: a PDF becomes a CDA N1 only with its sending professional and organisation "
            "(PRT SB with PRT-5 and PRT-8); add them and send again",
        ),
        "cda-not-well-formed": Explanation(
            "cda-not-well-formed",
            "CDA mal forme",
            "refused: the CDA is not well-formed XML; fix the document and send again",
        ),
        "cda-schema-invalid": Explanation(
            "cda-schema-invalid",
            "CDA non conforme au schema CDA R2",
            "refused: the CDA breaks the CDA R2 schema; validate it and send again",
        ),
        "cda-header-invalid": Explanation(
            "cda-header-invalid",
            "En-tete CDA non conforme CI-SIS",
            "refused: the CDA header breaks the CI-SIS rules; fix it and send again",
        ),
        "invalid-flag-combination": Explanation(
            "invalid-flag-combination",
            "Combinaison MetaDMPMSS interdite",
            "refused: this MetaDMPMSS flag combination is forbidden by the volet; fix the flags "
            "and send again",
        ),
        "recipients-unreadable": Explanation(
            "recipients-unreadable",
            "Destinataires MSSante illisibles",
            "not mailed: the MSSante recipients (PRT RCT) could not be read; fix them and send "
            "again",
        ),
        "mss-bad-address": Explanation(
            "mss-bad-address",
            "Adresse MSSante invalide",
            "not mailed: a recipient address is not a valid MSSante address; fix PRT-15 and "
            "send again",
        ),
        "smtp-rejected": Explanation(
            "smtp-rejected",
            "Refuse par l'operateur MSSante",
            "not mailed: the MSSante operator refused the mail; check the recipient address",
        ),
    }
)


def explain(
    reason_code: str, stage: str, dead_letter_id: str | None = None, reason: str | None = None
) -> Explanation:
    """The ERR fields for ``reason_code``; another reason names its code, the stage and the
    dead letter for the operator. The dead letter's own sentence stays with the operator: a
    stage may quote a third party (a DPI's error label) that must not travel back."""
    known = REASONS.get(reason_code)
    if known is not None:
        return known
    del reason  # kept in the signature for callers; never sent to the hospital
    where = f", dead letter {dead_letter_id}" if dead_letter_id else ""
    return Explanation(
        reason_code,
        "Erreur de traitement apres acceptation",
        f"not delivered (Relais stage {stage}, {reason_code}{where}); fix and send again, "
        "or give the dead letter id to the Relais operator",
    )
