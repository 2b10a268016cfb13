"""The documents held for identity, waiting for their reminder (pure; the clock is passed in).

A document held by the identity stage (``IdentityHeld``) gets its ZAM N "held"
at once; if it is still held ``reminder_s`` after it was held, the sender is
told again ("still held"), once. It stops waiting when the identity stage lets
it go on (its IDENTITY_DECIDED ``qualified:`` audit event, the same event id)
or when it is dead-lettered (rejected by an operator, expired: their own ZAM).
The book lives in the outcomes process's memory: after a restart, the holds
read before it get no reminder (their first ZAM was sent; the hold's expiry
still sends its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from relais.contracts import Record


@dataclass
class HoldBook:
    reminder_s: float
    #: event id -> (the held record, when its reminder is due)
    waiting: dict[str, tuple[Record, datetime]] = field(default_factory=dict)

    def held(self, record: Record) -> None:
        """Remember ``record`` (an ``IdentityHeld``) until its reminder or its release."""
        due = record["held_at"] + timedelta(seconds=self.reminder_s)
        self.waiting.setdefault(record["event_id"], (record, due))

    def gone(self, event_id: str | None) -> None:
        """The document went on (released) or was dead-lettered: no reminder."""
        if event_id is not None:
            self.waiting.pop(event_id, None)

    def due(self, now: datetime) -> list[Record]:
        """The held records whose reminder is due at ``now``; each is given once."""
        ready = [eid for eid, (_, due) in self.waiting.items() if due <= now]
        return [self.waiting.pop(eid)[0] for eid in ready]
