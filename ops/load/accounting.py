"""Every sent document accounted for (pure): delivered, held, dead-lettered, ignored as a copy.

The replay knows what it sent and what each document *should* become (its
:class:`~ops.load.profile.Defect`); the bus says what became of it (the
outcome topics, read into :class:`Observed`); the DMP sandbox says how many
times each document was filed. :func:`account` puts them side by side and
names every document that is **missing** (no outcome), **doubled** (filed or
delivered more than once) or **unexpected** (an outcome other than the one its
defect calls for). A replay is good only when all three lists are empty.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ops.load.profile import Defect

#: the outcome each defect calls for
EXPECTED: Final = {
    Defect.NONE: "delivered",
    Defect.UNQUALIFIED: "held",
    Defect.DUPLICATE: "duplicate-ignored",
    Defect.BROKEN_CDA: "refused",  # the door refuses it before its ACK (AE)
    Defect.BAD_HL7: "refused",
}
_MSH10: Final = re.compile(r"MSH-10 (\S+)")


@dataclass(frozen=True)
class Sent:
    """One document as the replay sent it."""

    seq: int
    control_id: str
    unique_id: str
    defect: Defect
    sha256: str  # of the raw message (bad HL7 is found in the dead letters by it)
    answer: str  # AA / AE from the gateway, OK / ERROR from the library
    copy_of: int | None = None  # a duplicate: the seq of its original


@dataclass
class Observed:
    """What the outcome topics and the DMP sandbox say (filled by the shell)."""

    #: MSH-10 -> the event ids the bus gave it (a resend after an AR gives another)
    events: dict[str, list[str]] = field(default_factory=dict)
    #: event id -> final DMP delivery statuses (DELIVERED, DUPLICATE, REJECTED)
    dmp: dict[str, list[str]] = field(default_factory=dict)
    #: event id -> reason code of the hold
    held: dict[str, str] = field(default_factory=dict)
    #: event id -> "stage: reason code" of its dead letter
    dead: dict[str, str] = field(default_factory=dict)
    #: sha256 of an original refused before it had an event id -> "stage: reason code"
    dead_by_sha: dict[str, str] = field(default_factory=dict)
    duplicates: set[str] = field(default_factory=set)  # event ids ignored as copies
    #: event id -> destinations the route stage chose (DMP, NOTIFY, MSSANTE:...)
    routed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: event id -> destination -> request id -> outcome (DELIVERED, DUPLICATE, REJECTED, or
    #: SCHEDULED for a notification under embargo), for MSSANTE and NOTIFY
    other: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    #: the non-DMP destinations whose sinks ran (accounted); the others are only counted routed
    checked: frozenset[str] = frozenset()
    #: (mails the MSSanté operator sandbox received, distinct Message-IDs among them)
    mails: tuple[int, int] = (0, 0)
    #: document unique id -> ITI-41 requests the DMP sandbox received for it
    filings: Mapping[str, int] = field(default_factory=dict)
    #: (kind, id) pairs the landing counted more than once (statuses per request, holds)
    doubled: list[tuple[str, str]] = field(default_factory=list)
    #: event id -> audit action (RECEIVED, IDENTITY_DECIDED, TRANSCODED, ROUTED, DELIVERED)
    #: -> epoch seconds of its first occurrence: the stage timeline
    stamps: dict[str, dict[str, float]] = field(default_factory=dict)

    def receive(self, audit_detail: str, event_id: str) -> None:
        """A RECEIVED audit: its detail names the MSH-10."""
        found = _MSH10.search(audit_detail or "")
        if found:
            ids = self.events.setdefault(found.group(1), [])
            if event_id not in ids:
                ids.append(event_id)


@dataclass(frozen=True)
class Line:
    seq: int
    expected: str
    outcome: str  # delivered / held: reason / dead-lettered: stage / duplicate-ignored / ...
    problem: str | None  # missing / doubled / unexpected


@dataclass(frozen=True)
class Accounting:
    lines: tuple[Line, ...]
    #: destination -> documents routed there (to see what the replay's sinks did not cover)
    routed: Mapping[str, int]
    #: mails a mailbox received again under a Message-ID it already had (a resend)
    mails_twice: int = 0

    @property
    def missing(self) -> list[Line]:
        return [x for x in self.lines if x.problem == "missing"]

    @property
    def doubled(self) -> list[Line]:
        return [x for x in self.lines if x.problem == "doubled"]

    @property
    def unexpected(self) -> list[Line]:
        return [x for x in self.lines if x.problem == "unexpected"]

    @property
    def ok(self) -> bool:
        return not any(x.problem for x in self.lines) and self.mails_twice == 0

    def outcomes(self) -> Counter[str]:
        """Documents by outcome class (the part before ':')."""
        return Counter(x.outcome.split(":")[0] for x in self.lines)

    def summary(self) -> str:
        parts = [f"{n} {name}" for name, n in sorted(self.outcomes().items())]
        verdict = (
            "all accounted for"
            if self.ok
            else f"{len(self.missing)} missing, {len(self.doubled)} doubled, "
            f"{len(self.unexpected)} unexpected, {self.mails_twice} mails received twice"
        )
        return f"{len(self.lines)} sent: {', '.join(parts)} -- {verdict}"


class AccountingError(AssertionError):
    """A replay lost or doubled documents; the message names them."""


def outcome_of(sent: Sent, seen: Observed) -> str:
    """What became of one sent document, from what the bus reported."""
    if sent.answer == "ERROR":  # the library raised: its caller holds the document and the reason
        return "refused: the producer library raised (its caller keeps the document)"
    if sent.defect is Defect.BAD_HL7 or sent.answer == "AE":
        letter = seen.dead_by_sha.get(sent.sha256)
        if letter:
            return f"refused: {letter}"
        return "refused: no dead letter" if sent.answer == "AE" else "missing"
    return _from_events(seen.events.get(sent.control_id, []), seen)


def _from_events(events: list[str], seen: Observed) -> str:
    statuses = [s for e in events for s in seen.dmp.get(e, [])]
    if any(s in {"DELIVERED", "DUPLICATE"} for s in statuses):
        lacking = [d for e in events for d in _lacking(e, seen)]
        return f"missing: {', '.join(sorted(set(lacking)))}" if lacking else "delivered"
    if "REJECTED" in statuses:
        return "rejected by the DMP"
    for e in events:
        if e in seen.held:
            return f"held: {seen.held[e]}"
        if e in seen.dead:
            return f"dead-lettered: {seen.dead[e]}"
    if events and all(e in seen.duplicates for e in events):
        return "duplicate-ignored"
    return "missing"


def _lacking(event_id: str, seen: Observed) -> list[str]:
    """The accounted destinations the route stage chose for ``event_id`` with no outcome yet."""
    wanted = Counter(
        label.split(":")[0]
        for label in seen.routed.get(event_id, ())
        if label.split(":")[0] in seen.checked
    )
    got = seen.other.get(event_id, {})
    return [d for d, n in wanted.items() if len(got.get(d, {})) < n]


def _problem(sent: Sent, outcome: str, seen: Observed, doubled_events: set[str]) -> str | None:
    if outcome.startswith("missing") or outcome.endswith("no dead letter"):
        return "missing"
    events = seen.events.get(sent.control_id, [])
    if any(e in doubled_events for e in events):
        return "doubled"
    if sent.defect is Defect.NONE and seen.filings.get(sent.unique_id, 0) > 1:
        return "doubled"
    delivered = [s for e in events for s in seen.dmp.get(e, []) if s == "DELIVERED"]
    if len(delivered) > 1:
        return "doubled"
    if outcome.split(":", maxsplit=1)[0] != EXPECTED[sent.defect]:
        return "unexpected"
    return None


def account(sent: Sequence[Sent], seen: Observed) -> Accounting:
    """Each sent document's outcome and problem, and where documents were routed."""
    outcomes = {s.seq: outcome_of(s, seen) for s in sent}
    for s in sent:  # a copy sent on another connection may reach the bus before its original
        overtook = s.copy_of is not None and outcomes[s.seq] == "delivered"
        if overtook and s.copy_of is not None and outcomes[s.copy_of] == "duplicate-ignored":
            outcomes[s.seq] = "duplicate-ignored: overtook its original, filed in its place"
            outcomes[s.copy_of] = "delivered: as its copy, which reached the bus first"
    doubled_events = {ident for kind, ident in seen.doubled if kind == "held"}
    lines = [
        Line(
            s.seq,
            EXPECTED[s.defect],
            outcomes[s.seq],
            _problem(s, outcomes[s.seq], seen, doubled_events),
        )
        for s in sent
    ]
    routed: Counter[str] = Counter()
    for destinations in seen.routed.values():
        routed.update(d.split(":")[0] for d in destinations)
    return Accounting(tuple(lines), dict(routed), mails_twice=seen.mails[0] - seen.mails[1])


def settled(sent: Sequence[Sent], seen: Observed) -> bool:
    """Every document has an outcome (the replay may stop waiting)."""
    return all(not outcome_of(s, seen).startswith("missing") for s in sent)


def check(accounting: Accounting) -> None:
    """Raise :class:`AccountingError` naming the first missing, doubled or unexpected documents."""
    if accounting.ok:
        return
    bad = [x for x in accounting.lines if x.problem][:10]
    listed = (
        "; ".join(f"#{x.seq} {x.problem} (expected {x.expected}, got {x.outcome})" for x in bad)
        or "a mail was sent again under the same Message-ID (see report.md)"
    )
    raise AccountingError(f"{accounting.summary()}: {listed}")
