"""The notification ledger (pure): what each request became, and what is due when.

One :class:`Entry` per delivery request, keyed by its ``request_id``, written to the
compacted topic ``notify.ledger.v1`` in the same partition number as the request's
input partition (both are keyed by the patient, so one worker owns a patient's
requests and ledger together). The ledger is the notifier's only state:

* **after the DMP**: a document going to the DMP is told only once the DMP filed it
  (``WAITING`` until its status says so; a refusal cancels it: :mod:`.dmp_gate`), and,
  under embargo, once the DMP confirmed the visibility update at the release date (TD3.3b);
* **one notification per document**: a request already in the ledger is never
  scheduled again; one already ``SENT`` answers ``DUPLICATE``;
* **embargo**: a request is stored ``SCHEDULED`` with ``due_at`` = the time the
  patient may see the document, and its input offset is committed once that write is
  acknowledged; the worker that owns the partition (after any restart) reads the
  ledger back and sends it when due. Other patients never wait behind it;
* **rate limit**: the ``SENT`` times of a patient feed :class:`RateLimit`; documents
  that cannot go yet wait (in memory: recomputed from the ledger after a restart) and
  are then told together in one message.

The entries themselves, their life cycle table and their bytes on the topic are
:mod:`consumers.notify.ledger_entry`.

Statuses: each decision that ends a request gives a :class:`Note` (outcome, code,
detail) for its ``DeliveryStatus``. ``REJECTED`` means "will not be notified";
the code says why (``NOT_VISIBLE_TO_PATIENT``, ``CANCELLED``, ``OPTED_OUT``, or the
channel's refusal). What this module refuses is :mod:`consumers.notify.errors`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from consumers.notify.dmp_gate import (
    FILING,
    VISIBILITY_SUFFIX,
    DmpOutcome,
    waits_for_dmp,
    waits_for_visibility,
)
from consumers.notify.errors import IllegalTransition, NotifyInputError
from consumers.notify.ledger_entry import TRANSITIONS, Entry, Note, State
from consumers.notify.message import Kind
from consumers.notify.rate import RateLimit
from relais.contracts import Record


@dataclass(frozen=True)
class Incoming:
    """What the notifier reads from a ``DeliveryRequest``: ids, times, the sealed identity."""

    request_id: str
    event_id: str
    patient_key: str
    document_unique_id: str
    parent_unique_id: str | None
    action: str
    visible_from: datetime | None  # None: never visible to the patient
    submitted_at: datetime
    identity: Mapping[str, Any] = field(repr=False)
    after_dmp: bool = False  # told only once the DMP filed it (dmp_gate.waits_for_dmp)


def incoming_of(request: Record) -> Incoming:
    """The notifier's view of a request; :class:`NotifyInputError` says what is wrong."""
    if request.get("destination") != "NOTIFY":
        raise NotifyInputError(
            f"a {request.get('destination')} request on the notification topic: "
            "fix the routing stage's topic choice",
            reason_code="notify-wrong-destination",
        )
    release = request.get("release")
    document = request["document"]
    return Incoming(
        request_id=request["request_id"],
        event_id=request["event_id"],
        patient_key=request["patient"]["patient_key"],
        document_unique_id=document["unique_id"],
        parent_unique_id=document.get("parent_unique_id"),
        action=document["action"],
        visible_from=release["patient_visible_from"] if release else None,
        submitted_at=request["submitted_at"],
        identity=request["patient"]["identity"],
        after_dmp=waits_for_dmp(request.get("flags") or {}, document["action"]),
    )


@dataclass(frozen=True)
class Admission:
    """What a new request changes: ledger entries to write, statuses to report."""

    writes: tuple[Entry, ...] = ()
    notes: tuple[tuple[Entry, Note], ...] = ()


@dataclass(frozen=True)
class Batch:
    """Due entries of one patient, told in one message."""

    patient_key: str
    entries: tuple[Entry, ...]

    @property
    def request_ids(self) -> list[str]:
        return [e.request_id for e in self.entries]


@dataclass(frozen=True)
class Due:
    batches: tuple[Batch, ...]
    rate_limited: int  # patients whose due documents wait for the rate limit


class Ledger:
    """The ledger of one partition (entries keyed by request id); a worker holds one per
    input partition it owns and drops it when the partition is given away."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        #: the SCHEDULED entries among them: what the 200 ms poll looks at, however many
        #: requests were settled before (entries are only ever added or replaced below)
        self.scheduled: dict[str, Entry] = {}
        self.sent_times: dict[str, list[datetime]] = defaultdict(list)
        self.not_before: dict[str, datetime] = {}  # request id -> retry/rate time (memory)
        self.waiting: dict[str, Entry] = {}  # WAITING for the DMP, by request id
        self.dmp: dict[str, DmpOutcome] = {}  # DMP outcomes with no request yet, by event id

    # -- reading back -------------------------------------------------------------
    def restore(self, entry: Entry) -> None:
        """Take an entry read back from the topic (the latest one per request wins)."""
        self.entries[entry.request_id] = entry
        for state, entries in ((State.SCHEDULED, self.scheduled), (State.WAITING, self.waiting)):
            if entry.state is state:
                entries[entry.request_id] = entry
            else:
                entries.pop(entry.request_id, None)
        if entry.state is State.SENT:
            self.sent_times[entry.patient_key].append(entry.at)

    def apply(self, entry: Entry) -> None:
        """Record a new entry, checking its transition."""
        before = self.entries.get(entry.request_id)
        allowed = TRANSITIONS[before.state if before else None]
        if entry.state not in allowed:
            current = before.state if before else "(new)"
            raise IllegalTransition(
                f"ledger entry {entry.request_id}: {current} -> {entry.state} is not allowed"
            )
        self.not_before.pop(entry.request_id, None)
        self.restore(entry)

    # -- new requests -------------------------------------------------------------
    def admit(self, request: Incoming, now: datetime) -> Admission:
        """What a new request changes: scheduled (maybe embargoed), skipped or a deletion."""
        known = self.entries.get(request.request_id)
        if known is not None:
            if known.state is State.SENT:
                note = Note("DUPLICATE", "ALREADY_NOTIFIED", "the patient was already told")
                return Admission(notes=((known, note),))
            return Admission()  # already scheduled or settled: a redelivery changes nothing
        fresh = Entry(
            request_id=request.request_id,
            event_id=request.event_id,
            patient_key=request.patient_key,
            document_unique_id=request.document_unique_id,
            kind=Kind.NEW,
            state=State.SCHEDULED,
            due_at=request.visible_from or now,
            submitted_at=request.submitted_at,
            at=now,
            identity=request.identity,
        )
        if request.action == "DELETE":
            return self._deletion(request, fresh, now)
        if request.visible_from is None:
            skipped = replace(fresh, state=State.SKIPPED, identity=None)
            return Admission((skipped,), ((skipped, _NOT_VISIBLE_NOTE),))
        if request.after_dmp:
            held = self._before_dmp(fresh)
            if held is not None:
                return held
        return self._schedule(request, fresh, now)

    def _before_dmp(self, fresh: Entry) -> Admission | None:
        """WAITING while the DMP has not answered (the filing, then an embargoed document's
        visibility update), SKIPPED if it refused; None once the patient may be told."""
        steps = [(fresh.event_id, _WAITING_NOTE)]
        if waits_for_visibility(fresh.due_at, fresh.submitted_at):
            steps.append((fresh.event_id + VISIBILITY_SUFFIX, _WAITING_VISIBILITY_NOTE))
        for gate_id, note in steps:
            outcome = self.dmp.get(gate_id)
            if outcome is None:
                waiting = replace(fresh, state=State.WAITING)
                return Admission((waiting,), ((waiting, note),))
            if not outcome.filed:
                skipped = replace(fresh, state=State.SKIPPED, identity=None)
                return Admission((skipped,), ((skipped, _refused(outcome)),))
        return None

    # -- the DMP's outcomes -------------------------------------------------------
    def restore_outcome(self, outcome: DmpOutcome) -> None:
        """Take a DMP outcome read back from the ledger topic (no request had come)."""
        self.dmp[outcome.gate_id] = outcome

    def dmp_outcome(self, outcome: DmpOutcome, now: datetime) -> tuple[Admission, bool]:
        """What the DMP's outcome changes, and whether to keep it (no request waits yet).

        A filing releases the notifications of visible documents; those under embargo wait
        on for the visibility update (TD3.3b), whose confirmation releases them."""
        waiting = [e for e in self.waiting.values() if e.event_id == outcome.event_id]
        later: tuple[tuple[Entry, Note], ...] = ()  # filed, and waiting now for TD3.3b: say so
        if outcome.step == FILING and outcome.filed:
            later = tuple(
                (e, _WAITING_VISIBILITY_NOTE)
                for e in waiting
                if waits_for_visibility(e.due_at, e.submitted_at)
            )
            waiting = [e for e in waiting if not waits_for_visibility(e.due_at, e.submitted_at)]
        if not waiting:
            self._keep(outcome, now)
            return Admission((), later), True
        if not outcome.filed:
            cancelled = tuple(e.moved(State.CANCELLED, now) for e in waiting)
            note = _refused(outcome)
            return Admission(cancelled, tuple((e, note) for e in cancelled)), False
        scheduled = tuple(replace(e, state=State.SCHEDULED, at=now) for e in waiting)
        notes = tuple(
            (e, Note("RETRYING", "EMBARGOED", f"filed in the DMP; told from {e.due_at:%Y-%m-%d}"))
            for e in scheduled
            if e.due_at > now
        )
        return Admission(scheduled, notes), False

    def _keep(self, outcome: DmpOutcome, now: datetime) -> None:
        """Remember an outcome for a request to come; forget those older than any request."""
        self.dmp[outcome.gate_id] = outcome
        if len(self.dmp) > DMP_OUTCOMES_KEPT:
            horizon = now - DMP_OUTCOME_HORIZON
            self.dmp = {k: v for k, v in self.dmp.items() if v.at >= horizon}

    def _schedule(self, request: Incoming, fresh: Entry, now: datetime) -> Admission:
        """A visible document: scheduled, cancelling the pending version it replaces."""
        cancelled: tuple[Entry, ...] = ()
        kind = Kind.NEW
        if request.action == "REPLACE" and request.parent_unique_id:
            cancelled = self._cancel({request.parent_unique_id}, request.patient_key, now)
            # The patient never heard of a version cancelled here: this one is new to them.
            kind = cancelled[0].kind if cancelled else Kind.UPDATED
        scheduled = replace(fresh, kind=kind)
        notes = tuple((c, _CANCELLED_NOTE) for c in cancelled)
        if scheduled.due_at > now:  # under embargo: say when, so nobody wonders
            waiting = Note(
                "RETRYING",
                "EMBARGOED",
                f"the patient is told from {scheduled.due_at:%Y-%m-%d %H:%M} UTC (release policy)",
            )
            notes = (*notes, (scheduled, waiting))
        return Admission((*cancelled, scheduled), notes)

    def _deletion(self, request: Incoming, fresh: Entry, now: datetime) -> Admission:
        ids = {request.document_unique_id} | (
            {request.parent_unique_id} if request.parent_unique_id else set()
        )
        cancelled = self._cancel(ids, request.patient_key, now)
        own = replace(fresh, state=State.SKIPPED, identity=None)
        if cancelled:
            note = Note(
                "DELIVERED",
                "CANCELLED_PENDING",
                f"deletion: {len(cancelled)} pending notification(s) cancelled",
            )
        else:
            note = Note("DELIVERED", "NOTHING_PENDING", "deletion: no notification was pending")
        notes = (*((c, _CANCELLED_NOTE) for c in cancelled), (own, note))
        return Admission((*cancelled, own), notes)

    def _cancel(self, unique_ids: set[str], patient_key: str, now: datetime) -> tuple[Entry, ...]:
        return tuple(
            e.moved(State.CANCELLED, now)
            for e in (*self.scheduled.values(), *self.waiting.values())
            if e.patient_key == patient_key and e.document_unique_id in unique_ids
        )

    # -- sending ------------------------------------------------------------------
    def due(self, now: datetime, rate: RateLimit, max_batches: int = 20) -> Due:
        """Batches to send now, one per patient, at most ``max_batches``."""
        groups: dict[str, list[Entry]] = defaultdict(list)
        for entry in self.scheduled.values():
            if entry.due_at <= now:
                wait = self.not_before.get(entry.request_id)
                if wait is None or wait <= now:
                    groups[entry.patient_key].append(entry)
        batches: list[Batch] = []
        limited = 0
        for patient, entries in sorted(groups.items(), key=lambda g: min(e.due_at for e in g[1])):
            self.sent_times[patient] = rate.recent(self.sent_times.get(patient, ()), now)
            allowed_at = rate.next_allowed(self.sent_times[patient], now)
            if allowed_at is not None:
                limited += 1
                self.postpone(entries, allowed_at)
                continue
            if len(batches) < max_batches:
                batches.append(Batch(patient, tuple(sorted(entries, key=lambda e: e.due_at))))
        return Due(tuple(batches), limited)

    def postpone(self, entries: Iterable[Entry], until: datetime) -> None:
        """Try these entries again at ``until`` (rate limit, transient channel failure)."""
        for entry in entries:
            self.not_before[entry.request_id] = until

    def next_due(self) -> datetime | None:
        """The earliest time something may become sendable (for the poll timeout)."""
        times = [
            max(e.due_at, self.not_before.get(e.request_id, e.due_at))
            for e in self.scheduled.values()
        ]
        return min(times, default=None)

    # -- observing ----------------------------------------------------------------
    def pending(self, now: datetime) -> tuple[int, int, float]:
        """(under embargo, due and waiting, age in seconds of the oldest due one)."""
        embargoed = waiting = 0
        oldest: datetime | None = None
        for entry in self.scheduled.values():
            if entry.due_at > now:
                embargoed += 1
            else:
                waiting += 1
                oldest = entry.due_at if oldest is None else min(oldest, entry.due_at)
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        return embargoed, waiting, age


#: DMP outcomes kept for requests still to come: pruned past this many, when older than
#: the input's retention (a request cannot come later than that).
DMP_OUTCOMES_KEPT: Final = 10_000
DMP_OUTCOME_HORIZON: Final = timedelta(days=8)
_WAITING_NOTE: Final = Note(
    "RETRYING",
    "WAITING_FOR_DMP",
    "the patient is told once the DMP has filed the document",
)
_DMP_REFUSED_NOTE: Final = Note(
    "REJECTED",
    "DMP_REFUSED",
    "the DMP refused the document: the patient is not told of it",
)
_WAITING_VISIBILITY_NOTE: Final = Note(
    "RETRYING",
    "WAITING_FOR_DMP_VISIBILITY",
    "under embargo: the patient is told once the DMP made the document visible (TD3.3b)",
)
_VISIBILITY_REFUSED_NOTE: Final = Note(
    "REJECTED",
    "DMP_VISIBILITY_REFUSED",
    "the DMP refused to make the document visible to the patient (TD3.3b): not told",
)


def _refused(outcome: DmpOutcome) -> Note:
    """The note of a notification the DMP's refusal cancels (filing or visibility update)."""
    return _DMP_REFUSED_NOTE if outcome.step == FILING else _VISIBILITY_REFUSED_NOTE


_CANCELLED_NOTE: Final = Note(
    "REJECTED",
    "CANCELLED",
    "deleted or replaced before the patient could see it: not notified",
)
_NOT_VISIBLE_NOTE: Final = Note(
    "REJECTED",
    "NOT_VISIBLE_TO_PATIENT",
    "the release decision hides this document from the patient: no notification",
)
