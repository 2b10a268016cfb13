"""The routing stage: turn a ready document into delivery requests (pure core).

The spine routes to the DMP: a qualified INS and the DESTDMP flag (absent
means yes, as the volet's default) give one DMP filing request. MSSanté and
patient notifications join with the fan-out issue. Every decision is also
written to the audit topic, so a document that goes nowhere is still
accounted for.
"""

from __future__ import annotations

import hashlib

from relais.contracts import Record
from relais.deadletter import derived_id
from relais.topics import AUDIT, DELIVERY_DMP, READY
from streams.stage import Output, Stage, StageContext


def request_id(unique_id: str, action: str, destination: str) -> str:
    """Stable id of a delivery: the sink's idempotency key."""
    return hashlib.sha256(f"{unique_id}|{action}|{destination}".encode()).hexdigest()[:32]


def destinations(record: Record) -> list[str]:
    flags = record["hints"]["flags"]
    if record["identity_status"] == "QUAL" and flags.get("DESTDMP", True):
        return ["DMP"]
    return []


def handle(record: Record, ctx: StageContext) -> list[Output]:
    key = record["patient"]["patient_key"].encode()
    document = record["document"]
    outputs: list[Output] = []
    chosen = destinations(record)
    for destination in chosen:
        request = {
            "event_id": record["event_id"],
            "request_id": request_id(document["unique_id"], document["action"], destination),
            "destination": destination,
            "requested_at": ctx.now,
            "submitted_at": record["submitted_at"],
            "sector": record["sector"],
            "source": record["source"],
            "patient": record["patient"],
            "document": document,
            "recipient": None,
        }
        outputs.append(Output(DELIVERY_DMP, "DeliveryRequest", request, key))
    audit = {
        "audit_id": derived_id(record["event_id"], "route", "ROUTED"),
        "event_id": record["event_id"],
        "at": ctx.now,
        "component": "route",
        "action": "ROUTED",
        "outcome": ",".join(chosen) or "no-destination",
        "document_unique_id": document["unique_id"],
        "detail": None,
    }
    outputs.append(Output(AUDIT, "AuditEvent", audit, key))
    return outputs


STAGE = Stage(name="route", source=READY, record_type="DocumentReady", handle=handle)
