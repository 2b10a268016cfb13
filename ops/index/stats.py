"""What each sender sent and each destination did in a time window, from the index (the
console's tables and the per-facility gauges of :mod:`ops.index.metrics`).

A sender's documents are counted by when they were received, and by where they stand now
(an ignored duplicate is counted as received, and as a duplicate);
refusals at the door (dead letters that never got an event id) by when they happened,
under the facility their original names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select

from ops.index.model import DESTINATIONS, DestinationStats, SenderStats
from ops.index.rows import DELIVERED_WORDS
from ops.index.tables import documents, letters, steps, utc


def _window(column: Any, since: datetime, until: datetime | None) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = [column >= utc(since)]
    if until is not None:
        found.append(column < utc(until))
    return found


@dataclass
class _Tally:
    received: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    held: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    waiting: int = 0
    duplicates: int = 0
    last_seen: datetime | None = None

    def seen(self, at: datetime | None) -> None:
        if at is not None:
            at = utc(at)
            self.last_seen = at if self.last_seen is None else max(self.last_seen, at)

    def refuse(self, reason: str, n: int) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + n


def _count_document(tally: _Tally, status: str, reason: str | None, n: int) -> None:
    tally.received += n
    if status in {"held", "blocked"}:
        tally.held += n
    elif status == "delivered":
        tally.delivered += n
    elif status == "dead-lettered":
        tally.dead_lettered += n
        tally.refuse(reason or status, n)
    elif status == "refused":
        tally.refuse(reason or status, n)
    elif status == "duplicate":
        tally.duplicates += n


def senders(conn: Connection, since: datetime, until: datetime | None) -> list[SenderStats]:
    """Each sender's documents received in the window, and its refusals at the door."""
    d, c = documents.c, letters.c
    tallies: dict[str, _Tally] = {}
    by_status = (
        select(d.sender, d.status, d.reason, func.count(), func.max(d.received_at))
        .where(d.sender.is_not(None), *_window(d.received_at, since, until))
        .group_by(d.sender, d.status, d.reason)
    )
    for sender, status, reason, n, newest in conn.execute(by_status):
        tally = tallies.setdefault(sender, _Tally())
        _count_document(tally, status, reason, n)
        tally.seen(newest)
    at_door = (
        select(c.sender, c.reason_code, func.count(), func.max(c.occurred_at))
        .where(c.event_id.is_(None), c.sender.is_not(None), *_window(c.occurred_at, since, until))
        .group_by(c.sender, c.reason_code)
    )
    for sender, reason, n, newest in conn.execute(at_door):
        tally = tallies.setdefault(sender, _Tally())
        tally.refuse(reason, n)
        tally.seen(newest)
    return [
        SenderStats(
            sender=name,
            received=t.received,
            refused=dict(sorted(t.refused.items())),
            held=t.held,
            delivered=t.delivered,
            dead_lettered=t.dead_lettered,
            last_seen=t.last_seen,
            duplicates=t.duplicates,
        )
        for name, t in sorted(tallies.items())
    ]


def _count_word(tally: _Tally, word: str, status: str, reason: str | None, n: int) -> None:
    if word in DELIVERED_WORDS:
        tally.delivered += n
    elif word == "REJECTED":
        tally.refuse(reason if status == "refused" and reason else word, n)
    elif word.startswith("dead-lettered"):
        tally.dead_lettered += n
    else:
        tally.waiting += n


def destinations(
    conn: Connection, since: datetime, until: datetime | None
) -> list[DestinationStats]:
    """Each destination's word on the documents received in the window (the latest word of
    its branch), and when it last did something."""
    d, s = documents.c, steps.c
    tallies: dict[str, _Tally] = {}
    by_words = (
        select(d.destinations, d.status, d.reason, func.count())
        .where(*_window(d.received_at, since, until))
        .group_by(d.destinations, d.status, d.reason)
    )
    for words, status, reason, n in conn.execute(by_words):
        for branch, word in json.loads(words or "{}").items():
            _count_word(tallies.setdefault(branch, _Tally()), word, status, reason, n)
    newest = (
        select(s.branch, func.max(s.at))
        .where(s.branch.in_(DESTINATIONS), *_window(s.at, since, until))
        .group_by(s.branch)
    )
    for branch, at in conn.execute(newest):
        tallies.setdefault(branch, _Tally()).seen(at)
    return [
        DestinationStats(
            destination=name,
            delivered=t.delivered,
            refused=dict(sorted(t.refused.items())),
            waiting=t.waiting,
            dead_lettered=t.dead_lettered,
            last_seen=t.last_seen,
        )
        for name in DESTINATIONS
        if (t := tallies.get(name)) is not None
    ]
