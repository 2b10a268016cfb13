"""``DeliveryStatus`` records for MSSanté deliveries (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from mss_bridge.tracking import MailRef
from relais.contracts import Record


def status_of_request(
    request: Record,
    *,
    outcome: str,
    code: str | None,
    detail: str | None,
    attempt: int,
    now: datetime,
) -> Record:
    """The status of a ``DeliveryRequest`` the sender handled."""
    return {
        "event_id": request["event_id"],
        "request_id": request["request_id"],
        "destination": "MSSANTE",
        "document_unique_id": request["document"]["unique_id"],
        "outcome": outcome,
        "code": code,
        "detail": detail,
        "attempt": attempt,
        "at": now,
        "submitted_at": request["submitted_at"],
    }


def status_of_ref(ref: MailRef, *, outcome: str, code: str, detail: str, now: datetime) -> Record:
    """The status an acknowledgement (DSN/MDN) reports for the delivery ``ref`` names."""
    return {
        "event_id": ref.event_id,
        "request_id": ref.request_id,
        "destination": "MSSANTE",
        "document_unique_id": ref.document_unique_id,
        "outcome": outcome,
        "code": code,
        "detail": detail,
        "attempt": 1,
        "at": now,
        "submitted_at": datetime.fromtimestamp(ref.submitted_at_ms / 1000, UTC),
    }
