"""One document's journey across every branch, in order (pure).

``relais trace`` reads the audit topic (received, identity decision,
transcoding, routing, deliveries and acknowledgements the components wrote,
duplicates ignored, replays), the delivery statuses, the dead letters and the
business acknowledgements, and :func:`journey` keeps those of one document:
asked by event id or by document unique id, it follows both (a resend of the
same document under another event id belongs to its story). A delivery a sink
both audited and reported as a status is shown once.

Nothing here carries patient data: audit records, statuses and dead-letter
reasons are written without it, and dead letters' originals are used only for
their ids (:class:`ops.dlq.letters.LetterView`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ops.dlq.letters import LetterView
from relais.audit_records import ack_detail, ack_outcome, delivery_detail
from relais.contracts import Record

DOCUMENT = "document"
#: the order of steps said at the same instant (the index sorts by it too)
RANK = {
    "RECEIVED": 0,
    "DUPLICATE_IGNORED": 1,
    "IDENTITY_DECIDED": 2,
    "TRANSCODED": 3,
    "ROUTED": 4,
    "DELIVERED": 5,
    "DELIVERY_FAILED": 5,
    "RETRYING": 5,
    "DUPLICATE": 5,
    "REJECTED": 5,
    "ACKNOWLEDGED": 6,
    "DEAD_LETTERED": 7,
    "REPLAYED": 8,
}
_ACK_BRANCH = {"Z01": "DMP", "Z02": "MSSANTE", "Z03": "MSSANTE"}
_STAGE_BRANCH = {"dmp-sink": "DMP", "mss-sender": "MSSANTE", "notify-sink": "NOTIFY"}
_DELIVERY_ACTIONS = {"DELIVERED", "DELIVERY_FAILED"}


@dataclass(frozen=True)
class Step:
    """One thing that happened to the document, on one branch."""

    at: datetime
    branch: str  # "document" until routing; then the destination: DMP, MSSANTE, NOTIFY
    component: str
    action: str
    outcome: str
    event_id: str
    source: str  # audit | status | dead-letter | ack
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.astimezone(UTC).isoformat()}


@dataclass(frozen=True)
class Journey:
    document: str
    event_ids: tuple[str, ...]
    unique_ids: tuple[str, ...]
    steps: tuple[Step, ...]

    def destinations(self) -> dict[str, str]:
        """The latest word on each delivery branch (DMP: DELIVERED, ...)."""
        last: dict[str, str] = {}
        for step in self.steps:
            if step.action == "ROUTED":  # labels: DMP, MSSANTE:ps-..., NOTIFY, or no-destination
                for label in step.outcome.split(","):
                    if label.split(":")[0] in {"DMP", "MSSANTE", "NOTIFY"}:
                        last.setdefault(label.split(":")[0], "routed, no outcome yet")
            if step.branch == DOCUMENT or step.action == "ACKNOWLEDGED":
                continue
            if step.action == "DEAD_LETTERED":
                last[step.branch] = f"dead-lettered ({step.outcome})"
            else:
                last[step.branch] = step.outcome.split(":", 1)[-1]
        return last

    def to_json(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "event_ids": list(self.event_ids),
            "document_unique_ids": list(self.unique_ids),
            "steps": [s.to_json() for s in self.steps],
            "destinations": self.destinations(),
        }


Pair = tuple[str | None, str | None]  # (event id, document unique id)


def _ids_of(pairs: Sequence[Pair], document: str) -> tuple[set[str], set[str]]:
    """Event ids and document ids linked to ``document`` (one hop each way, to a fixpoint)."""
    events, uniques = {document}, {document}
    while True:
        grown = False
        for event_id, unique_id in pairs:
            linked = (event_id is not None and event_id in events) or (
                unique_id is not None and unique_id in uniques
            )
            if not linked:
                continue
            for known, value in ((events, event_id), (uniques, unique_id)):
                if value is not None and value not in known:
                    known.add(value)
                    grown = True
        if not grown:
            return events, uniques


def journey(
    document: str,
    *,
    audits: Sequence[Record],
    statuses: Sequence[Record] = (),
    letters: Sequence[LetterView] = (),
    acks: Sequence[Record] = (),
) -> Journey:
    """The steps of ``document`` (event id or document unique id), in time order."""
    pairs: list[Pair] = [(r["event_id"], r["document_unique_id"]) for r in [*audits, *statuses]]
    pairs += [(v.event_id, v.document_unique_id) for v in letters]
    pairs += [(a["event_id"], None) for a in acks]
    events, uniques = _ids_of(pairs, document)

    def mine(event_id: str | None, unique_id: str | None) -> bool:
        return (event_id in events) or (unique_id is not None and unique_id in uniques)

    steps = _steps(mine, audits=audits, statuses=statuses, letters=letters, acks=acks)
    # ``document`` starts in both sets: keep it only where some record names it so
    named_events, named_uniques = {e for e, _ in pairs}, {u for _, u in pairs}
    return Journey(
        document=document,
        event_ids=tuple(sorted(e for e in events if e != document or e in named_events)),
        unique_ids=tuple(sorted(u for u in uniques if u != document or u in named_uniques)),
        steps=tuple(steps),
    )


def _steps(
    mine: Callable[[str | None, str | None], bool],
    *,
    audits: Sequence[Record],
    statuses: Sequence[Record],
    letters: Sequence[LetterView],
    acks: Sequence[Record],
) -> list[Step]:
    """The steps of the records ``mine`` keeps (by event id, document unique id), in time
    order (:func:`arrange`)."""
    return arrange(
        audits=[audit_step(a) for a in audits if mine(a["event_id"], a["document_unique_id"])],
        audit_ids=[a["audit_id"] for a in audits if mine(a["event_id"], a["document_unique_id"])],
        statuses=[status_step(s) for s in statuses if mine(s["event_id"], s["document_unique_id"])],
        acks=[ack_step(a) for a in acks if mine(a["event_id"], None)],
        letters=[letter_step(v) for v in letters if mine(v.event_id, v.document_unique_id)],
    )


def arrange(
    *,
    audits: Sequence[Step],
    audit_ids: Sequence[str],
    statuses: Sequence[Step] = (),
    acks: Sequence[Step] = (),
    letters: Sequence[Step] = (),
) -> list[Step]:
    """One document's steps in time order (each kind in the order it was read): an audit
    read twice (same ``audit_ids`` entry) is kept once, and a status or acknowledgement an
    audit already said (same event, time, outcome) is left out. The document index
    (:mod:`ops.index.store`) arranges its rows with this too."""
    steps: list[Step] = []
    seen: set[str] = set()
    for audit_id, step in zip(audit_ids, audits, strict=True):
        if audit_id not in seen:
            seen.add(audit_id)
            steps.append(step)
    said = {(s.event_id, s.at, s.outcome) for s in steps}
    steps += [s for s in [*statuses, *acks] if (s.event_id, s.at, s.outcome) not in said]
    steps += letters
    steps.sort(key=lambda s: (s.at, RANK.get(s.action, 9)))
    return steps


def audit_step(a: Record) -> Step:
    action, outcome = a["action"], a["outcome"]
    branch = DOCUMENT
    if action in _DELIVERY_ACTIONS and ":" in outcome:
        branch = outcome.split(":", 1)[0]
    elif action == "ACKNOWLEDGED":
        branch = _ACK_BRANCH.get(outcome.removeprefix("ZAM^")[:3], DOCUMENT)
    return Step(
        a["at"], branch, a["component"], action, outcome, a["event_id"], "audit", a["detail"]
    )


def status_step(s: Record) -> Step:
    destination = s["destination"]
    return Step(
        s["at"],
        destination,
        f"{destination.lower()} delivery",
        s["outcome"],
        f"{destination}:{s['outcome']}",
        s["event_id"],
        "status",
        delivery_detail(s),
    )


def ack_step(a: Record) -> Step:
    return Step(
        a["at"],
        _ACK_BRANCH.get(a["kind"], DOCUMENT),
        "acks",
        "ACKNOWLEDGED",
        ack_outcome(a),
        a["event_id"],
        "ack",
        ack_detail(a),
    )


def letter_step(v: LetterView) -> Step:
    branch = next((b for stage, b in _STAGE_BRANCH.items() if v.stage.startswith(stage)), DOCUMENT)
    return Step(
        v.occurred_at,
        branch,
        v.stage,
        "DEAD_LETTERED",
        v.reason_code,
        v.event_id or v.dead_letter_id,
        "dead-letter",
        f"{v.reason}\ndead letter {v.dead_letter_id} (relais dlq show {v.dead_letter_id[:8]})",
    )


def journey_lines(j: Journey) -> list[str]:
    """The journey for a human: one line a step, details indented, then each branch's end."""
    ids = ", ".join(j.event_ids) or "-"
    lines = [f"journey of {j.document} (event {ids})"]
    if j.unique_ids:
        lines.append(f"document {', '.join(j.unique_ids)}")
    lines.append("")
    width = max((len(s.component) for s in j.steps), default=8)
    branch_width = max((len(s.branch) for s in j.steps), default=8)
    for s in j.steps:
        at = s.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
        lines.append(
            f"{at}  {s.branch.ljust(branch_width)}  {s.component.ljust(width)}  "
            f"{s.action.ljust(17)} {s.outcome}"
        )
        lines += [f"{' ' * 26}{line}" for line in (s.detail or "").splitlines() if line.strip()]
    ends = j.destinations()
    lines.append("")
    if ends:
        lines += [f"{branch}: {word}" for branch, word in sorted(ends.items())]
    else:
        lines.append("no delivery yet")
    return lines
