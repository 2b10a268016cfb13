"""Identitovigilance operations on one patient: release, reject, unblock, expire.

An operator's decision (``relais identity release|reject|unblock``) and the stage's
own hold expiry reach the identity stage as ``IdentityCommand`` records on
``identity.commands`` (keyed by the patient key, so they meet the patient's state
in the one place that writes it, in order with its documents):

* RELEASE: the operator vouches for the held documents' identity. Each is decided
  again with the block and the comparison with the reference traits lifted for it
  (the INS checks, the status and INSi still apply; the reference stays as it was):
  it goes on, or stays held with its new reason.
* REJECT: the held documents become dead letters (stage ``identity``, reason code
  ``identity-rejected``, the original being the held ``DocumentSubmitted`` bytes read
  from ``documents.submitted``), for their sender to hear of (ZAM N) and correct.
* UNBLOCK: the identity was corrected; the block is lifted and the held documents
  are re-checked in order. One that still contradicts the reference blocks again.
* EXPIRE: held documents older than the hold expiry become dead letters
  (``identity-expired``, same shape as a rejection).

Each action on a document and each command writes an audit event naming the
operator. Everything is derived from the command and the state, so a replayed
command gives the same records (and, once applied, nothing more).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from relais.audit import audit_event
from relais.contracts import Codec, Record
from relais.deadletter import Failure, Origin, dead_letter, derived_id
from relais.keyring import Keyring
from relais.topics import AUDIT, DEADLETTER, SUBMITTED
from streams.identity.processor import IdentityProcessor
from streams.identity.rules import Verdict
from streams.identity.scope import unblocked
from streams.identity.state import Held, PatientState
from streams.stage import Output

REJECTED = "identity-rejected"
EXPIRED = "identity-expired"
SYSTEM_OPERATOR = "relais"  # who expires holds: the stage itself


@dataclass(frozen=True)
class Operations:
    """What the operations need besides the processor: the prefix, the keys, the expiry."""

    prefix: str
    keyring: Keyring
    hold_expiry_s: float


def chosen(state: PatientState, event_ids: list[str]) -> tuple[list[Held], list[Held]]:
    """(the held documents a command names, the others); no ids names them all."""
    wanted = set(event_ids)
    picked = [h for h in state.held if not wanted or h.event_id in wanted]
    return picked, [h for h in state.held if h not in picked]


def expired(state: PatientState, now_ms: int, expiry_s: float) -> tuple[list[Held], list[Held]]:
    """(the held documents older than the expiry, the others), in arrival order."""
    limit = now_ms - int(expiry_s * 1000)
    old = [h for h in state.held if h.held_at_ms <= limit]
    return old, [h for h in state.held if h.held_at_ms > limit]


def expiry_due(state: PatientState, now_ms: int, expiry_s: float) -> bool:
    return bool(expired(state, now_ms, expiry_s)[0])


async def on_command(
    processor: IdentityProcessor, command: Record, now: datetime, ops: Operations
) -> list[Output]:
    """The outputs of one command; the patient's new state is staged on the processor."""
    key, action = command["patient_key"], command["action"]
    state = processor.state(key)
    if action == "RELEASE":
        outputs = await _release(processor, key, state, command, now)
    elif action == "UNBLOCK":
        was = state.blocked or "not blocked"
        outputs = await processor.release(key, unblocked(state), now)
        outputs.append(_audit(command, command["event_id"], f"unblocked:{was}", now))
    elif action in ("REJECT", "EXPIRE"):
        outputs = _dead_letters(processor, key, state, command, now, ops=ops)
    else:
        outputs = []
    if action == "EXPIRE":  # the stage's own, repeated until applied: audited per document
        return outputs
    return [*outputs, _command_audit(command, now)]


async def _release(
    processor: IdentityProcessor, key: str, state: PatientState, command: Record, now: datetime
) -> list[Output]:
    """The named documents decided again, vouched for; the others stay as they are."""
    picked, _ = chosen(state, command["event_ids"])
    codec, outputs = Codec(), []
    still: dict[str, Held] = {}
    for held in picked:
        _, record = codec.decode(held.value, expected="DocumentSubmitted")
        base = replace(state, held=())
        decided, produced = await processor._decide(
            key, base, record, held.value, now, vouched=True
        )
        state = replace(decided, held=state.held)
        outputs += produced
        if decided.held:
            still[held.event_id] = replace(decided.held[0], held_at_ms=held.held_at_ms)
            continue
        processor._note(Verdict("release", decided.status_for(held.facility), "operator"))
        outputs.append(_audit(command, held.event_id, "released-by-operator", now, record))
    kept = tuple(
        still.get(h.event_id, h) for h in state.held if h not in picked or h.event_id in still
    )
    processor.save(key, replace(state, held=kept))
    return outputs


def _dead_letters(
    processor: IdentityProcessor,
    key: str,
    state: PatientState,
    command: Record,
    now: datetime,
    *,
    ops: Operations,
) -> list[Output]:
    """The named (REJECT) or too old (EXPIRE) held documents, as dead letters."""
    if command["action"] == "EXPIRE":
        picked, kept = expired(state, int(now.timestamp() * 1000), ops.hold_expiry_s)
        code = EXPIRED
    else:
        picked, kept = chosen(state, command["event_ids"])
        code = REJECTED
    codec, outputs = Codec(), []
    for held in picked:
        _, record = codec.decode(held.value, expected="DocumentSubmitted")
        letter = dead_letter(
            ops.keyring,
            stage="identity",
            failure=Failure(code, _why(code, held, command, ops)),
            origin=Origin(topic=SUBMITTED.name(ops.prefix), event_id=held.event_id),
            original=held.value,
            now=now,
            dead_letter_id=derived_id("identity", code, held.event_id),
            patient_key=record["patient"]["patient_key"],
        )
        outputs.append(Output(DEADLETTER, "DeadLetter", letter, key.encode()))
        outputs.append(_audit(command, held.event_id, code.removeprefix("identity-"), now, record))
        status = state.status_for(held.facility)
        processor._note(Verdict(code.removeprefix("identity-"), status, code))
    processor.save(key, replace(state, held=tuple(kept)))
    return outputs


def _why(code: str, held: Held, command: Record, ops: Operations) -> str:
    if code == EXPIRED:
        days = ops.hold_expiry_s / 86400
        return (
            f"held for its identity ({held.reason_code}) longer than the hold expiry "
            f"({days:g} days): correct the patient's identity and send the document again"
        )
    return (
        f"rejected by identitovigilance operator {command['operator']} while held "
        f"({held.reason_code}): correct the patient's identity and send the document again"
    )


def _audit(
    command: Record, event_id: str, outcome: str, now: datetime, document: Record | None = None
) -> Output:
    """An audit event of one action, naming the operator who decided it."""
    audit = audit_event(
        event_id=event_id,
        component="identity",
        action="OTHER",
        outcome=f"identity-operation:{outcome}",
        now=now,
        document_unique_id=document["document"]["unique_id"] if document else None,
        operator=command["operator"],
        detail=f"operator {command['operator']}: {command['action']} (command "
        f"{command['event_id']}, patient {command['patient_key'][:16]})"
        + (f": {command['comment']}" if command.get("comment") else ""),
    )
    audit_id = derived_id(command["event_id"], event_id, outcome)
    return Output(AUDIT, "AuditEvent", {**audit, "audit_id": audit_id}, event_id.encode())


def _command_audit(command: Record, now: datetime) -> Output:
    count = len(command["event_ids"]) or "all"
    return _audit(command, command["event_id"], f"{command['action'].lower()}:{count}", now)
