"""Replays the console started and what the stages said of them since (in memory).

A replay's result page reloads itself (``<meta http-equiv=refresh>``) while its record has
no final outcome, for :data:`WAIT_S` seconds at most; each load reads what came on the
outcome topics since the replay (:meth:`ops.dlq.shell.DlqBus.follow`, briefly).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic

from ops.dlq.replay import Outcome, Sent
from relais.topic_reader import Offsets

WAIT_S = 60.0
KEPT = 500  # the latest replays remembered


@dataclass
class Watch:
    """One replay: where its record went, where the outcome topics ended before it."""

    watch_id: str
    dead_letter_id: str
    operator: str
    sent: Sent
    starts: Offsets
    began: float
    outcomes: list[Outcome] = field(default_factory=list)

    def settled(self) -> bool:
        return any(o.final for o in self.outcomes)

    def failed(self) -> bool:
        return any(o.failed for o in self.outcomes)


@dataclass
class Watches:
    wait_s: float = WAIT_S
    clock: Callable[[], float] = monotonic
    #: one replay at a time in this process: the second of two clicks sees the first's audit
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _watches: dict[str, Watch] = field(default_factory=dict)

    def add(self, dead_letter_id: str, operator: str, sent: Sent, starts: Offsets) -> Watch:
        watch = Watch(
            secrets.token_urlsafe(12), dead_letter_id, operator, sent, starts, self.clock()
        )
        self._watches[watch.watch_id] = watch
        while len(self._watches) > KEPT:
            del self._watches[next(iter(self._watches))]
        return watch

    def get(self, watch_id: str) -> Watch | None:
        return self._watches.get(watch_id)

    def state(self, watch: Watch) -> str:
        """``settled``, ``waiting`` (the page reloads) or ``timed-out``."""
        if watch.settled():
            return "settled"
        if self.clock() - watch.began < self.wait_s:
            return "waiting"
        return "timed-out"
