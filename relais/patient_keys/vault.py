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

"Erased" is a fact written down: erasure leaves a tombstone per destroyed version, and the
patient's erasure marker, in the key store. A key id with neither record nor tombstone, in a
store that is there, is :class:`PatientKeyMissingError` (dead letter ``patient-key-missing``,
replayable once the record is restored), never taken for an erasure; a store not there (its
folder absent, S3 failing) is :class:`StoreUnavailableError` (retried).

Only the intake points make keys (:meth:`PatientVault.sealing_key`); stages and sinks use
:meth:`PatientVault.existing_key` (the shared key when the patient has none).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from relais.document_store.errors import StoreUnavailableError
from relais.envelope import PATIENT_KEY_PREFIX
from relais.metrics import PATIENT_KEYS
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
        """(key id, DEK) of the patient, made and stored on first use: the intake points
        only (:meth:`relais.keyring.Keyring.minting`); stages and sinks use
        :meth:`existing_key`."""
        name = self.name_of(patient_key)
        with self._counted():
            cached = self._cached(name)
            if cached is None or not cached.version:
                cached = self._load(name) or self._create(name)
        return key_id_of(name, cached.version), cached.key

    def existing_key(self, patient_key: str) -> tuple[str, bytes] | None:
        """(key id, DEK) of the patient when they have one now; never makes one (stages,
        sinks, dead letters: a record of an erased patient must not give them a new key).
        "They have none" is cached too, like a key."""
        name = self.name_of(patient_key)
        with self._counted():
            cached = self._cached(name)
            if cached is None:
                cached = self._load(name) or self._remember(name, "", b"")
        return None if not cached.version else (key_id_of(name, cached.version), cached.key)

    def current_key_id(self, patient_key: str) -> str | None:
        """The id of the patient's data key in the key store (reads it), or None; a record
        too corrupt to name its version gives ``p.<name>.(corrupt record)`` (erasure still
        destroys it)."""
        name = self.name_of(patient_key)
        stored = self.store.read(name)
        if stored is None:
            return None
        try:
            version = str(_parse(name, stored.blob)["version"])
        except WrappedKeyTamperedError:
            version = ""
        return key_id_of(name, version) if VERSION.fullmatch(version) else _corrupt(name)

    def is_cached(self, patient_key: str, *, create: bool = False) -> bool:
        """True when the patient's current key is in the cache (or, unless ``create``, the
        fact that they have none): using it reads nothing."""
        cached = self._cached(self.name_of(patient_key))
        return cached is not None and (bool(cached.version) or not create)

    def warm(self, patient_key: str, *, create: bool) -> None:
        """Load the patient's key into the cache (``create``: make it if they have none), so
        that the synchronous code after finds it there. Run off the event loop. The key store
        down (:class:`StoreUnavailableError`) is raised: the caller retries the record at
        once instead of meeting the outage again on its event loop; other failures are left
        to the code after, which raises them where they are handled."""
        try:
            if create:
                self.sealing_key(patient_key)
            else:
                self.existing_key(patient_key)
        except StoreUnavailableError:
            raise
        except Exception:  # noqa: S110 - raised again, in context, by the caller's code
            pass

    def key(self, key_id: str) -> bytes:
        """The DEK ``key_id`` names: :class:`ErasedKeyError` when it was destroyed (its
        tombstone, or the patient's erasure marker, is there),
        :class:`PatientKeyMissingError` when the store answers but has neither (dead letter
        ``patient-key-missing``), :class:`StoreUnavailableError` when the store is not there."""
        name, version = parse_key_id(key_id)
        if key_id in self._erased:
            raise ErasedKeyError(key_id)
        with self._counted():
            cached = self._cached(name)
            if cached is None or cached.version != version:
                cached = self._load(name)
            if cached is not None and cached.version == version:
                return cached.key
            self._missing(name, version, key_id)
        with self._lock:
            self._erased[key_id] = None
            while len(self._erased) > _ERASED_REMEMBERED:
                self._erased.popitem(last=False)
        raise ErasedKeyError(key_id)

    def _missing(self, name: str, version: str, key_id: str) -> None:
        """Return when ``key_id`` was erased; raise when it is just not there."""
        if self.store.buried(name, version) or self.store.buried(name, None):
            return
        if not self.store.present():
            raise StoreUnavailableError(
                f"the patient key store {self.store.description} is not there: check "
                "RELAIS_DOCUMENT_STORE (and RELAIS_DATA_DIR) and that the store is mounted"
            )
        PATIENT_KEYS.labels("missing").inc()
        raise PatientKeyMissingError(key_id, self.store.description)

    def erase(self, patient_key: str) -> str | None:
        """Destroy the patient's DEK; its key id, or None when there was none.

        The tombstone and the patient's erasure marker are written first, then the record
        deleted: a run cut short between the two is run again; a re-wrap racing with it
        never writes the key back (:meth:`rewrap`). A record too corrupt to name its version
        is deleted all the same (the marker makes every earlier version erased)."""
        name = self.name_of(patient_key)
        stored = self.store.read(name)
        with self._lock:
            self._cache.pop(name, None)
        if stored is None:
            return None
        try:
            version: str | None = str(_parse(name, stored.blob)["version"])
        except WrappedKeyTamperedError:
            version = None
        if version is not None and VERSION.fullmatch(version):
            self.store.bury(name, version)
        self.store.bury(name, None)
        self.store.delete(name)
        if version is None or not VERSION.fullmatch(version):
            return _corrupt(name)
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
        tombstone, then deletes: whichever order the two interleave in, the key goes). A
        record found under its tombstone (an erasure cut short) is deleted; a corrupt one
        is refused."""
        stored = self.store.read(name)
        if stored is None:
            return "gone"
        try:
            fields = _parse(name, stored.blob)
            version = str(fields["version"])
            buried = self.store.buried(name, version)
        except (WrappedKeyTamperedError, ValueError):
            return "refused"
        if buried:  # erased: an erasure under way, or one cut short: the key goes now
            self.store.delete(name)
            return "gone"
        if fields["master_key_id"] == self.kms.active_key_id:
            return "current"
        return self._rewrite(name, version, fields, stored.tag)

    def _rewrite(self, name: str, version: str, fields: dict[str, object], tag: str) -> str:
        try:
            dek = self._unwrap(name, fields)
        except PatientKeyError:
            return "refused"
        if not self.store.replace(name, self._record(name, version, dek), tag=tag):
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
        """The stored key, or None: no record, or a record whose version is tombstoned (an
        erasure cut short between its tombstone and the delete: refused, never used)."""
        stored = self.store.read(name)
        if stored is None:
            return None
        fields = _parse(name, stored.blob)
        version = str(fields["version"])
        if not VERSION.fullmatch(version):
            raise WrappedKeyTamperedError(name, "its version is not 4-32 hex digits")
        if self.store.buried(name, version):
            return None
        return self._remember(name, version, self._unwrap(name, fields))

    def _create(self, name: str) -> _Cached:
        version, dek = secrets.token_hex(4), secrets.token_bytes(_DEK_SIZE)
        record = self._record(name, version, dek)
        for _ in range(2):
            if self.store.create(name, record):
                PATIENT_KEYS.labels("created").inc()
                return self._remember(name, version, dek)
            winner = self._load(name)  # another process created it first: use theirs
            if winner is not None:
                return winner
            self.store.delete(name)  # a tombstoned leftover (erasure cut short): it goes
        raise PatientKeyError(f"patient data key {name} vanished while it was created")

    @contextmanager
    def _counted(self) -> Iterator[None]:
        """Count the key store's outages (``relais_patient_keys_total{outcome="unavailable"}``)."""
        try:
            yield
        except StoreUnavailableError as exc:
            if not isinstance(exc, PatientKeyError):  # MasterKeyUnknownError: its own cause
                PATIENT_KEYS.labels("unavailable").inc()
            raise

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


def _corrupt(name: str) -> str:
    """What stands for the key id of a record too corrupt to name its version."""
    return f"{PATIENT_KEY_PREFIX}{name}.(corrupt record)"


def _parse(name: str, blob: bytes) -> dict[str, object]:
    try:
        fields = json.loads(blob)
    except ValueError:
        raise WrappedKeyTamperedError(name, "its record is not JSON") from None
    wanted = ("v", "version", "master_key_id", "wrapped")
    if not isinstance(fields, dict) or any(k not in fields for k in wanted) or fields["v"] != 1:
        raise WrappedKeyTamperedError(name, f"its record lacks one of {wanted} (or is not v1)")
    return fields
