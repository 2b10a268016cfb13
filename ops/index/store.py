"""The document index in a database: what the feeder writes, what the console and the
command line ask (:class:`ops.index.model.IndexReader`).

:meth:`IndexStore.apply` writes a batch of rows and the positions they were read up to in
one transaction: the index is exactly as far as its positions say, even after a crash, and
rows are upserted on their derived ids, so reading a record again changes nothing. It then
recomputes the status, destinations and times of the documents the batch touched from all
their steps (:func:`ops.index.rows.status_of`), so the order records arrive in does not
matter: a rebuild from the topics gives the same index.

Errors: :class:`IndexStoreError` (the database cannot be reached or used; the message names
RELAIS_INDEX_URL).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from ops.index import queries, stats
from ops.index.model import (
    DestinationStats,
    DocumentRow,
    IndexState,
    LetterRow,
    LetterSearch,
    Search,
    SenderStats,
)
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
from ops.index.tables import METADATA, documents, letters, positions, replays, steps, utc
from ops.trace.journey import Journey
from relais.settings import Settings

Positions = dict[tuple[str, int], int]
_CHUNK = 500
_FIRST_ANALYSE = 5000  # steps written before the first ANALYZE


class IndexStoreError(Exception):
    """The index database cannot be used (see the message for the setting to fix)."""


def engine_url(url: str) -> str:
    """The SQLAlchemy URL of ``url``: ``postgresql://`` goes through psycopg 3."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class IndexStore:
    """The index in PostgreSQL (``postgresql+psycopg://``) or SQLite (``sqlite:///``)."""

    def __init__(self, url: str) -> None:
        self.url = engine_url(url)
        self.engine: Engine = create_engine(self.url, pool_pre_ping=True)
        self._written, self._analyse_at = 0, _FIRST_ANALYSE
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexStore:
        """The index RELAIS_INDEX_URL names (the SQLite file under RELAIS_DATA_DIR when none)."""
        if not settings.index.url:
            settings.process.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings.index.database_url(settings.process.data_dir))

    # -- lifecycle -----------------------------------------------------------------------------
    def create(self) -> None:
        """Create the tables and indexes that are missing."""
        try:
            METADATA.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise IndexStoreError(_unusable(self.url, exc)) from None

    def drop(self) -> None:
        """Drop every table of the index (the first step of a rebuild)."""
        METADATA.drop_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def positions(self) -> Positions:
        """The next offset to read of each (topic, partition) the index has read."""
        with self.engine.connect() as conn:
            found = conn.execute(select(positions)).all()
        return {(r.topic, r.partition): r.next_offset for r in found}

    # -- writing -------------------------------------------------------------------------------
    def apply(self, batch: Rows, read_up_to: Mapping[tuple[str, int], int]) -> int:
        """Write ``batch`` and the new positions in one transaction; returns how many
        documents it touched."""
        with self.engine.begin() as conn:
            self._upsert_steps(conn, batch.steps)
            self._upsert_documents(conn, batch.documents)
            self._upsert_letters(conn, batch.letters)
            self._upsert_replays(conn, batch)
            self._set_positions(conn, read_up_to)
            touched = {s.event_id for s in batch.steps if s.event_id is not None}
            touched |= {d.event_id for d in batch.documents}
            self._recompute(conn, sorted(touched))
        self._keep_statistics(len(batch.steps))
        return len(touched)

    def _keep_statistics(self, written: int) -> None:
        """ANALYZE the tables each time this store has doubled what it wrote (PostgreSQL):
        during a rebuild the tables grow faster than autovacuum analyses them, and a
        planner that believes them small scans them whole for every batch."""
        self._written += written
        if self.engine.dialect.name != "postgresql" or self._written < self._analyse_at:
            return
        self._analyse_at = 2 * self._written
        with self.engine.begin() as conn:
            conn.execute(text("ANALYZE steps, documents, letters"))

    def _upsert_replays(self, conn: Connection, batch: Rows) -> None:
        rows = [{"dead_letter_id": r.dead_letter_id, "step_id": r.step_id} for r in batch.replays]
        if rows:
            stmt = self._insert(replays).on_conflict_do_nothing()
            conn.execute(stmt, _unique(rows, "dead_letter_id", "step_id"))

    def _insert(self, table: Any) -> Any:
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _upsert_steps(self, conn: Connection, rows: Iterable[StepRow]) -> None:
        values = _unique([_step_values(r) for r in rows], "step_id")
        if values:
            conn.execute(self._insert(steps).on_conflict_do_nothing(), values)

    def _upsert_documents(self, conn: Connection, facts: Iterable[DocumentFacts]) -> None:
        merged: dict[str, dict[str, Any]] = {}
        for f in facts:
            known = merged.setdefault(f.event_id, {"event_id": f.event_id})
            for name, value in _fact_values(f).items():
                if value is not None:
                    known[name] = value
        if not merged:
            return
        names = (
            "unique_id",
            "sender",
            "application",
            "message_control_id",
            "type_code",
            "patient_key",
        )
        values = [{name: m.get(name) for name in ("event_id", *names)} for m in merged.values()]
        stmt = self._insert(documents)
        keep = {n: func.coalesce(stmt.excluded[n], documents.c[n]) for n in names}
        conn.execute(stmt.on_conflict_do_update(index_elements=["event_id"], set_=keep), values)

    def _upsert_letters(self, conn: Connection, found: Iterable[LetterFacts]) -> None:
        values = _unique([_letter_values(f) for f in found], "dead_letter_id")
        if not values:
            return
        stmt = self._insert(letters)
        changed = {c: stmt.excluded[c] for c in values[0] if c != "dead_letter_id"}
        conn.execute(
            stmt.on_conflict_do_update(index_elements=["dead_letter_id"], set_=changed), values
        )

    def _set_positions(self, conn: Connection, read_up_to: Mapping[tuple[str, int], int]) -> None:
        values = [
            {"topic": t, "partition": p, "next_offset": o} for (t, p), o in read_up_to.items()
        ]
        if values:
            stmt = self._insert(positions)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["topic", "partition"],
                    set_={"next_offset": stmt.excluded.next_offset},
                ),
                values,
            )

    def _recompute(self, conn: Connection, event_ids: list[str]) -> None:
        """Status, destinations, times and reason of these documents, from all their steps."""
        for start in range(0, len(event_ids), _CHUNK):
            chunk = event_ids[start : start + _CHUNK]
            by_event = queries.steps_of_events(conn, chunk)
            changes = [_document_state(e, s) for e, s in by_event.items() if s]
            if changes:
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

    # -- reading (IndexReader) -----------------------------------------------------------------
    def search(self, query: Search) -> list[DocumentRow]:
        with self.engine.connect() as conn:
            return queries.search(conn, query)

    def document(self, event_or_unique_id: str) -> DocumentRow | None:
        with self.engine.connect() as conn:
            return queries.document(conn, event_or_unique_id)

    def journey(self, document: str) -> Journey:
        with self.engine.connect() as conn:
            return queries.journey(conn, document)

    def letters(self, query: LetterSearch) -> list[LetterRow]:
        with self.engine.connect() as conn:
            return queries.letters_of(conn, query)

    def letter(self, dead_letter_id_or_prefix: str) -> LetterRow | None:
        with self.engine.connect() as conn:
            return queries.letter(conn, dead_letter_id_or_prefix)

    def senders(self, since: datetime, until: datetime | None = None) -> list[SenderStats]:
        with self.engine.connect() as conn:
            return stats.senders(conn, since, until)

    def destinations(
        self, since: datetime, until: datetime | None = None
    ) -> list[DestinationStats]:
        with self.engine.connect() as conn:
            return stats.destinations(conn, since, until)

    def state(self) -> IndexState:
        with self.engine.connect() as conn:
            counts = [
                conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (documents, steps, letters)
            ]
            newest = conn.execute(select(func.max(steps.c.at))).scalar_one()
            found = conn.execute(select(positions)).all()
        return IndexState(
            documents=counts[0],
            steps=counts[1],
            letters=counts[2],
            positions={f"{r.topic}:{r.partition}": r.next_offset for r in found},
            last_at=utc(newest) if newest is not None else None,
        )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """SQLite (the demo): readers (the console) and the feeder's writes do not block each
    other (write-ahead log), and a writer waits for the lock instead of failing."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _unusable(url: str, exc: SQLAlchemyError) -> str:
    where = url.rsplit("@", maxsplit=1)[-1]
    return (
        f"the document index at {where} cannot be used ({type(exc).__name__}): "
        "check RELAIS_INDEX_URL"
    )


def _unique(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """The rows with distinct ``keys`` (the last one read wins)."""
    return list({tuple(r[k] for k in keys): r for r in rows}.values())


def _step_values(r: StepRow) -> dict[str, Any]:
    s = r.step
    return {
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


def _fact_values(f: DocumentFacts) -> dict[str, Any]:
    return {
        "unique_id": f.unique_id,
        "sender": f.sender,
        "application": f.application,
        "message_control_id": f.message_control_id,
        "type_code": f.type_code,
        "patient_key": f.patient_key,
    }


def _letter_values(f: LetterFacts) -> dict[str, Any]:
    v = f.view
    return {
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


def _document_state(event_id: str, found: list[Any]) -> dict[str, Any]:
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
