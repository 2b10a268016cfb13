"""The vault of patients' data keys: get or create, resolve, erase, re-wrap.

Each patient (by pseudonym: the records' Kafka key, ``patient_key``) has at most one data
key (DEK) at a time: 32 random bytes, stored only wrapped by a master key (:mod:`.kms`) in a
key store (:mod:`.stores`) under the patient's *name* (a keyed pseudonym of the pseudonym).
The DEK's key id, which every envelope and body sealed with it names, is
``p.<name>.<version>``; ``<version>`` is random, so a DEK made after an erasure never opens
what the erased one sealed.

Unwrapped DEKs are cached in the process for ``cache_s`` seconds (RELAIS_PATIENT_KEY_CACHE_S)
and at most ``cache_size`` of them: after ``relais patient erase``, a process that used the
patient's key in that window can still open (and seal with) it until its entry expires.
The erasing process drops its own entry at once; key ids found erased are remembered.

"Erased" is a fact written down: erasure leaves a tombstone per destroyed version in the key
store. A key id with neither record nor tombstone is :class:`PatientKeyMissingError` (the
process reads another store: retried), never taken for an erasure.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from relais.envelope import PATIENT_KEY_PREFIX
from relais.patient_keys.errors import (
    ErasedKeyError,
    PatientKeyError,
    PatientKeyMissingError,
    WrappedKeyTamperedError,
)
from relais.patient_keys.kms import Kms, WrappedKey
from relais.patient_keys.stores import NAME, VERSION, KeyStore

__all__ = ["PatientVault", "Rewrapped", "key_id_of", "parse_key_id"]

_DEK_SIZE: Final = 32
_ERASED_REMEMBERED: Final = 100_000


def key_id_of(name: str, version: str) -> str:
    return f"{PATIENT_KEY_PREFIX}{name}.{version}"


def parse_key_id(key_id: str) -> tuple[str, str]:
    """(name, version) of a patient key id; :class:`PatientKeyError` if it is not one."""
    parts = key_id.split(".")
    name, version = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
    if not (
        key_id.startswith(PATIENT_KEY_PREFIX)
        and NAME.fullmatch(name)
        and VERSION.fullmatch(version)
    ):
        raise PatientKeyError(f"{key_id!r} is not a patient data key id")
    return name, version


@dataclass(frozen=True)
class Rewrapped:
    """What a re-wrap did: re-wrapped, already under the active key, refused (retired...)."""

    rewrapped: int
    current: int
    refused: int


@dataclass(frozen=True)
class _Cached:
    version: str
    key: bytes
    until: float


class PatientVault:
    """Patients' data keys over a KMS and a key store (see the module docstring)."""

    def __init__(
        self,
        kms: Kms,
        store: KeyStore,
        *,
        namer: Callable[[str], str],
        cache_s: float = 60.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kms, self.store, self.namer = kms, store, namer
        self.cache_s, self.cache_size, self.clock = cache_s, cache_size, clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._erased: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def name_of(self, patient_key: str) -> str:
        """The patient's data key name (32 hex)."""
        return self.namer(patient_key)[:32]

    def sealing_key(self, patient_key: str) -> tuple[str, bytes]:
        """(key id, DEK) of the patient, made and stored on first use."""
        name = self.name_of(patient_key)
        cached = self._cached(name)
        if cached is None:
            cached = self._load(name) or self._create(name)
        return key_id_of(name, cached.version), cached.key

    def existing_key(self, patient_key: str) -> tuple[str, bytes] | None:
        """(key id, DEK) of the patient when they have one now; never makes one (what a dead
        letter uses: a record of an erased patient must not give them a new key)."""
        name = self.name_of(patient_key)
        cached = self._cached(name) or self._load(name)
        return None if cached is None else (key_id_of(name, cached.version), cached.key)

    def current_key_id(self, patient_key: str) -> str | None:
        """The id of the patient's data key in the key store (reads it), or None."""
        name = self.name_of(patient_key)
        stored = self.store.read(name)
        if stored is None:
            return None
        return key_id_of(name, str(_parse(name, stored.blob)["version"]))

    def is_cached(self, patient_key: str) -> bool:
        """True when the patient's current key is in the cache: using it reads nothing."""
        return self._cached(self.name_of(patient_key)) is not None

    def warm(self, patient_key: str, *, create: bool) -> None:
        """Load the patient's key into the cache (``create``: make it if they have none), so
        that the synchronous code after finds it there. Run off the event loop; failures are
        left to that code, which raises them where they are handled."""
        try:
            if create:
                self.sealing_key(patient_key)
            else:
                self.existing_key(patient_key)
        except Exception:  # noqa: S110 - raised again, in context, by the caller's code
            pass

    def key(self, key_id: str) -> bytes:
        """The DEK ``key_id`` names: :class:`ErasedKeyError` when it was destroyed (its
        tombstone is there), :class:`PatientKeyMissingError` when it is just not there."""
        name, version = parse_key_id(key_id)
        if key_id in self._erased:
            raise ErasedKeyError(key_id)
        cached = self._cached(name)
        if cached is None or cached.version != version:
            cached = self._load(name)
        if cached is not None and cached.version == version:
            return cached.key
        if not self.store.buried(name, version):
            raise PatientKeyMissingError(key_id, self.store.description)
        with self._lock:
            self._erased[key_id] = None
            while len(self._erased) > _ERASED_REMEMBERED:
                self._erased.popitem(last=False)
        raise ErasedKeyError(key_id)

    def erase(self, patient_key: str) -> str | None:
        """Destroy the patient's DEK; its key id, or None when there was none.

        The tombstone is written first, then the record deleted: a run cut short between
        the two is run again; a re-wrap racing with it never writes the key back
        (:meth:`rewrap`)."""
        name = self.name_of(patient_key)
        stored = self.store.read(name)
        with self._lock:
            self._cache.pop(name, None)
        if stored is None:
            return None
        version = str(_parse(name, stored.blob)["version"])
        self.store.bury(name, version)
        self.store.delete(name)
        with self._lock:
            self._erased[key_id_of(name, version)] = None
        return key_id_of(name, version)

    def rewrap(self) -> Rewrapped:
        """Re-wrap every DEK under the KMS's active master key."""
        counts = {"rewrapped": 0, "current": 0, "refused": 0, "gone": 0}
        for name in self.store.names():
            counts[self._rewrap_one(name)] += 1
        return Rewrapped(counts["rewrapped"], counts["current"], counts["refused"])

    def _rewrap_one(self, name: str) -> str:
        """One record re-wrapped; never written back once erased (erasure writes the
        tombstone, then deletes: whichever order the two interleave in, the key goes)."""
        stored = self.store.read(name)
        fields = None if stored is None else _parse(name, stored.blob)
        if stored is None or fields is None or self.store.buried(name, str(fields["version"])):
            return "gone"  # erased, or an erasure under way
        if fields["master_key_id"] == self.kms.active_key_id:
            return "current"
        version = str(fields["version"])
        try:
            dek = self._unwrap(name, fields)
        except PatientKeyError:
            return "refused"
        if not self.store.replace(name, self._record(name, version, dek), tag=stored.tag):
            return "gone"  # erased or changed since it was read: not written back
        if self.store.buried(name, version):  # erased while this wrote: erasure wins
            self.store.delete(name)
            return "gone"
        return "rewrapped"

    def wrapped_under(self) -> dict[str, int]:
        """How many DEKs each master key wraps."""
        counts: dict[str, int] = {}
        for name in self.store.names():
            stored = self.store.read(name)
            if stored is not None:
                master = str(_parse(name, stored.blob)["master_key_id"])
                counts[master] = counts.get(master, 0) + 1
        return counts

    # -- internals ----------------------------------------------------------------------------
    def _cached(self, name: str) -> _Cached | None:
        with self._lock:
            found = self._cache.get(name)
            if found is not None and found.until <= self.clock():
                del self._cache[name]
                found = None
            return found

    def _remember(self, name: str, version: str, dek: bytes) -> _Cached:
        cached = _Cached(version, dek, self.clock() + self.cache_s)
        with self._lock:
            self._cache[name] = cached
            self._cache.move_to_end(name)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return cached

    def _load(self, name: str) -> _Cached | None:
        stored = self.store.read(name)
        if stored is None:
            return None
        fields = _parse(name, stored.blob)
        return self._remember(name, str(fields["version"]), self._unwrap(name, fields))

    def _create(self, name: str) -> _Cached:
        version, dek = secrets.token_hex(4), secrets.token_bytes(_DEK_SIZE)
        if self.store.create(name, self._record(name, version, dek)):
            return self._remember(name, version, dek)
        winner = self._load(name)  # another process created it first: use theirs
        if winner is None:
            raise PatientKeyError(f"patient data key {name} vanished while it was created")
        return winner

    def _record(self, name: str, version: str, dek: bytes) -> bytes:
        wrapped = self.kms.wrap(dek, context=key_id_of(name, version))
        return json.dumps(
            {
                "v": 1,
                "version": version,
                "master_key_id": wrapped.master_key_id,
                "wrapped": base64.b64encode(wrapped.blob).decode("ascii"),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            sort_keys=True,
        ).encode()

    def _unwrap(self, name: str, fields: dict[str, object]) -> bytes:
        try:
            blob = base64.b64decode(str(fields["wrapped"]), validate=True)
        except binascii.Error:
            raise WrappedKeyTamperedError(name, "its wrapped key is not base64") from None
        wrapped = WrappedKey(str(fields["master_key_id"]), blob)
        dek = self.kms.unwrap(wrapped, context=key_id_of(name, str(fields["version"])))
        if len(dek) != _DEK_SIZE:
            raise WrappedKeyTamperedError(name, f"the unwrapped key is not {_DEK_SIZE} bytes")
        return dek


def _parse(name: str, blob: bytes) -> dict[str, object]:
    try:
        fields = json.loads(blob)
    except ValueError:
        raise WrappedKeyTamperedError(name, "its record is not JSON") from None
    wanted = ("v", "version", "master_key_id", "wrapped")
    if not isinstance(fields, dict) or any(k not in fields for k in wanted) or fields["v"] != 1:
        raise WrappedKeyTamperedError(name, f"its record lacks one of {wanted} (or is not v1)")
    return fields
