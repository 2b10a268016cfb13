"""``DeliveryStatus`` records of MSSanté acknowledgements (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from mss_bridge.tracking import MailRef
from relais.contracts import Record
from relais.delivery_status import delivery_status


def status_of_ref(ref: MailRef, *, outcome: str, code: str, detail: str, now: datetime) -> Record:
    """The status an acknowledgement (DSN/MDN) reports for the delivery ``ref`` names."""
    return delivery_status(
        event_id=ref.event_id,
        request_id=ref.request_id,
        destination="MSSANTE",
        document_unique_id=ref.document_unique_id,
        outcome=outcome,
        code=code,
        detail=detail,
        attempt=1,
        now=now,
        submitted_at=datetime.fromtimestamp(ref.submitted_at_ms / 1000, UTC),
    )
