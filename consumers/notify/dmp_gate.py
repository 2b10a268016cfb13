"""The DMP gate (pure): a patient hears of a document only once the DMP filed it.

The route stage asks for a notification when it routes a document (to the DMP, or to the
patient's own mailbox). For a document going to the DMP (the request's effective
``DESTDMP`` flag), the notification waits in the ledger (state ``WAITING``) until the
DMP sink's ``DeliveryStatus`` for the same event says how the filing ended:

* ``DELIVERED`` / ``DUPLICATE`` (already filed): the notification is scheduled (its
  embargo, if any, still applies);
* ``REJECTED``: the DMP refused the document, the notification is cancelled (status
  ``REJECTED``, code ``DMP_REFUSED``): the patient is never told of a document they
  cannot see.

The notify sink reads ``deliveries.status`` with its requests (same key, the patient's
pseudonym; same partition numbers, assigned together). A DMP outcome that arrives before
its notification request is kept as a :class:`DmpOutcome` record in the notify ledger
topic (key ``dmp:<event id>``), read back with the ledger after a restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from consumers.notify.errors import LedgerError
from domain.metadata_flags import FLAG_DEFAULTS
from relais.contracts import Record

GATE_VERSION: Final = 1
KEY_PREFIX: Final = b"dmp:"
FILED: Final = frozenset({"DELIVERED", "DUPLICATE"})


@dataclass(frozen=True)
class DmpOutcome:
    """How the DMP filing of one document event ended."""

    event_id: str
    filed: bool
    code: str | None
    at: datetime

    @property
    def key(self) -> bytes:
        return KEY_PREFIX + self.event_id.encode()

    def to_bytes(self) -> bytes:
        body = {
            "v": GATE_VERSION,
            "event_id": self.event_id,
            "filed": self.filed,
            "code": self.code,
            "at": int(self.at.timestamp() * 1000),
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DmpOutcome:
        try:
            body = json.loads(data)
            if body.get("v") != GATE_VERSION:
                raise LedgerError(f"DMP outcome record version {body.get('v')!r}: upgrade")
            at = body["at"]
            if not isinstance(at, int) or not isinstance(body["filed"], bool):
                raise TypeError("DMP outcome record fields")
            return cls(
                event_id=str(body["event_id"]),
                filed=body["filed"],
                code=body["code"],
                at=datetime.fromtimestamp(at / 1000, UTC),
            )
        except LedgerError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LedgerError(
                f"DMP outcome record does not read back ({type(exc).__name__})"
            ) from None


def is_gate_key(key: bytes | None) -> bool:
    return key is not None and key.startswith(KEY_PREFIX)


def dmp_outcome_of(status: Record) -> DmpOutcome | None:
    """The DMP outcome a ``DeliveryStatus`` gives; None for other destinations or RETRYING."""
    if status.get("destination") != "DMP":
        return None
    outcome = status.get("outcome")
    if outcome not in FILED and outcome != "REJECTED":
        return None
    return DmpOutcome(
        event_id=str(status["event_id"]),
        filed=outcome in FILED,
        code=status.get("code"),
        at=status["at"],
    )


def waits_for_dmp(flags: Mapping[str, bool], action: str) -> bool:
    """A notification waits for the DMP when the document goes there (DESTDMP, Y by default)."""
    return action != "DELETE" and bool(flags.get("DESTDMP", FLAG_DEFAULTS["DESTDMP"]))
