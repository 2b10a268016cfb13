"""What the document index answers, as types (pure): the contract between the index
(:mod:`ops.index.store`), the command line (``relais trace``, ``explain``, ``dlq list``)
and the operator console (:mod:`ops.console`).

The index is derived data: everything here is computed from the audit, delivery-status,
dead-letter and business-acknowledgement topics, and a rebuild from those topics gives the
same answers. Nothing here carries patient data: a patient is its pseudonymised key (the
records' Kafka key), a document its ids, its sender and its type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ops.dlq.letters import LetterView
from ops.trace.journey import Journey

#: a document's status in the index, from the first word to the last (search filter values)
STATUSES = (
    "received",  # the bus took it, nothing decided yet
    "held",  # identity held until it is qualified
    "blocked",  # identitovigilance alert: a human must decide
    "in-progress",  # routed, some destination has not answered yet
    "delivered",  # every destination it was routed to delivered (or it had none)
    "refused",  # a destination refused it (REJECTED, DELIVERY_FAILED for good)
    "dead-lettered",  # a stage or sink gave up: a dead letter waits for an operator
    # the same message (facility + MSH-10) or document was received before: ignored, for
    # good (DUPLICATE_IGNORED); the first one's event goes on
    "duplicate",
)
DESTINATIONS = ("DMP", "MSSANTE", "NOTIFY")


@dataclass(frozen=True)
class Search:
    """A search: every field given narrows it (and); ``None`` does not filter."""

    sender: str | None = None  # MSH-4 facility, exact
    message_control_id: str | None = None  # MSH-10, exact
    document: str | None = None  # document unique id or event id, exact
    patient_key: str | None = None  # the pseudonymised key, or a prefix of 8+ characters
    type_code: str | None = None  # LOINC document type
    status: str | None = None  # one of STATUSES
    destination: str | None = None  # one of DESTINATIONS: routed there
    since: datetime | None = None  # received at or after
    until: datetime | None = None  # received before
    limit: int = 50
    #: keyset pagination: the (received_at, event_id) of the last hit of the previous page
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class DocumentRow:
    """One document as the index knows it (a search hit)."""

    event_id: str
    unique_id: str | None
    sender: str | None
    application: str | None
    message_control_id: str | None
    type_code: str | None
    patient_key: str | None
    received_at: datetime | None
    last_at: datetime
    status: str
    #: each destination's latest word (Journey.destinations()): {"DMP": "DELIVERED", ...}
    destinations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SenderStats:
    """What one sender (MSH-4) sent in a time window."""

    sender: str
    received: int
    refused: dict[str, int]  # at the door and later, by reason code
    held: int  # held or blocked for identity now
    delivered: int
    dead_lettered: int
    last_seen: datetime | None
    #: duplicates ignored (counted in ``received`` too: they were received)
    duplicates: int = 0


@dataclass(frozen=True)
class DestinationStats:
    """What one destination did in a time window."""

    destination: str
    delivered: int
    refused: dict[str, int]  # by answer code or outcome
    waiting: int  # routed there, no final word yet
    dead_lettered: int
    last_seen: datetime | None


@dataclass(frozen=True)
class LetterRow:
    """A dead letter as the index knows it, and its replays."""

    view: LetterView  # no original: the index keeps no sealed bytes
    topic_partition: int  # where it lies on the dead-letter topic
    topic_offset: int
    replays: int  # REPLAYED audit events naming it

    @property
    def readable(self) -> bool:
        """Whether its original could be opened when it was indexed (the index keeps no
        original: ``view.original`` is always None)."""
        return self.view.problem is None


@dataclass(frozen=True)
class LetterSearch:
    stage: str | None = None  # a prefix: "dmp" matches dmp-sink
    reason_code: str | None = None
    sender: str | None = None
    document: str | None = None  # event id or document unique id
    since: datetime | None = None  # dead-lettered at or after
    until: datetime | None = None  # dead-lettered at or before (as `relais dlq list --until`)
    unreplayed: bool = False
    limit: int = 100


@dataclass(frozen=True)
class IndexState:
    """How far the index has read, for ``relais index status`` and the console's footer."""

    documents: int
    steps: int
    letters: int
    positions: dict[str, int]  # "topic:partition" -> next offset to read
    last_at: datetime | None  # the newest step indexed
    #: the counts are PostgreSQL's estimates (tables too large to count at each call)
    approximate: bool = False


class IndexReader(Protocol):
    """What the command line and the console ask the index (synchronous: callers run it in
    a thread from async code)."""

    def search(self, query: Search) -> list[DocumentRow]: ...

    def document(self, event_or_unique_id: str) -> DocumentRow | None: ...

    def journey(self, document: str) -> Journey:
        """The same journey :func:`ops.trace.journey.journey` gives from the topics; no
        steps when nothing is known."""
        ...

    def letters(self, query: LetterSearch) -> list[LetterRow]: ...

    def letter(self, dead_letter_id_or_prefix: str) -> LetterRow | None: ...

    def senders(self, since: datetime, until: datetime | None = None) -> list[SenderStats]: ...

    def destinations(
        self, since: datetime, until: datetime | None = None
    ) -> list[DestinationStats]: ...

    def state(self) -> IndexState: ...
