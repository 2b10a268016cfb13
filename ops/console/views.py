"""What the pages show, computed from the index's answers and the query string (pure).

Forms come in as strings; :func:`search_of` and :func:`letter_search_of` turn them into
the index's queries (or say which field is wrong), :func:`timeline` turns a journey into
rows a template lays out. Nothing here carries patient data: patient keys are shown
shortened, documents by their ids.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from ops.dlq.letters import parse_when
from ops.index.model import DESTINATIONS, STATUSES, DocumentRow, LetterSearch, Search
from ops.trace.journey import DOCUMENT, Journey, Step

PAGE = 50
KEY_SHOWN = 16
SEARCH_FIELDS = (
    "sender",
    "msh10",
    "document",
    "patient",
    "type",
    "status",
    "destination",
    "since",
    "until",
)
_LETTER_ID = re.compile(r"^dead letter (\S+)", re.MULTILINE)
_BY = re.compile(r"^(?:by|operator) ([^\s:]+)")
_PATIENT_LIKE = re.compile(r"\d{5,}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}")
_BETWEEN_DIGITS = re.compile(r"(?<=\d)[\s./-]+(?=\+?\d)")
_MONTHS = (
    "janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre|"
    "novembre|décembre|decembre|january|february|march|april|may|june|july|august|"
    "september|october|november|december|janv?|f[ée]vr?|feb|avr|apr|juil|jul|aug|sept?|"
    "oct|nov|d[ée]c"
)
_WORDED_DATE = re.compile(
    rf"\b(?:\d{{1,2}}(?:er|st|nd|rd|th)?\.?\s+(?:{_MONTHS})\b\.?|(?:{_MONTHS})\b\.?\s+"
    rf"\d{{1,2}}(?:er|st|nd|rd|th)?\b,?\s+\d{{2,4}}|(?:{_MONTHS})\b\.?\s+\d{{4}})",
    re.IGNORECASE,
)
_PHONE = re.compile(r"\+\d{2,3}[\s./-]*\d|\b0\d(?:[\s./-]*\d{2}){4}\b")
BRANCHES = (DOCUMENT, *DESTINATIONS)


def when(at: datetime | None) -> str:
    if at is None:
        return "-"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _time(text: str, name: str, now: datetime, errors: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        return parse_when(text, now)
    except ValueError as exc:
        errors.append(f"{name}: {exc}")
        return None


def _after(text: str, errors: list[str]) -> tuple[datetime, str] | None:
    """The keyset cursor ``<ISO time>~<event id>`` of a "next page" link."""
    if not text:
        return None
    at, _, event_id = text.partition("~")
    try:
        return datetime.fromisoformat(at), event_id
    except ValueError:
        errors.append("after: not a page cursor (follow the 'next page' link)")
        return None


def search_of(params: Mapping[str, str], now: datetime) -> tuple[Search, list[str]]:
    """The index search the form asks for, and what is wrong in it (nothing: [])."""
    errors: list[str] = []
    value = {k: (params.get(k) or "").strip() for k in (*SEARCH_FIELDS, "after")}
    if value["patient"] and len(value["patient"]) < 8:
        errors.append("patient key: give 8 characters at least")
    if value["status"] and value["status"] not in STATUSES:
        errors.append(f"status: one of {', '.join(STATUSES)}")
    if value["destination"] and value["destination"] not in DESTINATIONS:
        errors.append(f"destination: one of {', '.join(DESTINATIONS)}")
    search = Search(
        sender=value["sender"] or None,
        message_control_id=value["msh10"] or None,
        document=value["document"] or None,
        patient_key=value["patient"] or None,
        type_code=value["type"] or None,
        status=value["status"] or None,
        destination=value["destination"] or None,
        since=_time(value["since"], "received since", now, errors),
        until=_time(value["until"], "received until", now, errors),
        limit=PAGE,
        after=_after(value["after"], errors),
    )
    return search, errors


def next_page(params: Mapping[str, str], rows: list[DocumentRow], limit: int) -> str | None:
    """The query string of the next page, when this one is full."""
    if len(rows) < limit or rows[-1].received_at is None:
        return None
    last = rows[-1]
    assert last.received_at is not None
    kept = {k: params[k] for k in SEARCH_FIELDS if params.get(k)}
    return urlencode({**kept, "after": f"{last.received_at.isoformat()}~{last.event_id}"})


def letter_search_of(params: Mapping[str, str], now: datetime) -> tuple[LetterSearch, list[str]]:
    errors: list[str] = []
    value = {
        k: (params.get(k) or "").strip()
        for k in ("stage", "reason", "sender", "document", "since", "until")
    }
    search = LetterSearch(
        stage=value["stage"] or None,
        reason_code=value["reason"] or None,
        sender=value["sender"] or None,
        document=value["document"] or None,
        since=_time(value["since"], "since", now, errors),
        until=_time(value["until"], "until", now, errors),
        unreplayed=params.get("unreplayed") in {"on", "1", "true"},
    )
    return search, errors


def window_of(params: Mapping[str, str], now: datetime) -> tuple[datetime, list[str]]:
    """The start of a stats window: ``?since=`` (24h by default)."""
    errors: list[str] = []
    since = _time((params.get("since") or "").strip(), "since", now, errors)
    return since or now - timedelta(hours=24), errors


@dataclass(frozen=True)
class StepRow:
    """One journey step as the timeline shows it."""

    at: str
    branch: str
    component: str
    action: str
    outcome: str
    event_id: str
    source: str
    detail: tuple[str, ...]
    operator: str | None
    dead_letter: str | None

    @property
    def css(self) -> str:
        return f"branch-{self.branch.lower()}"


def operator_of(step: Step) -> str | None:
    """Who acted, for an operator's step: the step's ``operator``, else its detail's "by"."""
    given = getattr(step, "operator", None)
    if isinstance(given, str) and given:
        return given
    if step.component not in {"console", "dlq", "identity", "identity-cli"}:
        return None
    for line in (step.detail or "").splitlines():
        found = _BY.match(line.strip())
        if found:
            return found.group(1)
    return None


def timeline(journey: Journey) -> list[StepRow]:
    rows = []
    for step in journey.steps:
        letter = _LETTER_ID.search(step.detail or "") if step.action == "DEAD_LETTERED" else None
        rows.append(
            StepRow(
                at=step.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z",
                branch=step.branch,
                component=step.component,
                action=step.action,
                outcome=step.outcome,
                event_id=step.event_id,
                source=step.source,
                detail=tuple(line for line in (step.detail or "").splitlines() if line.strip()),
                operator=operator_of(step),
                dead_letter=letter.group(1) if letter else None,
            )
        )
    return rows


def release_explanation(journey: Journey) -> list[str]:
    """The release policy's explanation: the latest ROUTED step's detail lines."""
    routed = [s for s in journey.steps if s.action == "ROUTED" and s.detail]
    if not routed:
        return []
    return [line for line in (routed[-1].detail or "").splitlines() if line.strip()]


def replays_in(journey: Journey, dead_letter_id: str) -> list[Step]:
    """The REPLAYED steps of one dead letter, oldest first."""
    first = f"dead-letter {dead_letter_id}"
    return [
        s
        for s in journey.steps
        if s.action == "REPLAYED" and (s.detail or "").splitlines()[:1] == [first]
    ]


def short_key(key: str | None) -> str:
    return (key or "-")[:KEY_SHOWN]


def checked_text(text: object, what: str, *, required: bool) -> str | None:
    """A reason or comment for the audit trail: short, and no INS, NIR, phone number or
    date in it (digits split by spaces, dots or dashes count as one number)."""
    value = text.strip() if isinstance(text, str) else ""
    if not value:
        if required:
            raise ValueError(f"{what}: say why (it is written to the audit trail)")
        return None
    if len(value) > 200 or patient_like(value):
        raise ValueError(
            f"{what}: at most 200 characters and no patient data (no number of 5 digits or "
            "more, even split by spaces or dots, no phone number, no date, in figures or "
            "words); the audit already names the document or patient by its id"
        )
    return value


def patient_like(text: str) -> bool:
    """Whether ``text`` looks like it carries a NIR, an INS, a phone number or a date."""
    joined = _BETWEEN_DIGITS.sub("", text)
    return bool(
        _PATIENT_LIKE.search(text)
        or _PATIENT_LIKE.search(joined)
        or _PHONE.search(text)
        or _WORDED_DATE.search(text)
    )
