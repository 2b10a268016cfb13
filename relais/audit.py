"""Build audit records: who did what to which document, when (no patient data)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from relais.contracts import Record
from relais.deadletter import derived_id


@dataclass(frozen=True)
class AuditFacts:
    """What a RECEIVED audit event says of its sender and document, as fields (no patient
    data): the document index searches and counts by them."""

    facility: str | None = None
    application: str | None = None
    message_control_id: str | None = None
    type_code: str | None = None


def audit_event(
    *,
    event_id: str,
    component: str,
    action: str,
    outcome: str,
    now: datetime,
    document_unique_id: str | None = None,
    detail: str | None = None,
    facts: AuditFacts | None = None,
    operator: str | None = None,
) -> Record:
    """An ``AuditEvent``; its id is derived, so a replayed step writes the same record.

    ``facts`` (RECEIVED) are what the document index searches by; ``operator`` names who
    acted, for an operator's action or reveal."""
    given = facts or AuditFacts()
    return {
        "audit_id": derived_id(event_id, component, action),
        "event_id": event_id,
        "at": now,
        "component": component,
        "action": action,
        "outcome": outcome,
        "document_unique_id": document_unique_id,
        "detail": detail,
        "facility": given.facility,
        "application": given.application,
        "message_control_id": given.message_control_id,
        "type_code": given.type_code,
        "operator": operator,
    }
