"""The document index in a database: what the feeder writes, what the console and the
command line ask (:class:`ops.index.model.IndexReader`).

:meth:`IndexStore.apply` writes a batch of rows and the positions they were read up to in
one transaction: the index is exactly as far as its positions say, even after a crash, and
rows are upserted on their derived ids, so reading a record again changes nothing. It then
recomputes the status, destinations and times of the documents the batch touched from all
their steps (:func:`ops.index.rows.status_of`), so the order records arrive in does not
matter: a rebuild from the topics gives the same index.

Writers are serialised and positions only move forward (:mod:`ops.index.writing`), so
``relais index run`` and a command catching the index up may write at the same time.

Errors: :class:`IndexStoreError` (the database cannot be reached or used; the message names
RELAIS_INDEX_URL), raised by every method but :meth:`IndexStore.apply`, which lets
SQLAlchemy's errors through for the feeder to tell an unavailable database
(``OperationalError``: wait and retry) from a record the database refuses (``DataError``:
isolate it and skip it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, make_url, select, text
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from ops.index import queries, stats, writing
from ops.index.model import (
    DestinationStats,
    DocumentRow,
    IndexState,
    LetterRow,
    LetterSearch,
    Search,
    SenderStats,
)
from ops.index.rows import Rows
from ops.index.tables import METADATA, documents, letters, positions, steps, utc
from ops.trace.journey import Journey
from relais.settings import Settings

Positions = dict[tuple[str, int], int]
T = TypeVar("T")
_FIRST_ANALYSE = 5000  # steps written before the first ANALYZE
CONNECT_TIMEOUT_S = 10
#: tables PostgreSQL estimates larger than this are not counted exactly by state()
EXACT_COUNT_MAX = 200_000
#: the advisory lock ``relais index run`` holds while it runs (PostgreSQL): "RELAISR"
RUNNER_LOCK = 0x52454C41495352


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
        postgres = self.url.startswith("postgresql")
        self.engine: Engine = create_engine(
            self.url,
            pool_pre_ping=True,
            hide_parameters=True,  # rows are not logged with an error
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S} if postgres else {},
        )
        self._written, self._analyse_at = 0, _FIRST_ANALYSE
        self._claim: Connection | None = None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexStore:
        """The index RELAIS_INDEX_URL names (the SQLite file under RELAIS_DATA_DIR when none)."""
        if not settings.index.url:
            settings.process.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings.index.database_url(settings.process.data_dir))

    def error(self, exc: SQLAlchemyError) -> IndexStoreError:
        """``exc`` as the one-line error naming RELAIS_INDEX_URL."""
        return IndexStoreError(_unusable(self.url, exc))

    # -- lifecycle -----------------------------------------------------------------------------
    def create(self) -> None:
        """Create the tables and indexes that are missing."""
        try:
            METADATA.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise self.error(exc) from None

    def drop(self) -> None:
        """Drop every table of the index (the first step of a rebuild)."""
        try:
            METADATA.drop_all(self.engine)
        except SQLAlchemyError as exc:
            raise self.error(exc) from None

    def claim(self) -> bool:
        """Hold the index's runner lock until :meth:`close` (PostgreSQL: a session advisory
        lock, :data:`RUNNER_LOCK`); False when another process holds it (``relais index
        run`` holds it while it runs, ``relais index rebuild`` refuses to run without it).
        SQLite (the demo): always True."""
        if self.engine.dialect.name != "postgresql":
            return True
        try:
            conn = self.engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": RUNNER_LOCK})
            held = bool(got.scalar_one())
            conn.commit()  # the lock is the session's: it outlives the transaction
        except SQLAlchemyError as exc:
            raise self.error(exc) from None
        if held:
            self._claim = conn
        else:
            conn.close()
        return held

    def close(self) -> None:
        if self._claim is not None:
            self._claim.close()
            self._claim = None
        self.engine.dispose()

    def positions(self) -> Positions:
        """The next offset to read of each (topic, partition) the index has read."""
        found = self._reading(lambda conn: conn.execute(select(positions)).all())
        return {(r.topic, r.partition): r.next_offset for r in found}

    # -- writing -------------------------------------------------------------------------------
    def apply(self, batch: Rows, read_up_to: Mapping[tuple[str, int], int]) -> int:
        """Write ``batch`` and the new positions in one transaction; returns how many
        documents it touched. Raises SQLAlchemy's errors (see the module)."""
        with self.engine.begin() as conn:
            touched = writing.write(conn, batch, read_up_to)
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
            conn.execute(text("ANALYZE steps, documents, letters, document_destinations"))

    # -- reading (IndexReader) -----------------------------------------------------------------
    def _reading(self, ask: Callable[[Connection], T]) -> T:
        try:
            with self.engine.connect() as conn:
                return ask(conn)
        except SQLAlchemyError as exc:
            raise self.error(exc) from None

    def search(self, query: Search) -> list[DocumentRow]:
        return self._reading(lambda conn: queries.search(conn, query))

    def document(self, event_or_unique_id: str) -> DocumentRow | None:
        return self._reading(lambda conn: queries.document(conn, event_or_unique_id))

    def journey(self, document: str) -> Journey:
        return self._reading(lambda conn: queries.journey(conn, document))

    def letters(self, query: LetterSearch) -> list[LetterRow]:
        return self._reading(lambda conn: queries.letters_of(conn, query))

    def letter(self, dead_letter_id_or_prefix: str) -> LetterRow | None:
        return self._reading(lambda conn: queries.letter(conn, dead_letter_id_or_prefix))

    def senders(self, since: datetime, until: datetime | None = None) -> list[SenderStats]:
        return self._reading(lambda conn: stats.senders(conn, since, until))

    def destinations(
        self, since: datetime, until: datetime | None = None
    ) -> list[DestinationStats]:
        return self._reading(lambda conn: stats.destinations(conn, since, until))

    def state(self) -> IndexState:
        """Counts (PostgreSQL's estimates for large tables: ``approximate``), positions and
        the newest step."""
        return self._reading(_state)


def _state(conn: Connection) -> IndexState:
    counts, approximate = _counts(conn)
    newest = conn.execute(select(func.max(steps.c.at))).scalar_one()
    found = conn.execute(select(positions)).all()
    return IndexState(
        documents=counts[0],
        steps=counts[1],
        letters=counts[2],
        positions={f"{r.topic}:{r.partition}": r.next_offset for r in found},
        last_at=utc(newest) if newest is not None else None,
        approximate=approximate,
    )


def _counts(conn: Connection) -> tuple[list[int], bool]:
    """Rows of documents, steps and letters: exact, but PostgreSQL's planner estimate
    (``pg_class.reltuples``) for a table larger than :data:`EXACT_COUNT_MAX`."""
    tables = (documents, steps, letters)
    estimates: dict[str, float] = {}
    if conn.dialect.name == "postgresql":
        estimates = dict(
            conn.execute(
                text("SELECT relname, reltuples FROM pg_class WHERE relname IN (:a, :b, :c)"),
                {"a": "documents", "b": "steps", "c": "letters"},
            ).all()
        )
    counts, approximate = [], False
    for t in tables:
        estimate = estimates.get(t.name, -1.0)
        if estimate > EXACT_COUNT_MAX:
            counts.append(int(estimate))
            approximate = True
        else:
            counts.append(conn.execute(select(func.count()).select_from(t)).scalar_one())
    return counts, approximate


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """SQLite (the demo): readers (the console) and the feeder's writes do not block each
    other (write-ahead log), and a writer waits for the lock instead of failing."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


#: what the driver says when the server wants a password it was not given or refused
_AUTHENTICATION = ("password authentication failed", "no password supplied")
_SAID_MAX = 200


def _unusable(url: str, exc: SQLAlchemyError) -> str:
    """One line: where, the error's type and the first line of what the driver said (before
    any DETAIL, the URL's password masked), PGPASSFILE named when authentication failed."""
    where = url.rsplit("@", maxsplit=1)[-1]
    said = _driver_said(url, exc)
    hint = "check RELAIS_INDEX_URL"
    whole = str(exc.orig).lower() if isinstance(exc, DBAPIError) else ""
    if any(words in whole for words in _AUTHENTICATION):
        hint += " (its password, or the PGPASSFILE the password is read from)"
    return (
        f"the document index at {where} cannot be used ({type(exc).__name__}"
        f"{': ' + said if said else ''}): {hint}"
    )


def _driver_said(url: str, exc: SQLAlchemyError) -> str:
    """The first line of the database driver's message (psycopg's carry no password;
    the URL's is masked all the same), '' for an error that is not the driver's."""
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return ""
    said = str(exc.orig).split("DETAIL", 1)[0].strip().split("\n", 1)[0].strip()
    try:
        password = make_url(url).password
    except ArgumentError:
        password = None
    if password:
        said = said.replace(str(password), "***")
    return said[:_SAID_MAX]
