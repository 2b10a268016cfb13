"""AES-256-GCM envelope around every sensitive field that crosses Kafka.

Kafka brokers, their disks and anyone with topic read access see only
envelopes: the patient identity, the document content, dead-lettered original
bytes and recipient addresses are sealed before a record is produced and
opened only by the stage that needs them.

The associated data binds each envelope to the key id, the event id and the
*purpose* (which field it fills: ``"identity"``, ``"content"``, ``"original"``,
``"recipient"``). Copying an envelope into another event, or from the content
field into the identity field, therefore fails authentication instead of
silently attaching one patient's data to another's document.

Nonces are 12 random bytes. With random nonces one key stays safe for about
2**32 envelopes; key rotation (:meth:`relais.keyring.Keyring.rotated`) keeps
every key far below that.

Exception tree::

    EnvelopeError                  anything that stops an envelope from opening
    ├── MalformedEnvelopeError     the record does not have the envelope shape
    ├── UnknownKeyError            the key id is not in the keyring
    │   └── RetiredKeyError        ... it was retired (``relais keys retire``): refused
    ├── TamperedEnvelopeError      authentication failed (altered, wrong key,
    │                              other event or purpose)
    └── PatientKeyError            a patient's data key cannot be used (erased...):
                                   :mod:`relais.patient_keys.errors`

A key id is a keyring key (shared by every patient: records from before per-patient keys,
data tied to no patient) or a patient's data key, ``p.<name>.<version>``
(:mod:`relais.patient_keys`): :func:`seal` uses the one :meth:`Keyring.sealing_key` names
(:meth:`Keyring.for_patient` picks the patient), :func:`open_envelope` resolves either
through :meth:`Keyring.key`.

:class:`UnknownKeyError` is also what :meth:`Keyring.key` raises; it is defined
here, and :mod:`relais.keyring` imports it, so that this module needs the
keyring only for type checking and the two import in either order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from relais.keyring import Keyring

__all__ = [
    "NONCE_SIZE",
    "PATIENT_KEY_PREFIX",
    "TAG_SIZE",
    "Envelope",
    "EnvelopeError",
    "MalformedEnvelopeError",
    "RetiredKeyError",
    "TamperedEnvelopeError",
    "UnknownKeyError",
    "open_envelope",
    "seal",
]

NONCE_SIZE = 12
TAG_SIZE = 16
_AD_PREFIX = b"relais/v1\x00"
#: key ids of patients' data keys start with this (keyring key ids may not)
PATIENT_KEY_PREFIX = "p."


class EnvelopeError(Exception):
    """An envelope could not be opened (see the module docstring for the tree)."""


class MalformedEnvelopeError(EnvelopeError):
    """The record is not shaped like an envelope (missing field, wrong type or size)."""


class UnknownKeyError(EnvelopeError):
    """The envelope names a key id the keyring does not hold."""

    def __init__(self, key_id: str) -> None:
        # args holds only the key id so the exception pickles and compares simply.
        super().__init__(key_id)
        self.key_id = key_id

    def __str__(self) -> str:
        if self.key_id.startswith(PATIENT_KEY_PREFIX):
            return (
                f"envelope key id {self.key_id!r} is a patient's data key and this process "
                "has no patient key vault: set RELAIS_PATIENT_KEYS=yes and the same "
                "RELAIS_DOCUMENT_STORE as the process that sealed it"
            )
        return (
            f"envelope key id {self.key_id!r} is not in the keyring; add the retired key "
            "to the keyring file (keys are never deleted while records encrypted with "
            "them exist)"
        )


class RetiredKeyError(UnknownKeyError):
    """The key id was retired: its material is gone from the keyring, on purpose."""

    def __str__(self) -> str:
        return (
            f"key id {self.key_id!r} was retired (`relais keys retire`): what it sealed or "
            "wrapped can no longer be opened; if that is still needed, restore the key from "
            "its escrow copy into the keyring's 'keys' and remove it from 'retired'"
        )


class TamperedEnvelopeError(EnvelopeError):
    """AES-GCM authentication failed."""

    def __init__(self, key_id: str, event_id: str, purpose: str) -> None:
        super().__init__(
            f"envelope (key id {key_id!r}) failed authentication for event {event_id!r}, "
            f"purpose {purpose!r}: the ciphertext was altered, the key is wrong, or it "
            "belongs to another event/purpose"
        )


@dataclass(frozen=True, repr=False)
class Envelope:
    """One sealed value: which key, the nonce, and ciphertext followed by the GCM tag."""

    key_id: str
    nonce: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not self.key_id:
            raise MalformedEnvelopeError("envelope key_id must be a non-empty string")
        if not isinstance(self.nonce, bytes) or len(self.nonce) != NONCE_SIZE:
            raise MalformedEnvelopeError(f"envelope nonce must be {NONCE_SIZE} bytes")
        if not isinstance(self.ciphertext, bytes) or len(self.ciphertext) < TAG_SIZE:
            raise MalformedEnvelopeError(
                f"envelope ciphertext must be bytes of at least {TAG_SIZE} (the GCM tag)"
            )

    def __repr__(self) -> str:
        # Lengths only: ciphertext is not secret, but it is long and useless in logs.
        return f"Envelope(key_id={self.key_id!r}, ciphertext=<{len(self.ciphertext)} bytes>)"

    def to_record(self) -> dict[str, object]:
        """The Avro record shape (``key_id`` string, ``nonce`` and ``ciphertext`` bytes)."""
        return {"key_id": self.key_id, "nonce": self.nonce, "ciphertext": self.ciphertext}

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> Envelope:
        """Rebuild an envelope from a decoded record; extra fields are ignored."""
        if not isinstance(record, Mapping):
            raise MalformedEnvelopeError(
                f"envelope record must be a mapping, got {type(record).__name__}"
            )
        missing = [name for name in ("key_id", "nonce", "ciphertext") if name not in record]
        if missing:
            raise MalformedEnvelopeError(f"envelope record lacks {', '.join(missing)}")
        key_id, nonce, ciphertext = record["key_id"], record["nonce"], record["ciphertext"]
        if not isinstance(key_id, str):
            raise MalformedEnvelopeError("envelope key_id must be a string")
        if not isinstance(nonce, bytes | bytearray | memoryview):
            raise MalformedEnvelopeError("envelope nonce must be bytes")
        if not isinstance(ciphertext, bytes | bytearray | memoryview):
            raise MalformedEnvelopeError("envelope ciphertext must be bytes")
        return cls(key_id=key_id, nonce=bytes(nonce), ciphertext=bytes(ciphertext))


def _associated_data(key_id: str, event_id: str, purpose: str) -> bytes:
    # NUL separates the parts, so none may contain one: "a\0b"+"c" must not
    # authenticate as "a"+"b\0c". Key ids cannot (the keyring validates them).
    for name, value in (("event_id", event_id), ("purpose", purpose)):
        if not value or "\x00" in value:
            raise ValueError(f"{name} must be a non-empty string without NUL characters")
    return _AD_PREFIX + b"\x00".join(p.encode("utf-8") for p in (key_id, event_id, purpose))


def seal(keyring: Keyring, plaintext: bytes, *, event_id: str, purpose: str) -> Envelope:
    """Encrypt ``plaintext`` for one event and purpose with the keyring's sealing key: the
    patient's data key for a keyring :meth:`~Keyring.for_patient`, else the active key."""
    key_id, key = keyring.sealing_key()
    ad = _associated_data(key_id, event_id, purpose)
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, ad)
    return Envelope(key_id=key_id, nonce=nonce, ciphertext=ciphertext)


def open_envelope(keyring: Keyring, envelope: Envelope, *, event_id: str, purpose: str) -> bytes:
    """Decrypt an envelope sealed for ``event_id`` and ``purpose``.

    Raises :class:`UnknownKeyError` when the keyring lacks the envelope's key and
    :class:`TamperedEnvelopeError` when authentication fails.
    """
    ad = _associated_data(envelope.key_id, event_id, purpose)
    key = keyring.key(envelope.key_id)
    try:
        return AESGCM(key).decrypt(envelope.nonce, envelope.ciphertext, ad)
    except InvalidTag:
        raise TamperedEnvelopeError(envelope.key_id, event_id, purpose) from None
