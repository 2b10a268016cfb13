"""The master keys that wrap patients' data keys: a small KMS-shaped interface.

:class:`Kms` is what the vault needs from a key management service: the id of the master
key new wraps use, ``wrap``, ``unwrap``, and the ids it holds. :class:`LocalKms` is the
local-file implementation: the keyring file's AES-256 keys are the master keys (the active
one wraps; older ones unwrap until they are retired). An HSM or a cloud KMS plugs in by
implementing the same four members (AWS KMS ``Encrypt``/``Decrypt`` with an encryption
context, a PKCS#11 ``C_WrapKey``...); key material then never leaves it.

Wrapping is AES-256-GCM with a random nonce; the associated data is the master key id and
the ``context`` (the data key's id), so a wrapped key copied onto another patient's record
does not unwrap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relais.envelope import UnknownKeyError
from relais.keyring import Keyring, RetiredKeyError
from relais.patient_keys.errors import (
    MasterKeyRetiredError,
    MasterKeyUnknownError,
    WrappedKeyTamperedError,
)

__all__ = ["Kms", "LocalKms", "WrappedKey"]

_AD: Final = b"relais/dek/v1\x00"
_NONCE: Final = 12


@dataclass(frozen=True, repr=False)
class WrappedKey:
    """A data key as the KMS returned it: which master key, and the opaque blob."""

    master_key_id: str
    blob: bytes

    def __repr__(self) -> str:
        return f"WrappedKey(master_key_id={self.master_key_id!r}, blob=<{len(self.blob)} bytes>)"


class Kms(Protocol):
    """Wrap and unwrap data keys under master keys it holds (and never hands out)."""

    @property
    def active_key_id(self) -> str:
        """The master key :meth:`wrap` uses."""
        ...

    def key_ids(self) -> frozenset[str]:
        """The master keys that still unwrap."""
        ...

    def wrap(self, data_key: bytes, *, context: str) -> WrappedKey:
        """``data_key`` wrapped under the active master key, bound to ``context``."""
        ...

    def unwrap(self, wrapped: WrappedKey, *, context: str) -> bytes:
        """The data key; :class:`MasterKeyRetiredError`, :class:`MasterKeyUnknownError` or
        :class:`WrappedKeyTamperedError` when it cannot be."""
        ...


class LocalKms:
    """Master keys from the keyring file (its ``keys``; ``retired`` ones are refused)."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    @property
    def active_key_id(self) -> str:
        return self.keyring.active_key_id

    def key_ids(self) -> frozenset[str]:
        return frozenset(self.keyring.keys)

    def wrap(self, data_key: bytes, *, context: str) -> WrappedKey:
        master_id = self.keyring.active_key_id
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self.keyring.key(master_id)).encrypt(
            nonce, data_key, _associated(master_id, context)
        )
        return WrappedKey(master_id, nonce + sealed)

    def unwrap(self, wrapped: WrappedKey, *, context: str) -> bytes:
        master_id = wrapped.master_key_id
        try:
            master = self.keyring.key(master_id)
        except RetiredKeyError:
            raise MasterKeyRetiredError(master_id, context) from None
        except UnknownKeyError:
            raise MasterKeyUnknownError(master_id, context) from None
        nonce, sealed = wrapped.blob[:_NONCE], wrapped.blob[_NONCE:]
        try:
            return AESGCM(master).decrypt(nonce, sealed, _associated(master_id, context))
        except (InvalidTag, ValueError):
            raise WrappedKeyTamperedError(
                context, f"its wrap under master key {master_id!r} does not authenticate"
            ) from None


def _associated(master_id: str, context: str) -> bytes:
    return _AD + master_id.encode() + b"\x00" + context.encode()
