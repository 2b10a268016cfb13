"""Seal a document's bytes into a store object and a reference; open them again.

The pure part (:func:`seal_body`, :func:`open_body`) does no I/O; :func:`write_content` and
:func:`read_content` add the store. A reference (:class:`BodyRef`, the Avro type
``fr.relais.v1.BodyRef``) fills ``Document.content`` where an inline envelope did before;
:func:`read_content` opens either.

- The object is AES-256-GCM ciphertext under the keyring's sealing key (the patient's data
  key with RELAIS_PATIENT_KEYS, :mod:`relais.patient_keys`; else the active key); its
  associated data is the object key (which names the key id), so an object copied under
  another key fails. A patient's erasure deletes the objects whose key id is theirs.
- The reference is bound to its event: ``binding`` is a keyed MAC of the event id, the object
  key and the SHA-256; a reference pasted into another event fails, as an inline envelope
  did. The plaintext's SHA-256 is checked on every read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relais.document_store.errors import BodyTamperedError, StoreUnavailableError
from relais.document_store.stores import DocumentStore, check_key
from relais.envelope import Envelope, open_envelope, seal
from relais.keyring import Keyring, pseudonymise

_MAGIC: Final = b"RLB1"
_AD: Final = b"relais/body/v1\x00"
_NONCE: Final = 12
_NAME: Final = 32  # hex characters of each pseudonym in a key


@dataclass(frozen=True)
class BodyRef:
    """Where a document's bytes are and how to check them."""

    store_key: str
    key_id: str
    sha256: str
    size: int
    binding: str

    def to_record(self) -> dict[str, Any]:
        return {
            "store_key": self.store_key,
            "key_id": self.key_id,
            "sha256": self.sha256,
            "size": self.size,
            "binding": self.binding,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BodyRef:
        return cls(
            store_key=str(record["store_key"]),
            key_id=str(record["key_id"]),
            sha256=str(record["sha256"]),
            size=int(record["size"]),
            binding=str(record["binding"]),
        )


@dataclass(frozen=True)
class SealedBody:
    """An object to write and the reference records carry."""

    key: str
    blob: bytes
    ref: BodyRef


def document_prefix(keyring: Keyring, unique_id: str) -> str:
    """The key prefix of every body of one document (what erasing it removes)."""
    return pseudonymise(keyring, unique_id, domain="document-body")[:_NAME]


def body_key(keyring: Keyring, unique_id: str, sha256: str, key_id: str) -> str:
    body = pseudonymise(keyring, sha256, domain="body")[:_NAME]
    return f"{document_prefix(keyring, unique_id)}/{body}.{key_id}"


def _binding(keyring: Keyring, event_id: str, key: str, sha256: str) -> str:
    return pseudonymise(keyring, f"{event_id}\x00{key}\x00{sha256}", domain="body-ref")[:_NAME]


def seal_body(keyring: Keyring, content: bytes, *, unique_id: str, event_id: str) -> SealedBody:
    """The object (sealed with the active key) and the event's reference to it."""
    sha256 = hashlib.sha256(content).hexdigest()
    key_id, secret = keyring.sealing_key()
    key = body_key(keyring, unique_id, sha256, key_id)
    nonce = os.urandom(_NONCE)
    ciphertext = AESGCM(secret).encrypt(nonce, content, _AD + key.encode())
    ref = BodyRef(key, key_id, sha256, len(content), _binding(keyring, event_id, key, sha256))
    return SealedBody(key, _MAGIC + nonce + ciphertext, ref)


def open_body(keyring: Keyring, blob: bytes, ref: BodyRef, *, event_id: str) -> bytes:
    """The plaintext of ``blob``, checked against the reference and its event."""
    expected = _binding(keyring, event_id, ref.store_key, ref.sha256)
    if not hmac.compare_digest(expected, ref.binding):
        raise BodyTamperedError(ref.store_key, "the reference belongs to another event")
    if not ref.store_key.endswith(f".{ref.key_id}"):
        raise BodyTamperedError(ref.store_key, "the reference's key id differs from its key's")
    if blob[: len(_MAGIC)] != _MAGIC or len(blob) < len(_MAGIC) + _NONCE + 16:
        raise BodyTamperedError(ref.store_key, "the stored object is not a sealed body")
    nonce = blob[len(_MAGIC) : len(_MAGIC) + _NONCE]
    try:
        plain = AESGCM(keyring.key(ref.key_id)).decrypt(
            nonce, blob[len(_MAGIC) + _NONCE :], _AD + ref.store_key.encode()
        )
    except InvalidTag:
        raise BodyTamperedError(
            ref.store_key, "the stored object failed authentication (altered or wrong key)"
        ) from None
    if len(plain) != ref.size or hashlib.sha256(plain).hexdigest() != ref.sha256:
        raise BodyTamperedError(ref.store_key, "the stored bytes differ from the reference's")
    return plain


def is_reference(content: Mapping[str, Any]) -> bool:
    """Whether a ``Document.content`` is a reference (else an inline envelope)."""
    return "store_key" in content


def inline_content(keyring: Keyring, document: Mapping[str, Any], *, event_id: str) -> bytes:
    """The plaintext of a ``Document`` whose content travels inline (records from before the
    store, test messages, cores run without a store)."""
    envelope = Envelope.from_record(document["content"])
    return open_envelope(keyring, envelope, event_id=event_id, purpose="content")


async def write_content(
    store: DocumentStore | None,
    keyring: Keyring,
    content: bytes,
    *,
    unique_id: str,
    event_id: str,
) -> dict[str, Any]:
    """Store ``content`` once and return the reference for ``Document.content``.

    Without a store (unit tests of the cores, tools that work offline), the content is
    sealed inline, as records were before the store."""
    if store is None:
        return seal(keyring, content, event_id=event_id, purpose="content").to_record()
    sealed = seal_body(keyring, content, unique_id=unique_id, event_id=event_id)
    await store.put(sealed.key, sealed.blob)
    return sealed.ref.to_record()


async def read_content(
    store: DocumentStore | None, keyring: Keyring, document: Mapping[str, Any], *, event_id: str
) -> bytes:
    """The plaintext of a ``Document``: fetched from the store, or opened inline."""
    content = document["content"]
    if not is_reference(content):
        return inline_content(keyring, document, event_id=event_id)
    ref = BodyRef.from_record(content)
    keyring.key(ref.key_id)  # an erased patient's key says so before a missing body does
    if store is None:
        raise StoreUnavailableError(
            f"document body {ref.store_key} is in the document store, and this process has "
            "none: set RELAIS_DOCUMENT_STORE"
        )
    return open_body(keyring, await store.get(check_key(ref.store_key)), ref, event_id=event_id)


class ContentSealer(Protocol):
    """Seals one document's content for ``Document.content`` (under ``patient_key``'s data
    key when given and per-patient keys are on)."""

    def __call__(
        self, content: bytes, unique_id: str, event_id: str, patient_key: str | None = None
    ) -> dict[str, Any]: ...


def inline_sealer(keyring: Keyring) -> ContentSealer:
    """Seal content inline (no store): test messages, unit tests of the builders."""

    def sealed(
        content: bytes, unique_id: str, event_id: str, patient_key: str | None = None
    ) -> dict[str, Any]:
        sealing = keyring.for_patient(patient_key)
        return seal(sealing, content, event_id=event_id, purpose="content").to_record()

    return sealed


class BodyWriter:
    """A :data:`ContentSealer` for records being built (pure: seal and keep), then
    :meth:`flush` writes every body it sealed (concurrently) before the records are sent."""

    def __init__(self, keyring: Keyring, store: DocumentStore | None) -> None:
        self.keyring, self.store = keyring, store
        self.pending: list[SealedBody] = []

    def __call__(
        self, content: bytes, unique_id: str, event_id: str, patient_key: str | None = None
    ) -> dict[str, Any]:
        if self.store is None:
            return inline_sealer(self.keyring)(content, unique_id, event_id, patient_key)
        keyring = self.keyring.for_patient(patient_key)
        sealed = seal_body(keyring, content, unique_id=unique_id, event_id=event_id)
        self.pending.append(sealed)
        return sealed.ref.to_record()

    async def flush(self) -> None:
        """Write what was sealed; returns once every object is durable."""
        pending, self.pending = self.pending, []
        if self.store is not None and pending:
            store = self.store
            await asyncio.gather(*(store.put(s.key, s.blob) for s in pending))
