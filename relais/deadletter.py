"""Dead letters: what failed, where, why, and the original bytes (sealed).

Every stage and sink turns the failure of one record into a dead letter here:
:func:`failure_of` names the reason, :func:`dead_letter` builds the record. A
record an operator replays (``relais dlq replay``) carries :data:`REPLAY_HEADER`.

Errors a stage's core raises for a record it cannot process::

    StageFailure                 the record is wrong; dead-letter it (not retried)
     └── (subclasses per stage, each with a ``reason_code``)

Reasons of sealed fields that do not open (:class:`relais.envelope.EnvelopeError`):
``undecryptable-field``; ``patient-erased`` (the patient's data key was destroyed: a trace,
nothing to fix); ``patient-key-missing`` (the key store answers but has neither the key nor
its tombstone: restore the key record, or give the process the right
RELAIS_DOCUMENT_STORE, then ``relais dlq replay --reason patient-key-missing``). A key store
that is down or not there is never a dead letter: the record is retried.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from relais.contracts import Codec, ContractError, EncodeError, Record
from relais.envelope import EnvelopeError, seal
from relais.keyring import Keyring
from relais.metrics import PATIENT_KEYS
from relais.topics import DEADLETTER

log = logging.getLogger(__name__)

#: record header on a replayed record: the dead letter's id
REPLAY_HEADER = "relais-replay-of"


class StageFailure(Exception):
    """A record a stage cannot process; the message tells a human what to fix."""

    reason_code = "stage-failure"

    def __init__(self, message: str, *, reason_code: str | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code


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


def failure_of(exc: Exception) -> Failure:
    """The dead-letter reason for an exception raised while processing one record."""
    if isinstance(exc, StageFailure):
        return Failure(exc.reason_code, str(exc))
    if isinstance(exc, ContractError) and not isinstance(exc, EncodeError):
        return Failure("undecodable-record", exc.reason)
    if isinstance(exc, EnvelopeError):  # an erased patient's key: "patient-erased"
        return Failure(getattr(exc, "reason_code", "undecryptable-field"), str(exc))
    return Failure(
        "internal-error",
        f"Relais failed on this record ({type(exc).__name__}); report it with the dead-letter id",
    )


RELAIS_IDS = uuid.UUID("6f1c2a52-5b0e-4f7e-9a3e-2d8c1b7e4a90")


def derived_id(*parts: object) -> str:
    """A UUID that is the same for the same parts (replays give the same id)."""
    return str(uuid.uuid5(RELAIS_IDS, "|".join(str(p) for p in parts)))


def stable_id(stage: str, origin: Origin) -> str:
    if origin.partition is None or origin.offset is None:
        return str(uuid.uuid4())
    return derived_id("dead-letter", stage, origin.topic, origin.partition, origin.offset)


def dead_letter(
    keyring: Keyring,
    *,
    stage: str,
    failure: Failure,
    origin: Origin,
    original: bytes,
    now: datetime,
    dead_letter_id: str | None = None,
    patient_key: str | None = None,
) -> Record:
    """A ``DeadLetter`` record; ``original`` is sealed, bound to the dead letter's id, under
    the patient's data key when ``patient_key`` is known and the patient has one (a dead
    letter never makes one, not even at the door), else under the shared key.

    The id is derived from the stage and the record's place (topic, partition,
    offset) when known, so a replay of the same record gives the same dead letter.
    """
    dl_id = dead_letter_id or stable_id(stage, origin)
    keyring = _sealing(keyring, failure, patient_key)
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


def _sealing(keyring: Keyring, failure: Failure, patient_key: str | None) -> Keyring:
    """The keyring a dead letter seals with: the shared key when the patient was erased,
    when they have no key (an erased patient gets no new one from a dead letter), or when
    their key cannot be had (a retired master key, a tampered record, the key store down:
    raising here, inside the stage's handling of the failure, would crash the worker on the
    same record forever). A fallback for a failure is logged (key id, exception type) and
    counted (``relais_patient_keys_total{outcome="dead-letter-shared-key"}``)."""
    if patient_key is None or failure.reason_code in _SHARED_REASONS:
        return keyring.shared()
    try:
        return keyring.for_existing_patient(patient_key)
    except Exception as exc:  # a dead letter is always made (see above)
        PATIENT_KEYS.labels("dead-letter-shared-key").inc()
        log.warning(
            "dead letter sealed under the shared key %s: the patient's data key could not be "
            "had (%s)",
            keyring.active_key_id,
            type(exc).__name__,
        )
        return keyring.shared()


#: reasons whose dead letter is sealed under the shared key at once: the patient's key is
#: destroyed, or the very key the record names is missing
_SHARED_REASONS = frozenset({"patient-erased", "patient-key-missing"})


def dead_letter_output(
    codec: Codec,
    keyring: Keyring,
    prefix: str,
    *,
    stage: str,
    failure: Failure,
    origin: Origin,
    original: bytes,
    now: datetime,
    patient_key: str | None = None,
) -> tuple[str, bytes]:
    """(dead-letter topic, encoded :func:`dead_letter`): what a sink produces for a record."""
    letter = dead_letter(
        keyring,
        stage=stage,
        failure=failure,
        origin=origin,
        original=original,
        now=now,
        patient_key=patient_key,
    )
    return DEADLETTER.name(prefix), codec.encode("DeadLetter", letter)


def patient_of_key(key: bytes | None) -> str | None:
    """The patient's pseudonym when a record's Kafka key is one (64 hex: documents, delivery
    requests and identity events are keyed by it), else None."""
    if key is None or len(key) != 64:
        return None
    text = key.decode("ascii", errors="replace")
    return text if all(c in "0123456789abcdef" for c in text) else None
