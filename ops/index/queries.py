"""What the index answers about documents and dead letters: searches, one document, its
journey, dead letters (the reading half of :class:`ops.index.store.IndexStore`).

Each query uses an index of :mod:`ops.index.tables`; searches page by keyset (the
``(received_at, event_id)`` of the last hit), newest first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    tuple_,
)

from ops.dlq.letters import LetterView
from ops.index.model import DocumentRow, LetterRow, LetterSearch, Search
from ops.index.tables import document_destinations, documents, letters, replays, steps, utc
from ops.trace.journey import Journey, Step, arrange

#: a whole patient key (hex HMAC-SHA256) is matched by equality: PostgreSQL misjudges a LIKE
#: on a whole key for some keys and scans the table (seen in benchmarks.index_lookup)
KEY_LENGTH = 64
PREFIX_MIN = 8  # a patient key prefix this long or longer matches every key it starts
_LETTER_PREFIX_MIN = 8


def bind(name: str) -> BindParameter[Any]:
    return bindparam(name)


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


# -- documents -----------------------------------------------------------------------------------
def _filters(q: Search) -> list[ColumnElement[bool]]:
    d = documents.c
    found: list[ColumnElement[bool]] = []
    exact = (
        (d.sender, q.sender),
        (d.message_control_id, q.message_control_id),
        (d.type_code, q.type_code),
        (d.status, q.status),
    )
    found += [column == value for column, value in exact if value is not None]
    if q.document is not None:
        found.append(or_(d.event_id == q.document, d.unique_id == q.document))
    if q.patient_key is not None:
        if PREFIX_MIN <= len(q.patient_key) < KEY_LENGTH:
            found.append(d.patient_key.like(_like_prefix(q.patient_key), escape="\\"))
        else:
            found.append(d.patient_key == q.patient_key)
    if q.destination is not None:
        routed = document_destinations.c
        there = select(routed.event_id).where(routed.destination == q.destination)
        found.append(d.event_id.in_(there))
    if q.since is not None:
        found.append(d.received_at >= utc(q.since))
    if q.until is not None:
        found.append(d.received_at < utc(q.until))
    if q.after is not None:
        at, event_id = q.after
        found.append(tuple_(d.received_at, d.event_id) < tuple_(utc(at), event_id))
    return found


def search(conn: Connection, q: Search) -> list[DocumentRow]:
    """The documents ``q`` matches, newest first, at most ``q.limit``."""
    d = documents.c
    stmt = (
        select(documents)
        .where(and_(True, *_filters(q)))
        .order_by(d.received_at.desc(), d.event_id.desc())
        .limit(max(q.limit, 0))
    )
    return [document_row(r) for r in conn.execute(stmt)]


def document(conn: Connection, wanted: str) -> DocumentRow | None:
    """The document of this event id, or the latest one of this document unique id (one
    that is not an ignored duplicate when there is one)."""
    d = documents.c
    row = conn.execute(select(documents).where(d.event_id == wanted)).first()
    if row is None:
        duplicate = case((d.status == "duplicate", 1), else_=0)
        stmt = (
            select(documents)
            .where(d.unique_id == wanted)
            .order_by(duplicate, d.received_at.desc(), d.event_id.desc())
            .limit(1)
        )
        row = conn.execute(stmt).first()
    return document_row(row) if row is not None else None


def document_row(r: Any) -> DocumentRow:
    return DocumentRow(
        event_id=r.event_id,
        unique_id=r.unique_id,
        sender=r.sender,
        application=r.application,
        message_control_id=r.message_control_id,
        type_code=r.type_code,
        patient_key=r.patient_key,
        received_at=utc(r.received_at) if r.received_at is not None else None,
        last_at=utc(r.last_at or r.received_at),
        status=r.status,
        destinations=json.loads(r.destinations or "{}"),
    )


# -- journeys ------------------------------------------------------------------------------------
def step_of(r: Any) -> Step:
    return Step(
        at=utc(r.at),
        branch=r.branch,
        component=r.component,
        action=r.action,
        outcome=r.outcome,
        event_id=r.step_event,
        source=r.source,
        detail=r.detail,
    )


def steps_of_events(conn: Connection, event_ids: Sequence[str]) -> dict[str, list[Any]]:
    """The step rows of each of these event ids (every event id present, maybe empty)."""
    found: dict[str, list[Any]] = {e: [] for e in event_ids}
    if event_ids:
        for r in conn.execute(select(steps).where(steps.c.event_id.in_(list(event_ids)))):
            found[r.event_id].append(r)
    return found


def _linked(conn: Connection, document: str) -> tuple[list[Any], set[str], set[str]]:
    """The step rows linked to ``document`` by event id or document unique id (followed to
    a fixpoint, as :func:`ops.trace.journey.journey` does), and the ids they link."""
    events, uniques = {document}, {document}
    while True:
        s = steps.c
        stmt = select(steps).where(
            or_(s.event_id.in_(sorted(events)), s.unique_id.in_(sorted(uniques)))
        )
        rows = list(conn.execute(stmt).all())
        more_events = {r.event_id for r in rows if r.event_id is not None} - events
        more_uniques = {r.unique_id for r in rows if r.unique_id is not None} - uniques
        if not more_events and not more_uniques:
            return rows, events, uniques
        events |= more_events
        uniques |= more_uniques


def journey(conn: Connection, document: str) -> Journey:
    """``document``'s journey from the index: what :func:`ops.trace.journey.journey` gives
    from the topics for the same records."""
    rows, events, uniques = _linked(conn, document)
    rows = sorted(rows, key=lambda r: (r.topic_partition, r.topic_offset))
    named_events = {r.event_id for r in rows}
    named_uniques = {r.unique_id for r in rows}
    audits = [r for r in rows if r.source == "audit"]
    steps_found = arrange(
        audits=[step_of(r) for r in audits],
        audit_ids=[r.step_id for r in audits],
        statuses=[step_of(r) for r in rows if r.source == "status"],
        acks=[step_of(r) for r in rows if r.source == "ack"],
        letters=[step_of(r) for r in rows if r.source == "dead-letter"],
    )
    return Journey(
        document=document,
        event_ids=tuple(sorted(e for e in events if e != document or e in named_events)),
        unique_ids=tuple(sorted(u for u in uniques if u != document or u in named_uniques)),
        steps=tuple(steps_found),
    )


# -- dead letters --------------------------------------------------------------------------------
_REPLAYS = (
    select(func.count())
    .select_from(replays)
    .where(replays.c.dead_letter_id == letters.c.dead_letter_id)
    .scalar_subquery()
)


def _letter_filters(q: LetterSearch) -> list[ColumnElement[bool]]:
    c = letters.c
    found: list[ColumnElement[bool]] = []
    if q.stage is not None:
        found.append(c.stage.like(_like_prefix(q.stage), escape="\\"))
    if q.reason_code is not None:
        found.append(c.reason_code == q.reason_code)
    if q.sender is not None:
        found.append(c.sender == q.sender)
    if q.document is not None:
        found.append(or_(c.event_id == q.document, c.unique_id == q.document))
    if q.since is not None:
        found.append(c.occurred_at >= utc(q.since))
    if q.until is not None:
        found.append(c.occurred_at <= utc(q.until))
    if q.unreplayed:
        found.append(~exists().where(replays.c.dead_letter_id == c.dead_letter_id))
    return found


def letters_of(conn: Connection, q: LetterSearch) -> list[LetterRow]:
    """The dead letters ``q`` matches, newest first, at most ``q.limit``."""
    c = letters.c
    stmt = (
        select(letters, _REPLAYS.label("replay_count"))
        .where(and_(True, *_letter_filters(q)))
        .order_by(c.occurred_at.desc(), c.dead_letter_id.desc())
        .limit(max(q.limit, 0))
    )
    return [letter_row(r) for r in conn.execute(stmt)]


def letter(conn: Connection, wanted: str) -> LetterRow | None:
    """The dead letter of this id, or the one its first 8+ characters name (None if none
    or several)."""
    c = letters.c
    stmt = select(letters, _REPLAYS.label("replay_count"))
    row = conn.execute(stmt.where(c.dead_letter_id == wanted)).first()
    if row is None and len(wanted) >= _LETTER_PREFIX_MIN:
        found = conn.execute(
            stmt.where(c.dead_letter_id.like(_like_prefix(wanted), escape="\\")).limit(2)
        ).all()
        row = found[0] if len(found) == 1 else None
    return letter_row(row) if row is not None else None


def letter_row(r: Any) -> LetterRow:
    view = LetterView(
        dead_letter_id=r.dead_letter_id,
        stage=r.stage,
        reason_code=r.reason_code,
        reason=r.reason,
        occurred_at=utc(r.occurred_at),
        source_topic=r.source_topic,
        source_partition=r.source_partition,
        source_offset=r.source_offset,
        original_size=r.original_size,
        original_sha256=r.original_sha256,
        event_id=r.event_id,
        record_type=r.record_type,
        sector=r.sector,
        document_unique_id=r.unique_id,
        facility=r.sender,
        problem=r.problem,
    )
    return LetterRow(view, r.dlq_partition, r.dlq_offset, int(r.replay_count or 0))
