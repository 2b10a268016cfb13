"""Held and blocked patients as an identitovigilance operator sees them (pure).

A patient is shown by its pseudonymised key (the HMAC of its INS that keys its records
on the bus), never by name: how many documents wait, since when, why, from which
senders, and the block (reason, since, the senders it holds). The traits are shown only
when the operator asks (``--reveal``), opened from the held documents' envelopes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from relais.contracts import Record
from streams.identity.state import Held, PatientState

#: the traits a reveal shows, in this order
TRAITS = ("ins", "birth_name", "given_names", "birth_date", "sex", "birthplace_code")
KEY_SHOWN = 16  # characters of the patient key a list shows (any 8+ select a patient)


@dataclass(frozen=True)
class PatientView:
    """One patient that holds documents or is blocked, and its alerts."""

    key: str
    state: PatientState
    alerts: tuple[Record, ...] = field(default=())

    @property
    def since_ms(self) -> int | None:
        times = [h.held_at_ms for h in self.state.held]
        if self.state.blocked_at_ms is not None:
            times.append(self.state.blocked_at_ms)
        return min(times) if times else None

    def summary(self) -> dict[str, Any]:
        """The view as JSON-ready data (no patient data)."""
        s = self.state
        return {
            "patient_key": self.key,
            "blocked": s.blocked,
            "blocked_since": _iso(s.blocked_at_ms),
            "blocked_senders": list(s.blocked_senders),
            "held": len(s.held),
            "since": _iso(self.since_ms),
            "reasons": dict(Counter(h.reason_code for h in s.held)),
            "senders": sorted({h.facility for h in s.held}),
            "documents": [
                {
                    "event_id": h.event_id,
                    "sender": h.facility,
                    "reason": h.reason_code,
                    "held_at": _iso(h.held_at_ms),
                }
                for h in s.held
            ],
            "alerts": [a["reason_code"] for a in self.alerts],
        }


def patient_views(
    states: Mapping[str, PatientState],
    alerts: Sequence[Record] = (),
) -> list[PatientView]:
    """The patients that hold documents or are blocked, the longest waiting first."""
    by_key: dict[str, list[Record]] = {}
    for alert in alerts:
        by_key.setdefault(alert["patient_key"], []).append(alert)
    views = [
        PatientView(key, state, tuple(by_key.get(key, ())))
        for key, state in states.items()
        if state.held or state.blocked
    ]
    return sorted(views, key=lambda v: (v.since_ms or 0, v.key))


def select(views: list[PatientView], wanted: str) -> PatientView:
    """The one patient whose key starts with ``wanted`` (8 characters at least)."""
    if len(wanted) < 8:
        raise LookupError("give at least the first 8 characters of the patient key")
    found = [v for v in views if v.key.startswith(wanted)]
    if not found:
        raise LookupError(f"no held or blocked patient {wanted} (see `relais identity list`)")
    if len(found) > 1:
        raise LookupError(f"{wanted} names {len(found)} patients: give more characters")
    return found[0]


def unknown_documents(view: PatientView, event_ids: tuple[str, ...]) -> list[str]:
    """The event ids that are no held document of this patient."""
    held = {h.event_id for h in view.state.held}
    return [e for e in event_ids if e not in held]


Reveal = Callable[[Held], Mapping[str, Any]]


def list_lines(views: list[PatientView], reveal: Reveal | None = None) -> list[str]:
    """A paragraph per patient; with ``reveal``, each held document's traits too."""
    if not views:
        return ["no held or blocked patient"]
    lines: list[str] = []
    for v in views:
        lines += _patient_lines(v, reveal)
    blocked = sum(1 for v in views if v.state.blocked)
    held = sum(len(v.state.held) for v in views)
    lines.append(f"{len(views)} patient(s), {blocked} blocked, {held} document(s) held")
    return lines


def _patient_lines(v: PatientView, reveal: Reveal | None) -> list[str]:
    s = v.state
    reasons = ", ".join(f"{r} x{n}" for r, n in Counter(h.reason_code for h in s.held).items())
    senders = ", ".join(sorted({h.facility for h in s.held})) or "-"
    head = f"patient {v.key[:KEY_SHOWN]}  held {len(s.held)} since {_iso(v.since_ms) or '-'}"
    lines = [head, f"  senders: {senders}   reasons: {reasons or '-'}"]
    if s.blocked:
        scope = ", ".join(s.blocked_senders) or "every sender"
        lines.append(
            f"  BLOCKED {s.blocked} since {_iso(s.blocked_at_ms) or '-'}; holds: {scope}"
            + (f"; {len(v.alerts)} alert(s)" if v.alerts else "")
        )
    for h in s.held:
        lines.append(f"  - {h.event_id}  {h.facility}  {h.reason_code}  {_iso(h.held_at_ms)}")
        if reveal is not None:
            traits = reveal(h)
            lines.append("      " + "  ".join(f"{t}={traits.get(t) or ''}" for t in TRAITS))
    return lines


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
