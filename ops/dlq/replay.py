"""Replaying dead letters (pure): what to send back where, the memory of it, what came of it.

A dead letter's original goes back to the topic it was read from
(``source_topic``), to the same partition with its original record key (the
dead letter's own record key: every stage dead-letters under the key of the
record that failed), so the stage — and its per-partition state, the sink's
delivery ledger — sees it as it first did. Records that never came from a
topic (an HL7 message refused at the MLLP gateway, a mail quarantined by the
mailbox watcher) cannot be sent back: the sender must send them again.

Each replay leaves an ``AuditEvent`` (component ``dlq``, action ``REPLAYED``)
that names the dead letter, the place the original went back to, and who
replayed it: that is the memory that refuses a second replay of the same dead
letter unless the operator says ``--again``. A second replay is harmless
anyway — the identity stage processes the same event again and the sinks'
ledgers do not deliver twice — but it is never done by accident.

After a replay, :func:`outcomes_of` reads what the stages said about each
replayed record: delivered, held, ignored as a duplicate, or dead-lettered again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ops.dlq.letters import LetterView, when
from relais.audit import audit_event
from relais.contracts import Record
from relais.deadletter import derived_id

COMPONENT = "dlq"
ACTION = "REPLAYED"
_FIRST = re.compile(r"^dead-letter (\S+)$")
_WHERE = re.compile(r"^sent back to (\S+) partition (\d+) offset (\d+)$")
_BY = re.compile(r"^by (.+)$")


@dataclass(frozen=True)
class Replay:
    """An earlier replay of one dead letter, as the audit remembers it."""

    dead_letter_id: str
    at: datetime
    topic: str
    partition: int
    offset: int
    by: str

    def line(self) -> str:
        return (
            f"{when(self.at)} by {self.by}: to {self.topic} "
            f"partition {self.partition} offset {self.offset}"
        )


@dataclass(frozen=True)
class Planned:
    """One selected dead letter: where it goes back to, or why it does not."""

    view: LetterView
    topic: str | None = None
    partition: int | None = None
    skip: str | None = None


@dataclass(frozen=True)
class Sent:
    """A dead letter's original, back on its topic."""

    dead_letter_id: str
    event_id: str | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Outcome:
    """What a stage said about a replayed record."""

    text: str
    failed: bool = False
    final: bool = True


def replays_of(audits: Iterable[Record]) -> dict[str, list[Replay]]:
    """Earlier replays by dead-letter id, oldest first, read from ``REPLAYED`` audit events."""
    found: dict[str, list[Replay]] = {}
    for audit in audits:
        if audit["component"] != COMPONENT or audit["action"] != ACTION:
            continue
        replay = _parse(audit)
        if replay is not None:
            found.setdefault(replay.dead_letter_id, []).append(replay)
    for replays in found.values():
        replays.sort(key=lambda r: r.at)
    return found


def _parse(audit: Record) -> Replay | None:
    lines = (audit["detail"] or "").splitlines()
    first = _FIRST.match(lines[0]) if lines else None
    where = next((m for m in map(_WHERE.match, lines) if m), None)
    by = next((m for m in map(_BY.match, lines) if m), None)
    if first is None or where is None:
        return None
    return Replay(
        dead_letter_id=first.group(1),
        at=audit["at"],
        topic=where.group(1),
        partition=int(where.group(2)),
        offset=int(where.group(3)),
        by=by.group(1) if by else "?",
    )


def plan(
    views: Sequence[LetterView],
    replays: Mapping[str, Sequence[Replay]],
    *,
    topics: Iterable[str],
    again: bool = False,
) -> list[Planned]:
    """Where each view's original goes back to, or the reason it is not sent.

    ``topics`` are the bus's topic names: an origin outside them was no topic.
    """
    known = set(topics)
    planned: list[Planned] = []
    for view in views:
        earlier = replays.get(view.dead_letter_id, ())
        skip: str | None = None
        if view.source_topic not in known:
            skip = (
                f"it came from {view.source_topic}, not from a topic of the bus: it cannot be "
                "sent back; ask the sender to send it again"
            )
        elif view.original is None:
            skip = (
                f"its original cannot be opened ({view.problem}): "
                "give this command a keyring that holds the key"
            )
        elif earlier and not again:
            skip = (
                f"already replayed {len(earlier)} time(s), last {earlier[-1].line()}; "
                "--again sends it once more (the sinks will not deliver twice)"
            )
        if skip is not None:
            planned.append(Planned(view, skip=skip))
        else:
            planned.append(Planned(view, topic=view.source_topic, partition=view.source_partition))
    return planned


def replay_audit(view: LetterView, sent: Sent, *, by: str, nth: int, now: datetime) -> Record:
    """The ``REPLAYED`` audit event of one replay (``nth``: 1 for the first replay)."""
    record = audit_event(
        event_id=view.event_id or view.dead_letter_id,
        component=COMPONENT,
        action=ACTION,
        outcome=f"sent-back:{sent.topic}",
        now=now,
        document_unique_id=view.document_unique_id,
        operator=by,
        detail="\n".join(
            [
                f"dead-letter {view.dead_letter_id}",
                f"stage {view.stage}, reason {view.reason_code}",
                f"sent back to {sent.topic} partition {sent.partition} offset {sent.offset}",
                f"by {by}",
            ]
        ),
    )
    return {**record, "audit_id": derived_id("replay", view.dead_letter_id, nth)}


def outcomes_of(sent: Sent, later: Iterable[tuple[str, Record]]) -> list[Outcome]:
    """What the stages said, after the replay, about the record ``sent`` put back."""
    found: list[Outcome] = []
    for record_type, record in later:
        outcome = _outcome(sent, record_type, record)
        if outcome is not None and outcome not in found:
            found.append(outcome)
    return found


def _outcome(sent: Sent, record_type: str, record: Record) -> Outcome | None:  # noqa: PLR0911
    same_event = sent.event_id is not None and record.get("event_id") == sent.event_id
    if record_type == "DeadLetter":
        same_place = (record["source_topic"], record["source_partition"], record["source_offset"])
        if same_event or same_place == (sent.topic, sent.partition, sent.offset):
            return Outcome(
                f"dead-lettered again by {record['stage']}: {record['reason_code']}", failed=True
            )
        return None
    if not same_event:
        return None
    if record_type == "DeliveryStatus":
        if record["outcome"] == "RETRYING":
            return Outcome(f"{record['destination']} retrying", final=False)
        again = (record["detail"] or "").startswith("already done")
        note = " (already done before: not sent again)" if again else ""
        failed = record["outcome"] == "REJECTED"
        return Outcome(f"{record['destination']} {record['outcome'].lower()}{note}", failed=failed)
    if record_type == "IdentityHeld":
        return Outcome(f"held by identity: {record['reason_code']}")
    if record_type == "AuditEvent" and record["action"] == "DUPLICATE_IGNORED":
        return Outcome(f"ignored as a duplicate ({record['outcome']})")
    return None


def settled(sent: Sequence[Sent], later: Sequence[tuple[str, Record]]) -> bool:
    """Whether every replayed record has a final outcome."""
    return all(any(o.final for o in outcomes_of(s, later)) for s in sent)
