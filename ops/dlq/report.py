"""The report of ``relais dlq replay`` (pure): one row per selected dead letter, then lines.

A row says whether the dead letter was sent back (where to), only would have
been (``--dry-run``), or not (why), and, after ``--wait``, what the stages said
of it; ``ok`` is false when it was not sent, failed again or got no outcome in
time. The rows are the JSON report (``--json``); :func:`report_lines` is the
same for a human. No patient data: ids, stages, reasons and outcomes only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ops.dlq.replay import Outcome, Planned, Sent


def report_row(
    p: Planned,
    sent: Sent | None,
    outcomes: Mapping[str, list[Outcome]],
    *,
    dry_run: bool,
    wait_s: float,
) -> dict[str, Any]:
    """What became of one planned dead letter (``sent``: None when it was not sent)."""
    view = p.view
    row: dict[str, Any] = {
        "dead_letter_id": view.dead_letter_id,
        "stage": view.stage,
        "reason_code": view.reason_code,
        "event_id": view.event_id,
    }
    if p.skip is not None:
        return {**row, "status": "not sent", "why": p.skip, "ok": False}
    if dry_run:
        return {**row, "status": "would be sent", "topic": p.topic, "ok": True}
    assert sent is not None  # planned, not skipped, not a dry run: it was sent
    found = outcomes.get(view.dead_letter_id, [])
    row |= {
        "status": "sent back",
        "topic": sent.topic,
        "partition": sent.partition,
        "offset": sent.offset,
        "outcomes": [o.text for o in found],
    }
    if wait_s <= 0:
        return {**row, "ok": True}
    settled = any(o.final for o in found)
    failed = any(o.failed for o in found)
    if not settled:
        row["outcomes"].append(f"no outcome within {wait_s:g} s (still in flight?)")
    return {**row, "ok": settled and not failed}


def report_lines(report: Sequence[dict[str, Any]], *, waited: bool) -> list[str]:
    """A line per dead letter (its outcomes indented below it), then how many were sent."""
    lines: list[str] = []
    for r in report:
        head = f"{r['dead_letter_id'][:8]} ({r['stage']}: {r['reason_code']})"
        if r["status"] == "not sent":
            lines.append(f"{head}: NOT SENT: {r['why']}")
        elif r["status"] == "would be sent":
            lines.append(f"{head}: would be sent back to {r['topic']}")
        else:
            lines.append(f"{head}: sent back to {r['topic']}")
            lines += [f"    {text}" for text in r.get("outcomes", [])]
    sent = sum(r["status"] == "sent back" for r in report)
    bad = sum(not r["ok"] for r in report)
    tail = f", {bad} need attention" if bad else ""
    if sent and not waited:
        tail += " (--wait SECONDS to see what became of them)"
    lines.append(f"{sent} of {len(report)} sent back{tail}")
    return lines
