"""The identity stage: only a qualified INS goes on (pure core).

The decision here is the spine's minimum, checked on the sealed traits:
an INS is present, its OID is an INS authority, its key is right, and the
sender declared the identity qualified (PID-32 ``QUAL``). Anything else is
held on the pending-identity topic with the reason, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from relais.contracts import Record
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from relais.topics import IDENTITY_PENDING, QUALIFIED, SUBMITTED
from streams.ins import INS_OIDS, ins_key_valid
from streams.stage import Output, Stage, StageContext, StageFailure

STATUSES = ("PROV", "RECUP", "VALI", "QUAL")


@dataclass(frozen=True)
class Decision:
    status: str
    hold_code: str | None = None
    hold_reason: str | None = None


def decide(traits: dict[str, Any], declared: str | None) -> Decision:
    """Status of the identity and, when it cannot proceed, why."""
    status = declared if declared in STATUSES else "PROV"
    ins, oid = traits.get("ins"), traits.get("ins_oid")
    if not ins:
        return Decision(status, "no-ins", "PID-3 carries no INS: fetch it from INSi first")
    if oid not in INS_OIDS:
        return Decision(status, "not-an-ins-oid", f"assigning authority {oid} is not an INS OID")
    if not ins_key_valid(str(ins)):
        return Decision(status, "ins-key-invalid", "the INS matricule fails its key check")
    if status != "QUAL":
        return Decision(
            status,
            "identity-not-qualified",
            f"identity status is {status}; only QUAL (INSi + identity document) may proceed",
        )
    return Decision("QUAL")


def read_traits(record: Record, ctx: StageContext) -> dict[str, Any]:
    return open_traits(record, ctx.keyring)


def open_traits(record: Record, keyring: Keyring) -> dict[str, Any]:
    """The patient's INS and traits, decrypted from the record's identity envelope."""
    patient = record["patient"]
    plain = open_envelope(
        keyring,
        Envelope.from_record(patient["identity"]),
        event_id=record["event_id"],
        purpose="identity",
    )
    try:
        traits = json.loads(plain)
    except ValueError:
        raise StageFailure(
            "identity envelope is not JSON", reason_code="identity-unreadable"
        ) from None
    if not isinstance(traits, dict):
        raise StageFailure("identity envelope is not an object", reason_code="identity-unreadable")
    return traits


def handle(record: Record, ctx: StageContext) -> list[Output]:
    decision = decide(read_traits(record, ctx), record["patient"].get("reliability"))
    key = record["patient"]["patient_key"].encode()
    common = {
        "event_id": record["event_id"],
        "submitted_at": record["submitted_at"],
        "sector": record["sector"],
        "source": record["source"],
        "patient": record["patient"],
        "identity_status": decision.status,
        "document": record["document"],
        "hints": record["hints"],
    }
    if decision.hold_code is None:
        qualified = {**common, "qualified_at": ctx.now, "identity_attributes": []}
        return [Output(QUALIFIED, "IdentityQualified", qualified, key)]
    held = {
        **common,
        "held_at": ctx.now,
        "reason_code": decision.hold_code,
        "reason": decision.hold_reason,
    }
    return [Output(IDENTITY_PENDING, "IdentityHeld", held, key)]


STAGE = Stage(name="identity", source=SUBMITTED, record_type="DocumentSubmitted", handle=handle)
