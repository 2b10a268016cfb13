"""Build audit records: who did what to which document, when (no patient data)."""

from __future__ import annotations

from datetime import datetime

from relais.contracts import Record
from relais.deadletter import derived_id


def audit_event(
    *,
    event_id: str,
    component: str,
    action: str,
    outcome: str,
    now: datetime,
    document_unique_id: str | None = None,
    detail: str | None = None,
) -> Record:
    """An ``AuditEvent``; its id is derived, so a replayed step writes the same record."""
    return {
        "audit_id": derived_id(event_id, component, action),
        "event_id": event_id,
        "at": now,
        "component": component,
        "action": action,
        "outcome": outcome,
        "document_unique_id": document_unique_id,
        "detail": detail,
    }
