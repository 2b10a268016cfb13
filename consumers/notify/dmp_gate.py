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

A document under embargo (the release decision makes it visible to the patient after it
was submitted: :func:`waits_for_visibility`) is filed invisible to the patient; at the
release date the DMP sink sends TD3.3b (:mod:`consumers.dmp.visibility`) and reports the
DMP's answer as a second ``DeliveryStatus`` of the same event, its request id ending in
:data:`VISIBILITY_SUFFIX`. Its notification waits for that one, not for the filing: told
once the DMP confirmed the document visible, cancelled (``DMP_VISIBILITY_REFUSED``) when
the DMP refused the update (docs/embargo.md).

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
FILING: Final = "filing"
VISIBILITY: Final = "visibility"
#: the request id of the TD3.3b status ends so (the same as consumers.dmp.visibility's)
VISIBILITY_SUFFIX: Final = "|visibility"


@dataclass(frozen=True)
class DmpOutcome:
    """How the DMP filing of one document event ended."""

    event_id: str
    filed: bool  # for the visibility step: the DMP made the document visible
    code: str | None
    at: datetime
    step: str = FILING  # FILING (ITI-41) | VISIBILITY (TD3.3b, ITI-57)

    @property
    def gate_id(self) -> str:
        """What the ledger keeps it under: the event id, suffixed for the visibility step."""
        return self.event_id + (VISIBILITY_SUFFIX if self.step == VISIBILITY else "")

    @property
    def key(self) -> bytes:
        return KEY_PREFIX + self.gate_id.encode()

    def to_bytes(self) -> bytes:
        body = {
            "v": GATE_VERSION,
            "event_id": self.event_id,
            "filed": self.filed,
            "code": self.code,
            "at": int(self.at.timestamp() * 1000),
            "step": self.step,
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DmpOutcome:
        try:
            body = json.loads(data)
            if body.get("v") != GATE_VERSION:
                raise LedgerError(f"DMP outcome record version {body.get('v')!r}: upgrade")
            at, step = body["at"], body.get("step", FILING)  # written before TD3.3b: filing
            if not isinstance(at, int) or not isinstance(body["filed"], bool):
                raise TypeError("DMP outcome record fields")
            if step not in {FILING, VISIBILITY}:
                raise TypeError("DMP outcome step")
            return cls(
                event_id=str(body["event_id"]),
                filed=body["filed"],
                code=body["code"],
                at=datetime.fromtimestamp(at / 1000, UTC),
                step=step,
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
    visibility = str(status.get("request_id", "")).endswith(VISIBILITY_SUFFIX)
    return DmpOutcome(
        event_id=str(status["event_id"]),
        filed=outcome in FILED,
        code=status.get("code"),
        at=status["at"],
        step=VISIBILITY if visibility else FILING,
    )


def waits_for_dmp(flags: Mapping[str, bool], action: str) -> bool:
    """A notification waits for the DMP when the document goes there (DESTDMP, Y by default)."""
    return action != "DELETE" and bool(flags.get("DESTDMP", FLAG_DEFAULTS["DESTDMP"]))


def waits_for_visibility(due_at: datetime, submitted_at: datetime) -> bool:
    """Whether a notification waiting for the DMP waits for its visibility update (TD3.3b) too:
    the release decision made the document visible to the patient only after its submission
    (an embargo). The DMP sink reports that step for exactly these documents."""
    return due_at > submitted_at
