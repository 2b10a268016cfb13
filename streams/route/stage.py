"""The routing stage: turn a ready document into delivery requests (pure core).

Which destinations a document goes to — the DMP, the professionals' and the
patient's MSSanté mailboxes, a patient notification — and how replacements
and deletions follow the version they replace: :mod:`streams.route.fanout`. The
release policy (streams/route/release_policy.toml) decides who may see the
document and from when; the decision travels with each request and its
explanation is in the audit record (`relais explain`). MetaDMPMSS flag
combinations that the volet forbids are refused with its rule, never
guessed. Every decision is also written to the audit topic, so a document
that goes nowhere is still accounted for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Final

from domain.metadata_flags import mssante_combination_problem
from relais.audit import audit_event
from relais.contracts import Record
from relais.deadletter import StageFailure
from relais.envelope import Envelope, open_envelope, seal
from relais.patient_traits import open_traits
from relais.topics import AUDIT, DELIVERY_DMP, DELIVERY_MSSANTE, DELIVERY_NOTIFY, READY
from streams.route import fanout
from streams.route.release_policy import (
    DEFAULT_POLICY,
    Rule,
    decide,
    explain,
)
from streams.stage import Output, Stage, StageContext


def request_id(unique_id: str, action: str, destination: str) -> str:
    """Stable id of a delivery: the sink's idempotency key."""
    return hashlib.sha256(f"{unique_id}|{action}|{destination}".encode()).hexdigest()[:32]


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

    return Stage("route", READY, "DocumentReady", handle_with_policy, stateful=True)


def _route(record: Record, ctx: StageContext, policy: Sequence[Rule]) -> list[Output]:
    key = record["patient"]["patient_key"].encode()
    document = record["document"]
    state = ctx.state if ctx.state is not None else {}
    release, explanation = release_of(record, policy)
    flags = record["hints"]["flags"]
    action = document["action"]
    fresh = fanout.plan(
        identity_status=record["identity_status"],
        flags=flags,
        recipients=_recipients(record, ctx) if flags.get("DESTMSSANTEPS") else (),
        ins=_ins(record, ctx) if flags.get("DESTMSSANTEPAT") else None,
        patient_may_see=release["patient_visible_from"] is not None,
        action=action,
    )
    history_id = document["unique_id"] if action == "DELETE" else document.get("parent_unique_id")
    previous = fanout.recall(state, ctx.keyring, history_id) if history_id else ()
    chosen = fanout.with_history(
        fresh, action=action, previous=previous, parent_known=bool(previous)
    )
    if action != "DELETE":
        fanout.remember(state, ctx.keyring, document["unique_id"], chosen.targets)
    outputs = [_request(record, target, release, ctx) for target in chosen.targets]
    detail = "\n".join((explanation, *chosen.notes))
    audit = audit_event(
        event_id=record["event_id"],
        component="route",
        action="ROUTED",
        outcome=",".join(t.label for t in chosen.targets) or "no-destination",
        now=ctx.now,
        document_unique_id=document["unique_id"],
        detail=detail,
    )
    outputs.append(Output(AUDIT, "AuditEvent", audit, key))
    return outputs


TOPICS: Final = {
    fanout.DMP: DELIVERY_DMP,
    fanout.MSSANTE: DELIVERY_MSSANTE,
    fanout.NOTIFY: DELIVERY_NOTIFY,
}


def _request(record: Record, target: fanout.Target, release: Record, ctx: StageContext) -> Output:
    document = record["document"]
    recipient = None
    if target.recipient is not None:
        recipient = seal(
            ctx.keyring,
            target.recipient.encode(),
            event_id=record["event_id"],
            purpose="recipient",
        ).to_record()
    request = {
        "event_id": record["event_id"],
        "request_id": request_id(document["unique_id"], document["action"], target.discriminator),
        "destination": target.destination,
        "requested_at": ctx.now,
        "submitted_at": record["submitted_at"],
        "sector": record["sector"],
        "source": record["source"],
        "patient": record["patient"],
        "document": document,
        "recipient": recipient,
        "release": release,
        "flags": dict(record["hints"]["flags"]),
    }
    key = record["patient"]["patient_key"].encode()
    return Output(TOPICS[target.destination], "DeliveryRequest", request, key)


def _recipients(record: Record, ctx: StageContext) -> list[str]:
    """The professionals' addresses the producer gave (PRT RCT), unsealed."""
    sealed = record["hints"].get("recipients")
    if not sealed:
        return []
    plain = open_envelope(
        ctx.keyring, Envelope.from_record(sealed), event_id=record["event_id"], purpose="recipient"
    )
    try:
        addresses = json.loads(plain)
    except ValueError:
        raise StageFailure(
            "the MSSanté recipients are not a JSON list", reason_code="recipients-unreadable"
        ) from None
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise StageFailure(
            "the MSSanté recipients are not a list of addresses",
            reason_code="recipients-unreadable",
        )
    return addresses


def _ins(record: Record, ctx: StageContext) -> str | None:
    ins = open_traits(record, ctx.keyring).get("ins")
    return str(ins) if ins else None


STAGE = Stage(name="route", source=READY, record_type="DocumentReady", handle=handle, stateful=True)
