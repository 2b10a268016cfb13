"""What the document index stores of each record it reads, and a document's status (pure).

The feeder (:mod:`ops.index.feeder`) decodes the audit, delivery-status, dead-letter and
business-acknowledgement topics; :func:`rows_of` turns each record into rows: the step it
is in the document's journey (the same :class:`~ops.trace.journey.Step` ``relais trace``
shows), the facts a RECEIVED audit gives of the document (sender, MSH-10, type, patient
key), the dead letter (a :class:`~ops.dlq.letters.LetterView`: no original bytes) and the
dead letter a replay names. Every row has an id derived from the record (the audit id, the
status's request, attempt, outcome and time, the ack id, the dead-letter id), so a record read
twice, or read again by a rebuild, is one row.

:func:`status_of` says where a document stands from all its steps, whatever the order
they were read in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from ops.dlq.letters import LetterView
from ops.dlq.replay import replays_of
from ops.trace.journey import (
    DOCUMENT,
    RANK,
    Journey,
    Step,
    ack_step,
    audit_step,
    letter_step,
    status_step,
)
from relais.contracts import Record

#: the record types the index reads, by the topic (suffix) they come from
INDEXED = ("AuditEvent", "DeliveryStatus", "DeadLetter", "BusinessAck")
SOURCES = ("audit", "status", "ack", "dead-letter")  # the order :func:`arrange` takes them
#: what a branch's latest word is when a destination took the document
DELIVERED_WORDS = frozenset({"DELIVERED", "DUPLICATE"})
#: steps after a dead letter that say the document went on (it was replayed or retried)
_NOT_PROGRESS = frozenset({"DEAD_LETTERED", "ACKNOWLEDGED", "OTHER", "CONSENT_CHANGED"})


@dataclass(frozen=True)
class Read:
    """One decoded record and where it was read (a dead letter as its view)."""

    record_type: str
    record: Record | LetterView
    key: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class StepRow:
    """A step of some document's journey, with the ids that link it to its document."""

    step_id: str
    event_id: str | None  # the event it is about (None: a dead letter naming none)
    unique_id: str | None  # the document unique id it names (None for acknowledgements)
    step: Step
    partition: int  # where it was read: orders steps of one kind as the topics do
    offset: int
    operator: str | None = None


@dataclass(frozen=True)
class DocumentFacts:
    """What one record says of its document; a RECEIVED audit says the most."""

    event_id: str
    unique_id: str | None = None
    sender: str | None = None
    application: str | None = None
    message_control_id: str | None = None
    type_code: str | None = None
    patient_key: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True)
class LetterFacts:
    """A dead letter without its original, and where it lies on the dead-letter topic."""

    view: LetterView
    partition: int
    offset: int


@dataclass(frozen=True)
class ReplayLink:
    """A REPLAYED audit step naming the dead letter it sent back."""

    dead_letter_id: str
    step_id: str


@dataclass
class Rows:
    """The rows of a batch of records."""

    steps: list[StepRow] = field(default_factory=list)
    documents: list[DocumentFacts] = field(default_factory=list)
    letters: list[LetterFacts] = field(default_factory=list)
    replays: list[ReplayLink] = field(default_factory=list)

    def extend(self, other: Rows) -> None:
        self.steps += other.steps
        self.documents += other.documents
        self.letters += other.letters
        self.replays += other.replays

    def __len__(self) -> int:
        return len(self.steps) + len(self.documents) + len(self.letters) + len(self.replays)


def rows_of(read: Read) -> Rows:
    """The rows of one record (none for a record type the index does not read)."""
    if isinstance(read.record, LetterView):
        return _letter_rows(read.record, read)
    record = read.record
    if read.record_type == "AuditEvent":
        return _audit_rows(record, read)
    if read.record_type == "DeliveryStatus":
        step_id = _status_id(record)
        row = _row(step_id, record["event_id"], record["document_unique_id"], status_step(record))
        return Rows([replace(row, partition=read.partition, offset=read.offset)], _facts(row))
    if read.record_type == "BusinessAck":
        row = _row(f"ack:{record['ack_id']}", record["event_id"], None, ack_step(record))
        return Rows([replace(row, partition=read.partition, offset=read.offset)])
    return Rows()


def _status_id(record: Record) -> str:
    """A delivery status's id: its request, attempt, outcome and time (ms): a request's
    attempt may say the same word twice (after a replay), and ``relais trace`` shows both."""
    ms = int(record["at"].timestamp() * 1000)
    return f"status:{record['request_id']}:{record['attempt']}:{record['outcome']}:{ms}"


def rows_of_all(reads: Iterable[Read]) -> Rows:
    found = Rows()
    for read in reads:
        found.extend(rows_of(read))
    return found


def _row(step_id: str, event_id: str | None, unique_id: str | None, step: Step) -> StepRow:
    return StepRow(step_id, event_id, unique_id, step, 0, 0)


def _facts(row: StepRow) -> list[DocumentFacts]:
    """A document the step names (by event and document id), if it names one."""
    if row.event_id is None or row.unique_id is None:
        return []
    return [DocumentFacts(row.event_id, row.unique_id)]


def _audit_rows(audit: Record, read: Read) -> Rows:
    step = audit_step(audit)
    row = StepRow(
        audit["audit_id"],
        audit["event_id"],
        audit["document_unique_id"],
        step,
        read.partition,
        read.offset,
        audit.get("operator"),
    )
    found = Rows([row], _facts(row))
    if audit["action"] == "RECEIVED":
        found.documents = [_received(audit, read.key)]
    for dead_letter_id in replays_of([audit]):
        found.replays.append(ReplayLink(dead_letter_id, row.step_id))
    return found


def _received(audit: Record, key: bytes | None) -> DocumentFacts:
    return DocumentFacts(
        event_id=audit["event_id"],
        unique_id=audit["document_unique_id"],
        sender=audit.get("facility"),
        application=audit.get("application"),
        message_control_id=audit.get("message_control_id"),
        type_code=audit.get("type_code"),
        patient_key=key.decode("utf-8", errors="replace") if key else None,
        received_at=audit["at"],
    )


def _letter_rows(view: LetterView, read: Read) -> Rows:
    bare = replace(view, original=None, key=None)
    row = StepRow(
        f"letter:{view.dead_letter_id}",
        view.event_id,
        view.document_unique_id,
        letter_step(bare),
        read.partition,
        read.offset,
    )
    return Rows([row], _facts(row), [LetterFacts(bare, read.partition, read.offset)])


# -- a document's status -----------------------------------------------------------------------
def _order(step: Step) -> tuple[object, ...]:
    """A total order of steps: the same whatever order they were read in."""
    rank = RANK.get(step.action, 5)
    return (step.at, rank, step.source, step.branch, step.action, step.outcome, step.detail or "")


def in_order(steps: Iterable[Step]) -> list[Step]:
    """Steps in time order, ties broken by what they say: the same whatever the reading order."""
    return sorted(steps, key=_order)


def status_of(steps: Iterable[Step]) -> str:
    """Where a document stands (one of :data:`ops.index.model.STATUSES`) from all its steps."""
    ordered = in_order(steps)
    if _open_letters(ordered):
        return "dead-lettered"
    routed = any(s.action == "ROUTED" for s in ordered)
    if not routed and any(s.action == "DUPLICATE_IGNORED" for s in ordered):
        return "duplicate"
    identity = [s.outcome for s in ordered if s.action == "IDENTITY_DECIDED"]
    if identity and identity[-1].startswith(("held:", "blocked:")):
        return identity[-1].split(":", 1)[0]
    words = destinations_of(ordered)
    if any(word == "REJECTED" for word in words.values()):
        return "refused"
    if routed and all(word in DELIVERED_WORDS for word in words.values()):
        return "delivered"
    return "in-progress" if words or routed else "received"


def destinations_of(ordered: Sequence[Step]) -> dict[str, str]:
    """Each destination's latest word (:meth:`Journey.destinations`) of time-ordered steps."""
    return Journey("", (), (), tuple(ordered)).destinations()


def _open_letters(ordered: Sequence[Step]) -> list[Step]:
    """The dead letters nothing went on from: no replay after them, and no later step on
    their branch that moved the document on."""
    found = []
    for i, step in enumerate(ordered):
        if step.action != "DEAD_LETTERED":
            continue
        later = ordered[i + 1 :]
        if not any(_moves_on(step, after) for after in later):
            found.append(step)
    return found


def _moves_on(letter: Step, after: Step) -> bool:
    if after.action == "REPLAYED":
        return True
    if after.action in _NOT_PROGRESS or after.action == "RECEIVED":
        return False
    return letter.branch in {after.branch, DOCUMENT}


def refusal_of(steps: Iterable[Step]) -> str | None:
    """Why a refused or dead-lettered document was: the open dead letter's reason code, or
    the refusing destination's answer code (its word when it gave none)."""
    ordered = in_order(steps)
    letters = _open_letters(ordered)
    if letters:
        return letters[-1].outcome
    refusals = [s for s in ordered if s.branch != DOCUMENT and s.outcome.endswith("REJECTED")]
    if not refusals:
        return None
    code = _answer_code(refusals[-1].detail)
    return code or "REJECTED"


def _answer_code(detail: str | None) -> str | None:
    for part in (detail or "").replace("\n", ", ").split(", "):
        if part.startswith("answer code "):
            return part.removeprefix("answer code ").strip() or None
    return None


def last_at(steps: Iterable[Step]) -> datetime | None:
    return max((s.at for s in steps), default=None)
