"""Build dead-letter records: what failed, where, why, and the original bytes (sealed)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from relais.contracts import Record
from relais.envelope import seal
from relais.keyring import Keyring


@dataclass(frozen=True)
class Failure:
    """Why a stage gave up on a record: a stable code and a sentence for a human."""

    reason_code: str
    reason: str


@dataclass(frozen=True)
class Origin:
    """Where the failed record came from."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    event_id: str | None = None


def dead_letter(
    keyring: Keyring,
    *,
    stage: str,
    failure: Failure,
    origin: Origin,
    original: bytes,
    now: datetime,
    dead_letter_id: str | None = None,
) -> Record:
    """A ``DeadLetter`` record; ``original`` is sealed, bound to the dead letter's id."""
    dl_id = dead_letter_id or str(uuid.uuid4())
    return {
        "dead_letter_id": dl_id,
        "event_id": origin.event_id,
        "stage": stage,
        "reason_code": failure.reason_code,
        "reason": failure.reason,
        "source_topic": origin.topic,
        "source_partition": origin.partition,
        "source_offset": origin.offset,
        "occurred_at": now,
        "original": seal(keyring, original, event_id=dl_id, purpose="original").to_record(),
        "original_sha256": hashlib.sha256(original).hexdigest(),
        "original_size": len(original),
    }
