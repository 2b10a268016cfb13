"""What the identity stage remembers about one patient (one key of its Faust table).

Stored as JSON bytes in a table whose changelog makes it survive restarts.
Held documents are kept as their encoded ``DocumentSubmitted`` bytes (content
and identity stay sealed) in arrival order, so that they are released in the
order they came.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from streams.identity.status import Status, parse_status


@dataclass(frozen=True)
class Held:
    """A document waiting for its identity, and why."""

    value: bytes  # the encoded DocumentSubmitted record
    event_id: str
    reason_code: str
    held_at_ms: int
    facility: str = ""  # the sending structure: order is kept per structure


@dataclass(frozen=True)
class PatientState:
    #: RNIV status per sending structure: a status is a structure's own checking of its
    #: identity record, so one facility's QUAL never qualifies another facility's documents.
    statuses: tuple[tuple[str, Status], ...] = ()
    attributes: tuple[str, ...] = ()
    traits_digest: str | None = None  # digest of the normalised traits last accepted
    blocked: str | None = None  # identitovigilance block: reason code
    merged_into: str | None = None  # A40: the surviving patient key
    redirect: bytes | None = None  # the encoded REDIRECT record carrying the survivor
    held: tuple[Held, ...] = field(default=())
    #: the block's scope: the senders and the traits (digests) that contradict the reference
    #: identity (``traits_digest``); none with a block means the whole patient is blocked
    blocked_senders: tuple[str, ...] = ()
    blocked_digests: tuple[str, ...] = ()
    blocked_at_ms: int | None = None
    #: the patient's latest DMP status and word on feeding it (PAM FR ZFA), stamped on the
    #: documents forwarded (streams.identity.consent)
    dmp_consent: Mapping[str, str | None] | None = field(default=None, hash=False)
    #: an absorbed patient's word was handed to its survivor (once: streams.identity.handover)
    consent_handed: bool = False

    def status_for(self, facility: str) -> Status:
        return dict(self.statuses).get(facility, Status.PROV)

    def with_status(self, facility: str, status: Status) -> PatientState:
        others = tuple((f, s) for f, s in self.statuses if f != facility)
        return replace(self, statuses=(*others, (facility, status)))

    @property
    def waiting_for_insi(self) -> bool:
        return any(h.reason_code == "insi-unavailable" for h in self.held)

    def holding(self, held: Held) -> PatientState:
        return replace(self, held=(*self.held, held))

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "statuses": {f: s.value for f, s in self.statuses},
                "attributes": list(self.attributes),
                "traits_digest": self.traits_digest,
                "blocked": self.blocked,
                "merged_into": self.merged_into,
                "redirect": base64.b64encode(self.redirect).decode() if self.redirect else None,
                "blocked_senders": list(self.blocked_senders),
                "blocked_digests": list(self.blocked_digests),
                "blocked_at_ms": self.blocked_at_ms,
                "dmp_consent": dict(self.dmp_consent) if self.dmp_consent is not None else None,
                "consent_handed": self.consent_handed,
                "held": [
                    {
                        "value": base64.b64encode(h.value).decode(),
                        "event_id": h.event_id,
                        "reason_code": h.reason_code,
                        "held_at_ms": h.held_at_ms,
                        "facility": h.facility,
                    }
                    for h in self.held
                ],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> PatientState:
        if not data:
            return cls()
        raw: dict[str, Any] = json.loads(data)
        return cls(
            statuses=tuple((f, parse_status(s)) for f, s in (raw.get("statuses") or {}).items()),
            attributes=tuple(raw.get("attributes") or ()),
            traits_digest=raw.get("traits_digest"),
            blocked=raw.get("blocked"),
            merged_into=raw.get("merged_into"),
            redirect=base64.b64decode(raw["redirect"]) if raw.get("redirect") else None,
            held=tuple(
                Held(
                    base64.b64decode(h["value"]),
                    h["event_id"],
                    h["reason_code"],
                    h["held_at_ms"],
                    h.get("facility", ""),
                )
                for h in raw.get("held") or ()
            ),
            blocked_senders=tuple(raw.get("blocked_senders") or ()),
            blocked_digests=tuple(raw.get("blocked_digests") or ()),
            blocked_at_ms=raw.get("blocked_at_ms"),
            dmp_consent=raw.get("dmp_consent"),
            consent_handed=bool(raw.get("consent_handed")),
        )
