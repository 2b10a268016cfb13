"""The document index's tables (SQLAlchemy Core): PostgreSQL in production, SQLite for the
demo. Derived data: ``relais index rebuild`` drops them and reads the topics again.

- ``documents``: one row per event id, its sender, MSH-10, type, patient key (the
  pseudonymised Kafka key), when it was received, its status and each destination's word;
- ``steps``: every step of every journey (:class:`ops.trace.journey.Step`), with the ids
  that link it to its document and where it was read;
- ``letters``: dead letters without their original; ``replays``: which REPLAYED audit
  step sent which dead letter back;
- ``document_destinations``: the destinations of each document (search by destination);
- ``positions``: the next offset to read of each topic partition, written in the same
  transaction as the rows read before it.

Every search filter has its index; times are stored timezone-aware (UTC). What records
say is stored as ``Text`` (no length limit: a sender's MSH-4 or a ROUTED outcome naming many
recipients has no bound the index could trust); only the index's own words are bounded.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

METADATA = MetaData()
_TIME = DateTime(timezone=True)

documents = Table(
    "documents",
    METADATA,
    Column("event_id", Text, primary_key=True),
    # what senders write (OIDs, MSH-4, MSH-10...) has no length the index can trust: Text
    Column("unique_id", Text),
    Column("sender", Text),
    Column("application", Text),
    Column("message_control_id", Text),
    Column("type_code", Text),
    Column("patient_key", Text),
    Column("received_at", _TIME),
    Column("last_at", _TIME),
    Column("status", String(32), nullable=False, server_default="received"),
    Column("reason", Text),  # why it was refused or dead-lettered (a reason code)
    Column("destinations", Text, nullable=False, server_default="{}"),  # JSON object
    Index("documents_sender_received", "sender", "received_at"),
    Index("documents_msh10", "message_control_id"),
    Index("documents_unique_id", "unique_id"),
    # prefix searches (LIKE 'abc%') use it on PostgreSQL whatever the collation
    Index(
        "documents_patient_key",
        "patient_key",
        postgresql_ops={"patient_key": "text_pattern_ops"},
    ),
    Index("documents_status_received", "status", "received_at"),
    Index("documents_type_code", "type_code"),
    Index("documents_received", "received_at", "event_id"),
)

steps = Table(
    "steps",
    METADATA,
    Column("step_id", Text, primary_key=True),
    Column("event_id", Text),  # the event the step links to (None: none named)
    Column("unique_id", Text),  # the document unique id it links to
    Column("at", _TIME, nullable=False),
    Column("branch", Text, nullable=False),
    Column("component", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("outcome", Text, nullable=False),  # ROUTED: every recipient, no bound
    Column("step_event", Text, nullable=False),  # Step.event_id as trace shows it
    Column("source", String(16), nullable=False),
    Column("detail", Text),
    Column("operator", Text),
    Column("topic_partition", Integer, nullable=False),
    Column("topic_offset", BigInteger, nullable=False),
    Index("steps_event", "event_id"),
    Index("steps_unique", "unique_id"),
    Index("steps_at", "at"),
    Index("steps_branch_at", "branch", "at"),
)

letters = Table(
    "letters",
    METADATA,
    Column("dead_letter_id", Text, primary_key=True),
    Column("event_id", Text),
    Column("unique_id", Text),
    Column("stage", Text, nullable=False),
    Column("reason_code", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("occurred_at", _TIME, nullable=False),
    Column("sender", Text),  # the facility its original names (a door refusal: any MSH-4)
    Column("sector", Text),
    Column("record_type", Text),
    Column("problem", Text),  # why its original could not be opened
    Column("source_topic", Text, nullable=False),
    Column("source_partition", Integer),
    Column("source_offset", BigInteger),
    Column("dlq_partition", Integer, nullable=False),
    Column("dlq_offset", BigInteger, nullable=False),
    Column("original_size", BigInteger, nullable=False),
    Column("original_sha256", String(64), nullable=False),
    Index("letters_occurred", "occurred_at"),
    Index("letters_event", "event_id"),
    Index("letters_unique", "unique_id"),
    Index("letters_sender_occurred", "sender", "occurred_at"),
)

#: which destinations each document was routed to or heard from (the keys of
#: ``documents.destinations``), so that a search by destination uses an index
document_destinations = Table(
    "document_destinations",
    METADATA,
    Column("event_id", Text, primary_key=True),
    Column("destination", String(32), primary_key=True),
    Index("document_destinations_destination", "destination", "event_id"),
)

replays = Table(
    "replays",
    METADATA,
    Column("dead_letter_id", Text, primary_key=True),
    Column("step_id", Text, primary_key=True),
)

positions = Table(
    "positions",
    METADATA,
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)


def utc(at: datetime) -> datetime:
    """``at`` in UTC: what is written (SQLite keeps no offset), and what is read back (SQLite
    gives naive times, PostgreSQL the session's zone)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
