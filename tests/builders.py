"""Records the tests need in the shape a stage would have made them."""

from __future__ import annotations

from datetime import datetime

from relais.contracts import Record

CARRIED = ("event_id", "submitted_at", "sector", "source", "patient", "document", "hints")


def qualified(submitted: Record, now: datetime, status: str = "QUAL") -> Record:
    """The IdentityQualified record the identity stage emits for ``submitted``."""
    record = {f: submitted[f] for f in CARRIED}
    return record | {"qualified_at": now, "identity_status": status, "identity_attributes": []}
