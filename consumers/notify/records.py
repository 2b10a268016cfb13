"""What the notification sink writes on the bus (pure): ledger records, statuses, audits.

A ledger entry goes to ``notify.ledger.v1`` on the partition of its request, keyed by
its ``request_id``; a ``DeliveryStatus`` (and, for a final outcome, the ``DELIVERED`` /
``DELIVERY_FAILED`` audit event) is keyed by the patient key, like the requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from consumers.notify.ledger_entry import Entry, Note
from relais.audit_records import delivery
from relais.contracts import Codec, Record
from relais.delivery_status import delivery_status
from relais.sink_loop import Out
from relais.topics import AUDIT, DELIVERY_STATUS

STAGE: Final = "notify-sink"

#: The outcomes that end a request (an audit event goes with their status).
FINAL: Final = frozenset({"DELIVERED", "DUPLICATE", "REJECTED"})


@dataclass(frozen=True)
class NotifyRecords:
    """The records of one sink: its topics (``prefix``), its codec, its clock."""

    prefix: str
    ledger_topic: str
    codec: Codec
    clock: Callable[[], datetime]

    def ledger_record(self, entry: Entry, partition: int) -> Out:
        return Out(self.ledger_topic, entry.to_bytes(), entry.request_id.encode(), partition)

    def status(self, entry: Entry, note: Note, attempt: int) -> Record:
        return delivery_status(
            event_id=entry.event_id,
            request_id=entry.request_id,
            destination="NOTIFY",
            document_unique_id=entry.document_unique_id,
            outcome=note.outcome,
            code=note.code,
            detail=note.detail,
            attempt=attempt,
            now=self.clock(),
            submitted_at=entry.submitted_at,
        )

    def reports(self, entry: Entry, note: Note, attempt: int) -> list[Out]:
        """The status, and for a final one the DELIVERED / DELIVERY_FAILED audit event."""
        record = self.status(entry, note, attempt)
        key = entry.patient_key.encode()
        status = self.codec.encode("DeliveryStatus", record)
        outputs = [Out(DELIVERY_STATUS.name(self.prefix), status, key)]
        if note.outcome in FINAL:
            audit = self.codec.encode("AuditEvent", delivery(record, component=STAGE))
            outputs.append(Out(AUDIT.name(self.prefix), audit, key))
        return outputs
