"""``DeliveryStatus`` records: what happened to one delivery request (pure).

Every sink (DMP, MSSanté sender and watcher, notify) reports with these two
builders, so a status always has the same shape whoever wrote it.
"""

from __future__ import annotations

from datetime import datetime

from relais.contracts import Record


def delivery_status(
    *,
    event_id: str,
    request_id: str,
    destination: str,
    document_unique_id: str,
    outcome: str,
    code: str | None,
    detail: str | None,
    attempt: int,
    now: datetime,
    submitted_at: datetime,
) -> Record:
    return {
        "event_id": event_id,
        "request_id": request_id,
        "destination": destination,
        "document_unique_id": document_unique_id,
        "outcome": outcome,
        "code": code,
        "detail": detail,
        "attempt": attempt,
        "at": now,
        "submitted_at": submitted_at,
    }


def status_of(
    request: Record,
    *,
    outcome: str,
    code: str | None,
    detail: str | None,
    attempt: int,
    now: datetime,
) -> Record:
    """The status of a ``DeliveryRequest`` a sink handled (its destination, its ids)."""
    return delivery_status(
        event_id=request["event_id"],
        request_id=request["request_id"],
        destination=request["destination"],
        document_unique_id=request["document"]["unique_id"],
        outcome=outcome,
        code=code,
        detail=detail,
        attempt=attempt,
        now=now,
        submitted_at=request["submitted_at"],
    )
