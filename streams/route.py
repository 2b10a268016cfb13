"""The routing stage: turn a ready document into delivery requests (pure core).

The spine routes to the DMP: a qualified INS and the DESTDMP flag (absent
means yes, as the volet's default) give one DMP filing request. The release
policy (streams/release_policy.toml) decides who may see the document and
from when; the decision travels with each request and its explanation is in
the audit record (`relais explain`). MetaDMPMSS flag combinations that the
volet forbids are refused with its rule, never guessed. MSSanté and
patient notifications join with the fan-out issue. Every decision is also
written to the audit topic, so a document that goes nowhere is still
accounted for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from relais.audit import audit_event
from relais.contracts import Record
from relais.topics import AUDIT, DELIVERY_DMP, READY
from streams.release_policy import (
    DEFAULT_POLICY,
    Rule,
    decide,
    explain,
    mssante_combination_problem,
)
from streams.stage import Output, Stage, StageContext, StageFailure


def request_id(unique_id: str, action: str, destination: str) -> str:
    """Stable id of a delivery: the sink's idempotency key."""
    return hashlib.sha256(f"{unique_id}|{action}|{destination}".encode()).hexdigest()[:32]


def destinations(record: Record) -> list[str]:
    flags = record["hints"]["flags"]
    if record["identity_status"] == "QUAL" and flags.get("DESTDMP", True):
        return ["DMP"]
    return []


def release_of(record: Record, policy: Sequence[Rule] = DEFAULT_POLICY) -> tuple[Record, str]:
    """The release decision for a ready document, as a record and as text."""
    flags = record["hints"]["flags"]
    problem = mssante_combination_problem(flags)
    if problem is not None:
        raise StageFailure(
            f"MetaDMPMSS flags not allowed: {problem}", reason_code="invalid-flag-combination"
        )
    decision = decide(
        policy,
        type_code=record["document"]["type_code"],
        sector=record["sector"],
        flags=flags,
        # legalAuthenticator/time; a document without one counts from its hand-over
        validated_at=record.get("validated_at") or record["submitted_at"],
        cda_model=record.get("cda_model"),
        modalities=record.get("modalities") or (),
    )
    text = explain(decision)
    release = {
        "patient_visible_from": decision.patient_visible_from,
        "hidden_from_professionals": decision.hidden_from_professionals,
        "hidden_from_legal_representatives": decision.hidden_from_legal_representatives,
        "explanation": text,
    }
    return release, text


def handle(record: Record, ctx: StageContext) -> list[Output]:
    return _route(record, ctx, DEFAULT_POLICY)


def route_stage(policy: Sequence[Rule]) -> Stage:
    """The stage applying ``policy`` (the operators' TOML, or the bundled default)."""

    def handle_with_policy(record: Record, ctx: StageContext) -> list[Output]:
        return _route(record, ctx, policy)

    return Stage("route", READY, "DocumentReady", handle_with_policy)


def _route(record: Record, ctx: StageContext, policy: Sequence[Rule]) -> list[Output]:
    key = record["patient"]["patient_key"].encode()
    document = record["document"]
    outputs: list[Output] = []
    release, explanation = release_of(record, policy)
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
            "release": release,
        }
        outputs.append(Output(DELIVERY_DMP, "DeliveryRequest", request, key))
    audit = audit_event(
        event_id=record["event_id"],
        component="route",
        action="ROUTED",
        outcome=",".join(chosen) or "no-destination",
        now=ctx.now,
        document_unique_id=document["unique_id"],
        detail=explanation,
    )
    outputs.append(Output(AUDIT, "AuditEvent", audit, key))
    return outputs


STAGE = Stage(name="route", source=READY, record_type="DocumentReady", handle=handle)
