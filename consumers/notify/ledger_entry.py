"""One record of the notification ledger (pure): its states, its life cycle, its bytes.

An :class:`Entry` is what one delivery request became; it is written as compact JSON
(``LEDGER_VERSION``) to the compacted topic ``notify.ledger.v1``, keyed by its
``request_id``. The sealed identity travels as its envelope (key id, nonce, ciphertext,
base64) and only while the entry may still be sent.

Life cycle of an entry (one table; anything else raises :class:`IllegalTransition`)::

    (new) ──▶ SCHEDULED ──▶ SENT        told (one message may cover several entries)
      │           ├──────▶ FAILED      the channel refused for good (bad address, 5xx)
      │           ├──────▶ SKIPPED     the patient opted out when it fell due
      │           └──────▶ CANCELLED   deleted or replaced before the embargo lifted
      ├─────▶ SKIPPED                  never to be told: not visible, a deletion, DMP refused
      └─────▶ WAITING ──▶ SCHEDULED    the DMP filed the document (:mod:`.dmp_gate`)
                  ├─────▶ CANCELLED    the DMP refused it, or deleted/replaced meanwhile
                  └─────▶ SKIPPED
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from consumers.notify.errors import IllegalTransition, LedgerError
from consumers.notify.message import Kind

LEDGER_VERSION: Final = 1


class State(StrEnum):
    WAITING = "WAITING"  # for the DMP's filing (consumers.notify.dmp_gate)
    SCHEDULED = "SCHEDULED"
    SENT = "SENT"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


TRANSITIONS: Final[Mapping[State | None, frozenset[State]]] = {
    None: frozenset({State.SCHEDULED, State.SKIPPED, State.WAITING}),
    State.WAITING: frozenset({State.SCHEDULED, State.CANCELLED, State.SKIPPED}),
    State.SCHEDULED: frozenset({State.SENT, State.FAILED, State.SKIPPED, State.CANCELLED}),
    State.SENT: frozenset(),
    State.FAILED: frozenset(),
    State.SKIPPED: frozenset(),
    State.CANCELLED: frozenset(),
}


@dataclass(frozen=True)
class Note:
    """What a ``DeliveryStatus`` says about a request: outcome, code, detail (no patient data)."""

    outcome: str
    code: str | None
    detail: str


@dataclass(frozen=True)
class Entry:
    """One request in the ledger. ``identity`` (sealed) is kept only while it may be sent."""

    request_id: str
    event_id: str
    patient_key: str
    document_unique_id: str
    kind: Kind
    state: State
    due_at: datetime  # when the patient may see it (the embargo's end)
    submitted_at: datetime
    at: datetime  # when this state was reached
    identity: Mapping[str, Any] | None = field(default=None, repr=False)
    channel: str | None = None
    code: str | None = None
    attempt: int = 0

    def moved(self, state: State, at: datetime, **changes: Any) -> Entry:
        if state not in TRANSITIONS[self.state]:
            raise IllegalTransition(
                f"ledger entry {self.request_id}: {self.state} -> {state} is not allowed"
            )
        return replace(self, state=state, at=at, identity=None, **changes)

    def to_bytes(self) -> bytes:
        identity = None
        if self.identity is not None:
            identity = {
                "key_id": self.identity["key_id"],
                "nonce": _b64(self.identity["nonce"]),
                "ciphertext": _b64(self.identity["ciphertext"]),
            }
        body = {
            "v": LEDGER_VERSION,
            "request_id": self.request_id,
            "event_id": self.event_id,
            "patient_key": self.patient_key,
            "document_unique_id": self.document_unique_id,
            "kind": self.kind.value,
            "state": self.state.value,
            "due_at": _ms(self.due_at),
            "submitted_at": _ms(self.submitted_at),
            "at": _ms(self.at),
            "identity": identity,
            "channel": self.channel,
            "code": self.code,
            "attempt": self.attempt,
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        try:
            body = json.loads(data)
            if body.get("v") != LEDGER_VERSION:
                raise LedgerError(
                    f"ledger record version {body.get('v')!r}: this notifier reads version "
                    f"{LEDGER_VERSION}; upgrade it"
                )
            raw = body["identity"]
            identity = None
            if raw is not None:
                identity = {
                    "key_id": raw["key_id"],
                    "nonce": base64.b64decode(raw["nonce"], validate=True),
                    "ciphertext": base64.b64decode(raw["ciphertext"], validate=True),
                }
            return cls(
                request_id=str(body["request_id"]),
                event_id=str(body["event_id"]),
                patient_key=str(body["patient_key"]),
                document_unique_id=str(body["document_unique_id"]),
                kind=Kind(body["kind"]),
                state=State(body["state"]),
                due_at=_time(body["due_at"]),
                submitted_at=_time(body["submitted_at"]),
                at=_time(body["at"]),
                identity=identity,
                channel=body["channel"],
                code=body["code"],
                attempt=int(body["attempt"]),
            )
        except LedgerError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LedgerError(f"ledger record does not read back ({type(exc).__name__})") from None


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _time(ms: object) -> datetime:
    if not isinstance(ms, int):
        raise TypeError("time is not epoch milliseconds")
    return datetime.fromtimestamp(ms / 1000, UTC)


def _b64(value: object) -> str:
    if not isinstance(value, bytes):
        raise TypeError("envelope bytes expected")
    return base64.b64encode(value).decode()
