"""The RNIV identity status life cycle, as one transition table (pure).

Statuses (exigence EXI SI 07, one at a time): PROV provisoire, RECUP
récupérée (INS fetched or verified through INSi), VALI validée (checked
against a high-trust identity document), QUAL qualifiée (both). Only QUAL may
carry the INS toward the DMP or the patient's mailbox.

Events move an identity between statuses; anything not in the table is an
illegal transition and raises, so a bug can never "over-qualify" silently.
A change of traits always drops the identity back to PROV: what was checked
was the old traits ("no trust, no use").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from types import MappingProxyType
from typing import Final


class Status(enum.StrEnum):
    PROV = "PROV"
    RECUP = "RECUP"
    VALI = "VALI"
    QUAL = "QUAL"


class Event(enum.StrEnum):
    INSI_CONFIRMED = "insi-confirmed"  # INSi returned or verified this INS with these traits
    DOCUMENT_CHECKED = "document-checked"  # traits checked against a high-trust ID document
    TRAITS_CHANGED = "traits-changed"  # the traits are not the ones that were checked


class IllegalTransition(ValueError):
    """An event that the RNIV life cycle does not allow from this status."""


P, R, V, Q = Status.PROV, Status.RECUP, Status.VALI, Status.QUAL
INSI, DOC, CHANGED = Event.INSI_CONFIRMED, Event.DOCUMENT_CHECKED, Event.TRAITS_CHANGED

TRANSITIONS: Final = MappingProxyType(
    {
        (P, INSI): R,
        (P, DOC): V,
        (P, CHANGED): P,
        (R, INSI): R,
        (R, DOC): Q,
        (R, CHANGED): P,
        (V, INSI): Q,
        (V, DOC): V,
        (V, CHANGED): P,
        (Q, INSI): Q,
        (Q, DOC): Q,
        (Q, CHANGED): P,
    }
)

#: What a sender's declared status (PID-32) says was done, as events.
DECLARED: Final = MappingProxyType({P: (), R: (INSI,), V: (DOC,), Q: (INSI, DOC)})

#: RNIV attributes that forbid using the INS whatever the status.
BLOCKING_ATTRIBUTES: Final = MappingProxyType(
    {"DOUT": "identity is marked doubtful (DOUT)", "FICT": "identity is fictitious (FICT)"}
)


def transition(status: Status, event: Event) -> Status:
    try:
        return TRANSITIONS[status, event]
    except KeyError:
        raise IllegalTransition(f"{event} is not allowed from {status}") from None


def apply(status: Status, events: Iterable[Event]) -> Status:
    for event in events:
        status = transition(status, event)
    return status


def parse_status(value: str | None) -> Status:
    """A declared status; anything unknown or missing counts as PROV."""
    try:
        return Status(value) if value else P
    except ValueError:
        return P


def with_declared(status: Status, declared: str | None) -> Status:
    """``status`` after what the sender declares it checked."""
    return apply(status, DECLARED[parse_status(declared)])
