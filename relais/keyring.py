"""The keyring: AES-256 keys by id, the active one, and the pseudonym key.

Every envelope names the key that sealed it, so rotation only adds a key and
makes it active; retired keys stay in the keyring for as long as records
sealed with them exist on a topic. The pseudonym key is separate and never
rotates, because pseudonyms are Kafka record keys: if they changed, one
patient's documents would move to another partition and lose their order.

File format (``relais keys generate --out PATH`` writes one)::

    {"active": "<key id>",
     "keys": {"<key id>": "<base64 of 32 bytes>", ...},
     "pseudonym_key": "<base64 of 32 bytes>",
     "retired": ["<key id>", ...]}          (optional)

With per-patient keys (:mod:`relais.patient_keys`, RELAIS_PATIENT_KEYS) the keys are also
the master keys that wrap each patient's data key; :attr:`Keyring.patients` is then the
vault that resolves patients' key ids, and :meth:`Keyring.for_patient` the keyring that seals
under one patient's data key. A retired key's material is gone: :meth:`Keyring.key` refuses
its id with :class:`RetiredKeyError`.

Key material never appears in a message, a ``repr`` or a log line; errors
name the key id, the origin (file path or variable) and what to fix.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from relais.envelope import PATIENT_KEY_PREFIX, RetiredKeyError, UnknownKeyError
from relais.private_file import write_private

__all__ = [
    "KEY_SIZE",
    "Keyring",
    "KeyringError",
    "PatientKeys",
    "RetiredKeyError",
    "UnknownKeyError",
    "pseudonymise",
    "warm_patient_key",
]

KEY_SIZE = 32
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_FIELDS = ("active", "keys", "pseudonym_key")
_OPTIONAL = ("retired",)


class PatientKeys(Protocol):
    """Patients' data keys (:class:`relais.patient_keys.vault.PatientVault`)."""

    def sealing_key(self, patient_key: str) -> tuple[str, bytes]:
        """(key id, key) of the patient's data key, created on first use (intake only)."""
        ...

    def key(self, key_id: str) -> bytes:
        """The data key a patient key id names (``ErasedKeyError`` once it is erased)."""
        ...

    def existing_key(self, patient_key: str) -> tuple[str, bytes] | None:
        """(key id, key) of the patient's data key if they have one; never makes one."""
        ...

    def is_cached(self, patient_key: str, *, create: bool = False) -> bool:
        """True when the patient's key (``create``: not just "they have none") is at hand
        without reading the key store."""
        ...

    def warm(self, patient_key: str, *, create: bool) -> None:
        """Read (``create``: or make) the patient's key into the cache; raises only
        ``StoreUnavailableError`` (the key store down)."""
        ...


class KeyringError(ValueError):
    """The keyring cannot be used as given; the message says what to fix and where."""


def _check_key_id(key_id: object, what: str) -> str:
    # An invalid id is not echoed: a misplaced base64 key would otherwise be printed.
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise KeyringError(f"{what} is not a valid key id: use 1-64 of A-Z a-z 0-9 . _ -")
    if key_id.startswith(PATIENT_KEY_PREFIX):
        raise KeyringError(f"{what} starts with {PATIENT_KEY_PREFIX!r}: reserved for patients")
    return key_id


def _check_key(key: object, what: str) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        size = f"{len(key)} bytes" if isinstance(key, bytes) else type(key).__name__
        raise KeyringError(
            f"{what} is {size}; it must be exactly {KEY_SIZE} bytes "
            "(base64 of 32 random bytes, as `relais keys generate` writes)"
        )
    return key


def _new_key_id(now: datetime | None) -> str:
    day = (now or datetime.now(UTC)).strftime("%Y%m%d")
    return f"k{day}-{secrets.token_hex(2)}"


@dataclass(frozen=True, repr=False)
class Keyring:
    """Immutable set of keys; :meth:`rotated` returns a new keyring.

    ``patients`` (None: per-patient keys off) resolves patients' key ids; ``patient`` is the
    patient whose data key :meth:`sealing_key` names (set by :meth:`for_patient`); ``mint``
    (set by :meth:`minting`, at intake only) makes that key when the patient has none, else
    a patient without a key is sealed for under the shared key (stages and sinks never make
    a patient's key: an erased patient's late record must not give them a new one)."""

    active_key_id: str
    keys: Mapping[str, bytes]
    pseudonym_key: bytes
    retired: frozenset[str] = frozenset()
    patients: PatientKeys | None = field(default=None, compare=False)
    patient: str | None = None
    mint: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        keys = {
            _check_key_id(key_id, "a key id in 'keys'"): _check_key(key, f"key {key_id!r}")
            for key_id, key in self.keys.items()
        }
        retired = frozenset(_check_key_id(k, "a key id in 'retired'") for k in self.retired)
        if both := sorted(retired & set(keys)):
            raise KeyringError(
                f"key {both[0]!r} is both in 'keys' and 'retired': a retired key's material "
                "is removed (`relais keys retire` does it)"
            )
        object.__setattr__(self, "retired", retired)
        active = _check_key_id(self.active_key_id, "'active'")
        if active not in keys:
            known = ", ".join(sorted(keys)) or "(none)"
            raise KeyringError(
                f"'active' names key {active!r}, which is not in 'keys'; "
                f"set 'active' to one of: {known}"
            )
        _check_key(self.pseudonym_key, "'pseudonym_key'")
        object.__setattr__(self, "keys", MappingProxyType(keys))

    def __repr__(self) -> str:
        return f"Keyring(active_key_id={self.active_key_id!r}, key_ids={tuple(self.keys)!r})"

    @classmethod
    def generate(cls, key_id: str | None = None, *, now: datetime | None = None) -> Keyring:
        """A fresh keyring with one random key (id ``k<YYYYMMDD>-<4 hex>`` by default)."""
        key_id = key_id if key_id is not None else _new_key_id(now)
        return cls(
            active_key_id=key_id,
            keys={key_id: secrets.token_bytes(KEY_SIZE)},
            pseudonym_key=secrets.token_bytes(KEY_SIZE),
        )

    def rotated(self, new_key_id: str | None = None, *, now: datetime | None = None) -> Keyring:
        """A keyring with one more random key, made active; older keys still decrypt."""
        if new_key_id is None:
            new_key_id = _new_key_id(now)
            while new_key_id in self.keys:
                new_key_id = _new_key_id(now)
        elif new_key_id in self.keys:
            raise KeyringError(
                f"key id {new_key_id!r} is already in the keyring; pick a new id to rotate to"
            )
        if new_key_id in self.retired:
            raise KeyringError(f"key id {new_key_id!r} was retired; pick a new id to rotate to")
        return Keyring(
            active_key_id=new_key_id,
            keys={**self.keys, new_key_id: secrets.token_bytes(KEY_SIZE)},
            pseudonym_key=self.pseudonym_key,
            retired=self.retired,
        )

    def key(self, key_id: str) -> bytes:
        """The key with this id (a patient's through :attr:`patients`);
        :class:`UnknownKeyError` (:class:`RetiredKeyError`) if it is not held."""
        found = self.keys.get(key_id)
        if found is not None:
            return found
        if key_id in self.retired:
            raise RetiredKeyError(key_id)
        if self.patients is not None and key_id.startswith(PATIENT_KEY_PREFIX):
            return self.patients.key(key_id)
        raise UnknownKeyError(key_id)

    def for_patient(self, patient_key: str | None) -> Keyring:
        """The keyring that seals under this patient's data key (the patient's pseudonym,
        the records' Kafka key); itself when per-patient keys are off or none is given."""
        if self.patients is None or not patient_key or patient_key == self.patient:
            return self
        return replace(self, patient=patient_key)

    def minting(self) -> Keyring:
        """This keyring, making a patient's data key when they have none (the intake points
        only: the producer library once a message is accepted, ``relais mss watch``)."""
        return self if self.mint else replace(self, mint=True)

    def for_existing_patient(self, patient_key: str | None) -> Keyring:
        """:meth:`for_patient` when the patient has a data key now, else :meth:`shared`: never
        makes a key (dead letters: an erased patient's record must not give them a new one).
        Raises what reading the key store raises."""
        if self.patients is None or not patient_key:
            return self.shared()
        if self.patients.existing_key(patient_key) is None:
            return self.shared()
        return replace(self, patient=patient_key, mint=False)

    def shared(self) -> Keyring:
        """The keyring that seals under the active key, whatever patient it was for."""
        return replace(self, patient=None) if self.patient is not None else self

    def sealing_key(self) -> tuple[str, bytes]:
        """(key id, key) :func:`relais.envelope.seal` uses: the patient's data key (made now
        only when :attr:`mint`), or the active key when there is no patient or they have no
        key (never made outside intake)."""
        if self.patients is not None and self.patient is not None:
            if self.mint:
                return self.patients.sealing_key(self.patient)
            found = self.patients.existing_key(self.patient)
            if found is not None:
                return found
        return self.active_key_id, self.keys[self.active_key_id]

    def retire(self, key_id: str) -> Keyring:
        """A keyring without ``key_id``'s material, which is listed as retired."""
        if key_id == self.active_key_id:
            raise KeyringError(f"key {key_id!r} is the active key; rotate before retiring it")
        if key_id not in self.keys:
            raise KeyringError(f"key {key_id!r} is not in the keyring's 'keys'")
        keys = {k: v for k, v in self.keys.items() if k != key_id}
        return Keyring(self.active_key_id, keys, self.pseudonym_key, self.retired | {key_id})

    @classmethod
    def from_json(cls, text: str, *, origin: str = "RELAIS_KEYRING") -> Keyring:
        """Parse the keyring format; ``origin`` names the source in error messages."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # The exception's position is enough; its document is key material.
            raise KeyringError(
                f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
        if not isinstance(data, dict):
            raise KeyringError(f"{origin}: expected a JSON object with fields {_FIELDS}")
        missing = [name for name in _FIELDS if name not in data]
        unknown = sorted(name for name in data if name not in _FIELDS + _OPTIONAL)
        if missing or unknown:
            raise KeyringError(
                f"{origin}: the keyring needs exactly the fields {_FIELDS} "
                f"(and optionally {_OPTIONAL}); missing {missing}, unexpected {unknown}"
            )
        retired = _retired(data, origin)
        if not isinstance(data["keys"], dict) or not data["keys"]:
            raise KeyringError(f"{origin}: 'keys' must be a non-empty object of id -> base64 key")

        def decode(value: object, what: str) -> bytes:
            if not isinstance(value, str):
                raise KeyringError(f"{origin}: {what} must be a base64 string")
            try:
                return base64.b64decode(value, validate=True)
            except binascii.Error:
                raise KeyringError(f"{origin}: {what} is not valid base64") from None

        keys = {
            _check_key_id(key_id, f"{origin}: a key id in 'keys'"): decode(value, f"key {key_id!r}")
            for key_id, value in data["keys"].items()
        }
        pseudonym_key = decode(data["pseudonym_key"], "'pseudonym_key'")
        try:
            return cls(data["active"], keys, pseudonym_key, frozenset(retired))
        except KeyringError as exc:
            raise KeyringError(f"{origin}: {exc}") from None

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        """Read a keyring file, refusing one that group or others can access."""
        try:
            with path.open("r", encoding="utf-8") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                if not stat.S_ISREG(mode):
                    raise KeyringError(f"keyring file {path} is not a regular file")
                if mode & 0o077:
                    raise KeyringError(
                        f"keyring file {path} is accessible to group or others "
                        f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
                    )
                text = handle.read()
        except FileNotFoundError:
            raise KeyringError(
                f"keyring file {path} does not exist; create one with "
                f"`relais keys generate --out {path}`"
            ) from None
        except UnicodeDecodeError:
            raise KeyringError(f"keyring file {path} is not UTF-8 JSON text") from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise KeyringError(f"keyring file {path} cannot be read: {reason}") from None
        return cls.from_json(text, origin=str(path))

    def to_json(self) -> str:
        """The file format; the caller must keep it out of logs and world-readable places."""

        def b64(key: bytes) -> str:
            return base64.b64encode(key).decode("ascii")

        document: dict[str, object] = {
            "active": self.active_key_id,
            "keys": {key_id: b64(key) for key_id, key in self.keys.items()},
            "pseudonym_key": b64(self.pseudonym_key),
        }
        if self.retired:
            document["retired"] = sorted(self.retired)
        return json.dumps(document, indent=2)

    def write(self, path: Path) -> None:
        """Write the keyring to ``path`` atomically, mode 0600.

        A temporary file in the same directory is written, synced, then renamed
        over ``path``: readers see the old keyring or the new one, never half.
        """
        write_private(path, self.to_json() + "\n")


def _retired(data: dict[str, object], origin: str) -> frozenset[str]:
    retired = data.get("retired", [])
    if not isinstance(retired, list) or not all(isinstance(r, str) for r in retired):
        raise KeyringError(f"{origin}: 'retired' must be a list of key ids")
    return frozenset(retired)


async def warm_patient_key(
    keyring: Keyring, patient_key: str | None, *, create: bool | None = None
) -> None:
    """Read the patient's data key into the vault's cache in a thread, so that the
    synchronous sealing and opening that follow (the stages' cores) only hit the cache and
    the event loop never waits on the key store. ``create`` (default: the keyring's
    :attr:`~Keyring.mint`) makes it when the patient has none. Nothing to do when
    per-patient keys are off, for no patient, or when the key (or the fact that the patient
    has none) is cached already (the hot path: no thread). Raises
    ``StoreUnavailableError`` when the key store is down (callers retry the record)."""
    vault = keyring.patients
    create = keyring.mint if create is None else create
    if vault is None or not patient_key or vault.is_cached(patient_key, create=create):
        return
    await asyncio.to_thread(vault.warm, patient_key, create=create)


def pseudonymise(keyring: Keyring, value: str, *, domain: str = "patient") -> str:
    """Stable keyed pseudonym of ``value`` (hex HMAC-SHA256).

    Used as the Kafka record key: one patient's documents land on one
    partition, in order, without the INS appearing on the broker. The
    ``domain`` keeps pseudonyms of different kinds of value unlinkable.
    """
    if not domain or "\x00" in domain:
        raise ValueError("domain must be a non-empty string without NUL characters")
    message = domain.encode("utf-8") + b"\x00" + value.encode("utf-8")
    return hmac.new(keyring.pseudonym_key, message, hashlib.sha256).hexdigest()
