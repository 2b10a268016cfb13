"""What the DMP sink emits for a final outcome: status, dead letter, audit, ZAM^Z01.

A delivered, duplicate or refused request gets its ``DeliveryStatus`` and its audit
event; a refusal also a dead letter (replayable: ``relais dlq replay`` files it again once
the cause is fixed) whose reason carries the DMP's code and what it means
(:mod:`consumers.dmp.error_codes`); and, when the producer asked for it, a ZAM^Z01 whose
ERR-5 is the DMP's code with the table's label and whose ERR-8 says what the sender can do.
The DMP's free text never travels: it may echo identifiers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumers.dmp.business_ack import asked, business_ack
from consumers.dmp.error_codes import decide
from consumers.dmp.reuse import NON_IDENTICAL, refusal, zam_text
from relais.audit_records import acknowledged, delivery
from relais.contracts import Record
from relais.deadletter import derived_id
from relais.delivery_ledger import Outcome
from relais.delivery_metrics import DeliveryMetrics
from relais.delivery_status import status_of
from relais.sink_loop import Out, Outputs, SinkStage
from relais.topics import AUDIT, BUSINESS_ACKS, DELIVERY_STATUS


@dataclass(frozen=True)
class Where:
    """The request's record on the bus and the attempt being made."""

    message: Any
    attempt: int


class Reporter:
    """Builds the records of final outcomes for the sink ``stage`` under ``prefix``."""

    def __init__(
        self,
        stage: SinkStage,
        prefix: str,
        deliveries: DeliveryMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.stage, self.prefix, self.deliveries, self.clock = stage, prefix, deliveries, clock
        self.codec = stage.codec

    def final(
        self,
        request: Record,
        outcome: Outcome,
        code: str | None,
        where: Where,
        *,
        detail: str | None = None,
        count: bool = True,
    ) -> Outputs:
        """The status (+ dead letter when refused, + ZAM^Z01 when asked) of a final outcome."""
        now = self.clock()
        if count:
            self.deliveries.outcome(
                outcome,
                submitted_at=request["submitted_at"],
                now=now,
                sector=request["sector"],
                type_code=request["document"]["type_code"],
            )
        refused: Outputs = []
        if outcome == Outcome.REJECTED:
            failure = refusal(code, request["document"]["unique_id"])
            detail = failure.reason
            refused.append(self.stage.dead_letter(failure, where.message, request["event_id"]))
        status = status_of(
            request, outcome=outcome, code=code, detail=detail, attempt=where.attempt, now=now
        )
        audited = delivery(status, component=self.stage.name)
        if code == NON_IDENTICAL:  # one refusal per event: the first content's audit stays
            audited["audit_id"] = derived_id(request["event_id"], self.stage.name, "id-reused")
        audit = self.codec.encode("AuditEvent", audited)
        return [
            Out(DELIVERY_STATUS.name(self.prefix), self.codec.encode("DeliveryStatus", status)),
            *refused,
            Out(AUDIT.name(self.prefix), audit),
            *self._business_ack(request, outcome, code, now),
        ]

    def _business_ack(
        self, request: Record, outcome: Outcome, code: str | None, now: datetime
    ) -> Outputs:
        """The ZAM^Z01 and its audit event, when the producer asked for one."""
        if not asked(request, "Z01"):
            return []
        accepted = outcome != Outcome.REJECTED
        unique_id = request["document"]["unique_id"]
        reuse = code == NON_IDENTICAL  # its own ZAM, not the first content's
        row = decide(code)
        ack = business_ack(
            request,
            kind="Z01",
            accepted=accepted,
            now=now,
            code=code,
            text=zam_text(unique_id) if reuse else row.text,
            ack_key=request["event_id"] if reuse else None,
            label=row.label,
        )
        acked = acknowledged(ack, component=self.stage.name, document_unique_id=unique_id)
        return [
            Out(BUSINESS_ACKS.name(self.prefix), self.codec.encode("BusinessAck", ack)),
            Out(AUDIT.name(self.prefix), self.codec.encode("AuditEvent", acked)),
        ]
