"""How the index writes a batch: the writing half of :meth:`ops.index.store.IndexStore.apply`,
each function working in the batch's transaction.

- one writer at a time: on PostgreSQL the transaction first takes a transaction-level
  advisory lock (:data:`WRITER_LOCK`), so ``relais index run`` and a command catching the
  index up never interleave a read of a document's steps with the other's write of its
  state (SQLite takes its database lock for every write already); rows are also written
  in key order;
- rows are upserted on their derived ids, the first record read keeping its step (as
  ``relais trace`` keeps the first audit of an id); a dead letter read again keeps what
  a reader with the keyring learnt of it (its event, document, sender);
- positions only move forward;
- text loses its NUL characters (PostgreSQL refuses them);
- each touched document's status, destinations, times and reason are recomputed from all
  its steps (:func:`ops.index.rows.status_of`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, case, delete, func, null, text, update
from sqlalchemy.dialects import postgresql, sqlite

from ops.index import queries
from ops.index.rows import (
    DocumentFacts,
    LetterFacts,
    Rows,
    StepRow,
    destinations_of,
    in_order,
    refusal_of,
    status_of,
)
from ops.index.rows import last_at as last_step_at
from ops.index.tables import (
    document_destinations,
    documents,
    letters,
    positions,
    replays,
    steps,
    utc,
)

#: the advisory lock every writer of an index takes (PostgreSQL): "RELAISI" in ASCII
WRITER_LOCK = 0x52454C41495349
_CHUNK = 500
_FACTS = ("unique_id", "sender", "application", "message_control_id", "type_code", "patient_key")
_LETTER_LEARNT = ("event_id", "unique_id", "sender", "sector", "record_type")


def write(conn: Connection, batch: Rows, read_up_to: Mapping[tuple[str, int], int]) -> set[str]:
    """Write ``batch`` and the positions in ``conn``'s transaction; the event ids touched."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITER_LOCK})
    upsert_steps(conn, batch.steps)
    upsert_documents(conn, batch.documents)
    upsert_letters(conn, batch.letters)
    upsert_replays(conn, batch)
    set_positions(conn, read_up_to)
    touched = {s.event_id for s in batch.steps if s.event_id is not None}
    touched |= {d.event_id for d in batch.documents}
    recompute(conn, sorted(touched))
    return touched


def insert(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def upsert_steps(conn: Connection, rows: Iterable[StepRow]) -> None:
    """Steps are written once; a dead letter's step read again learns the event and document
    its original names when it did not know them."""
    values = _unique([_step_values(r) for r in rows], "step_id")
    plain = [v for v in values if v["source"] != "dead-letter"]
    if plain:
        conn.execute(insert(conn, steps).on_conflict_do_nothing(), plain)
    lettered = [v for v in values if v["source"] == "dead-letter"]
    if lettered:
        stmt = insert(conn, steps)
        new, old = stmt.excluded, steps.c
        learnt = {
            "event_id": func.coalesce(new.event_id, old.event_id),
            "unique_id": func.coalesce(new.unique_id, old.unique_id),
            "step_event": case((new.event_id.is_not(None), new.step_event), else_=old.step_event),
        }
        conn.execute(stmt.on_conflict_do_update(index_elements=["step_id"], set_=learnt), lettered)


def upsert_documents(conn: Connection, facts: Iterable[DocumentFacts]) -> None:
    merged: dict[str, dict[str, Any]] = {}
    for f in facts:
        known = merged.setdefault(f.event_id, {"event_id": f.event_id})
        for name, value in _fact_values(f).items():
            if value is not None:
                known[name] = value  # as across batches: the latest fact read wins
    if not merged:
        return
    values = [
        _cleaned({name: m.get(name) for name in ("event_id", *_FACTS)})
        for _, m in sorted(merged.items())
    ]
    stmt = insert(conn, documents)
    keep = {n: func.coalesce(stmt.excluded[n], documents.c[n]) for n in _FACTS}
    conn.execute(stmt.on_conflict_do_update(index_elements=["event_id"], set_=keep), values)


def upsert_letters(conn: Connection, found: Iterable[LetterFacts]) -> None:
    """Dead letters; what one reader learnt of a letter (with the keyring) is kept when
    another (without it) reads it again."""
    values = _unique([_letter_values(f) for f in found], "dead_letter_id")
    if not values:
        return
    stmt = insert(conn, letters)
    new, old = stmt.excluded, letters.c
    changed = {c: new[c] for c in values[0] if c != "dead_letter_id"}
    changed |= {c: func.coalesce(new[c], old[c]) for c in _LETTER_LEARNT}
    changed["problem"] = case((old.problem.is_(None), null()), else_=new.problem)
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["dead_letter_id"], set_=changed), values
    )


def upsert_replays(conn: Connection, batch: Rows) -> None:
    rows = [{"dead_letter_id": r.dead_letter_id, "step_id": r.step_id} for r in batch.replays]
    if rows:
        stmt = insert(conn, replays).on_conflict_do_nothing()
        conn.execute(stmt, _unique(rows, "dead_letter_id", "step_id"))


def set_positions(conn: Connection, read_up_to: Mapping[tuple[str, int], int]) -> None:
    """The next offsets to read; a position never goes back (a writer that started earlier
    and commits later does not undo what a later one read)."""
    values = [
        {"topic": t, "partition": p, "next_offset": o} for (t, p), o in sorted(read_up_to.items())
    ]
    if not values:
        return
    stmt = insert(conn, positions)
    newest = func.greatest if conn.dialect.name == "postgresql" else func.max
    forward = {"next_offset": newest(stmt.excluded.next_offset, positions.c.next_offset)}
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["topic", "partition"], set_=forward), values
    )


def recompute(conn: Connection, event_ids: list[str]) -> None:
    """Status, destinations, times and reason of these documents, from all their steps."""
    for start in range(0, len(event_ids), _CHUNK):
        chunk = event_ids[start : start + _CHUNK]
        by_event = queries.steps_of_events(conn, chunk)
        changes = [document_state(e, s) for e, s in by_event.items() if s]
        if not changes:
            continue
        conn.execute(
            update(documents)
            .where(documents.c.event_id == queries.bind("b_event_id"))
            .values(
                status=queries.bind("b_status"),
                destinations=queries.bind("b_destinations"),
                reason=queries.bind("b_reason"),
                last_at=queries.bind("b_last_at"),
                received_at=queries.bind("b_received_at"),
            ),
            changes,
        )
        _set_destinations(conn, changes)


def _set_destinations(conn: Connection, changes: list[dict[str, Any]]) -> None:
    """The ``document_destinations`` rows of the recomputed documents."""
    table = document_destinations
    event_ids = [c["b_event_id"] for c in changes]
    conn.execute(delete(table).where(table.c.event_id.in_(event_ids)))
    rows = [
        {"event_id": c["b_event_id"], "destination": name}
        for c in changes
        for name in sorted(json.loads(c["b_destinations"]))
    ]
    if rows:
        conn.execute(insert(conn, table).on_conflict_do_nothing(), rows)


def document_state(event_id: str, found: list[Any]) -> dict[str, Any]:
    """The recomputed columns of one document from its steps (a RECEIVED step gives when it
    was received; without one, its first step does)."""
    all_steps = [queries.step_of(r) for r in found]
    received = [s.at for s in all_steps if s.action == "RECEIVED"]
    ordered = in_order(all_steps)
    return {
        "b_event_id": event_id,
        "b_status": status_of(all_steps),
        "b_destinations": json.dumps(destinations_of(ordered), sort_keys=True),
        "b_reason": refusal_of(all_steps),
        "b_last_at": utc(last_step_at(all_steps) or ordered[0].at),
        "b_received_at": utc(min(received) if received else ordered[0].at),
    }


def _clean(value: Any) -> Any:
    """A text value without NUL characters (PostgreSQL refuses them in text)."""
    return value.replace("\x00", "") if isinstance(value, str) else value


def _cleaned(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _clean(value) for name, value in values.items()}


def _unique(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """The rows with distinct ``keys``, the first one read of each kept (as a later batch
    keeps the row an earlier one wrote), in key order (writers lock rows in one order)."""
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        found.setdefault(tuple(r[k] for k in keys), r)
    return [found[k] for k in sorted(found)]


def _step_values(r: StepRow) -> dict[str, Any]:
    s = r.step
    return _cleaned(
        {
            "step_id": r.step_id,
            "event_id": r.event_id,
            "unique_id": r.unique_id,
            "at": utc(s.at),
            "branch": s.branch,
            "component": s.component,
            "action": s.action,
            "outcome": s.outcome,
            "step_event": s.event_id,
            "source": s.source,
            "detail": s.detail,
            "operator": r.operator,
            "topic_partition": r.partition,
            "topic_offset": r.offset,
        }
    )


def _fact_values(f: DocumentFacts) -> dict[str, Any]:
    return {name: getattr(f, name) for name in _FACTS}


def _letter_values(f: LetterFacts) -> dict[str, Any]:
    v = f.view
    return _cleaned(
        {
            "dead_letter_id": v.dead_letter_id,
            "event_id": v.event_id,
            "unique_id": v.document_unique_id,
            "stage": v.stage,
            "reason_code": v.reason_code,
            "reason": v.reason,
            "occurred_at": utc(v.occurred_at),
            "sender": v.facility,
            "sector": v.sector,
            "record_type": v.record_type,
            "problem": v.problem,
            "source_topic": v.source_topic,
            "source_partition": v.source_partition,
            "source_offset": v.source_offset,
            "dlq_partition": f.partition,
            "dlq_offset": f.offset,
            "original_size": v.original_size,
            "original_sha256": v.original_sha256,
        }
    )
