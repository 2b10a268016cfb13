"""Per-patient rate limit (pure): at most ``limit`` notifications in any ``window_s``.

A sliding window over the times the patient was actually notified (the ledger's
``SENT`` entries, so it survives restarts). When the window is full, nothing is
dropped: the documents wait until the oldest notification of the window ages out,
and everything that waited is then told in one message ("3 nouveaux documents").
A lab sending ten results in an hour therefore costs the patient ``limit`` messages
at most, and every document is still announced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RateLimit:
    limit: int = 3
    window_s: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.limit < 1 or not self.window_s > 0:
            raise ValueError(
                "a notification rate limit needs at least 1 notification per window of more "
                "than 0 s (RELAIS_NOTIFY_RATE_LIMIT, RELAIS_NOTIFY_RATE_WINDOW_S)"
            )

    def next_allowed(self, sent: Iterable[datetime], now: datetime) -> datetime | None:
        """None if a notification may go at ``now``; else the first time one may."""
        recent = self.recent(sent, now)
        if len(recent) < self.limit:
            return None
        # The window holds `limit` or more: wait until enough of them age out.
        return recent[len(recent) - self.limit] + timedelta(seconds=self.window_s)

    def recent(self, sent: Iterable[datetime], now: datetime) -> list[datetime]:
        """The sending times still inside the window (what the limiter must remember).

        A time ahead of ``now`` (another worker's clock) counts as inside the window.
        """
        window = timedelta(seconds=self.window_s)
        return sorted(t for t in sent if t > now - window)
