"""Where wrapped data keys live: beside the document bodies, where deletion is real.

A key store holds one small object per patient, ``keys/<name>.json`` under the document
store's folder or bucket prefix (``<name>``: 32 hex, a keyed pseudonym of the patient's
pseudonym), one empty *tombstone* per destroyed key version,
``keys/<name>.<version>.erased``, and one empty erasure marker per erased patient,
``keys/<name>.erased``. The document store's own listing, expiry and usage only
count objects of the ``<32 hex>/<32 hex>.<key id>`` shape, so they never touch ``keys/``.

A tombstone is what makes "erased" a fact rather than a guess: a key id whose record is
missing and that has no tombstone is not erased. In a store that is there it is *missing*
(lost, or another RELAIS_DOCUMENT_STORE / RELAIS_DATA_DIR): a dead letter
``patient-key-missing``, replayable; a store that is not there (:meth:`KeyStore.present`)
is an outage, retried. Neither is ever turned into ``patient-erased``.

Calls are synchronous: envelopes open in the stages' pure cores, which cannot await. The
vault caches what it read, and the async entry points warm it off the event loop
(:func:`relais.keyring.warm_patient_key`), so the cores find the key in the cache.

- :meth:`KeyStore.create` is conditional (first writer wins: ``O_EXCL`` link / S3
  ``If-None-Match: *``), so two processes creating a patient's key at once agree on one.
- :meth:`KeyStore.replace` (a re-wrap) is conditional too (S3 ``If-Match: <ETag>``; a folder
  compares the file right before the rename): a record erased or changed meanwhile is not
  written back.
- :meth:`KeyStore.delete` removes the object (S3: on a bucket without versioning, the
  object is gone; with versioning its older versions still hold the wrapped key: see
  docs/keys-and-erasure.md).
- Writes create the store's ``keys/`` folder when needed (as the document store creates
  its folders); reads never create anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from relais.document_store.errors import StoreUnavailableError

__all__ = [
    "NAME",
    "VERSION",
    "FolderKeyStore",
    "KeyStore",
    "MemoryKeyStore",
    "S3KeyStore",
    "Stored",
]

#: a data key's object name: 32 hex
NAME: Final = re.compile(r"[0-9a-f]{32}")
#: a data key's version (random hex)
VERSION: Final = re.compile(r"[0-9a-f]{4,32}")
_T = TypeVar("_T")


def _check(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError("a data key's name is 32 hex digits")
    return name


def _tomb(name: str, version: str | None) -> str:
    """A version's tombstone, or (``version`` None) the patient's erasure marker."""
    if version is None:
        return f"{_check(name)}.erased"
    if not VERSION.fullmatch(version):
        raise ValueError("a data key's version is 4-32 hex digits")
    return f"{_check(name)}.{version}.erased"


@dataclass(frozen=True, repr=False)
class Stored:
    """A record as read, with the tag a conditional :meth:`KeyStore.replace` compares."""

    blob: bytes
    tag: str

    def __repr__(self) -> str:
        return f"Stored(<{len(self.blob)} bytes>, tag={self.tag!r})"


def _tag(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


class KeyStore(Protocol):
    """Create once, read, replace (re-wrap) if unchanged, delete, tombstones, list."""

    @property
    def description(self) -> str: ...

    def create(self, name: str, blob: bytes) -> bool:
        """Write unless an object is there; True when this call wrote it."""
        ...

    def read(self, name: str) -> Stored | None:
        """The object, or None when there is none (never created, erased, another store)."""
        ...

    def replace(self, name: str, blob: bytes, *, tag: str) -> bool:
        """Overwrite the object if it is still the one read with ``tag``; True if written."""
        ...

    def delete(self, name: str) -> bool:
        """Remove the object; True when there was one."""
        ...

    def bury(self, name: str, version: str | None) -> None:
        """Write the tombstone of ``version`` (before the object is deleted), or with
        ``version`` None the patient's erasure marker (every version up to now is erased:
        a record too corrupt to name its version is erased all the same); idempotent."""
        ...

    def buried(self, name: str, version: str | None) -> bool:
        """True when ``version`` of this key was destroyed (its tombstone is there), or with
        ``version`` None when the patient was ever erased (their marker is there)."""
        ...

    def present(self) -> bool:
        """True when the store itself is there and answers (a folder: it exists): a key
        missing from a store that is there is a dead letter, a store not there an outage."""
        ...

    def names(self) -> Iterator[str]:
        """Every data key's name (records, not tombstones)."""
        ...


class MemoryKeyStore:
    """Dicts (unit tests): ``objects`` the records, ``tombstones`` the destroyed versions."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.tombstones: set[str] = set()
        self.there = True  # False: present() says the store is not there (tests)

    @property
    def description(self) -> str:
        return "memory"

    def create(self, name: str, blob: bytes) -> bool:
        return self.objects.setdefault(_check(name), blob) is blob

    def read(self, name: str) -> Stored | None:
        blob = self.objects.get(_check(name))
        return None if blob is None else Stored(blob, _tag(blob))

    def replace(self, name: str, blob: bytes, *, tag: str) -> bool:
        found = self.read(name)
        if found is None or found.tag != tag:
            return False
        self.objects[name] = blob
        return True

    def delete(self, name: str) -> bool:
        return self.objects.pop(_check(name), None) is not None

    def bury(self, name: str, version: str | None) -> None:
        self.tombstones.add(_tomb(name, version))

    def buried(self, name: str, version: str | None) -> bool:
        return _tomb(name, version) in self.tombstones

    def present(self) -> bool:
        return self.there

    def names(self) -> Iterator[str]:
        return iter(sorted(self.objects))


class FolderKeyStore:
    """``root/<name>.json`` files, each written to a temporary file, fsync'd, then linked
    into place (create: fails when the name exists) or renamed (replace); tombstones are
    empty ``root/<name>.<version>.erased`` files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def description(self) -> str:
        return f"folder {self.root}"

    def _path(self, name: str) -> Path:
        return self.root / f"{_check(name)}.json"

    def create(self, name: str, blob: bytes) -> bool:
        return self._io(lambda: self._write(self._path(name), blob, exclusive=True))

    def read(self, name: str) -> Stored | None:
        return self._io(lambda: self._read(self._path(name)))

    def replace(self, name: str, blob: bytes, *, tag: str) -> bool:
        def unchanged() -> bool:  # checked right before the rename (erasure: see the vault)
            found = self._read(self._path(name))
            return found is not None and found.tag == tag

        return self._io(lambda: self._write(self._path(name), blob, unless=unchanged))

    def delete(self, name: str) -> bool:
        def delete() -> bool:
            try:
                self._path(name).unlink()
            except FileNotFoundError:
                return False
            _fsync(self.root)
            return True

        return self._io(delete)

    def bury(self, name: str, version: str | None) -> None:
        self._io(lambda: self._write(self.root / _tomb(name, version), b"", exclusive=True))

    def buried(self, name: str, version: str | None) -> bool:
        return self._io((self.root / _tomb(name, version)).exists)

    def present(self) -> bool:
        return self._io(self.root.is_dir)

    def names(self) -> Iterator[str]:
        if not self.root.is_dir():
            return iter(())
        found = (p.name.removesuffix(".json") for p in self.root.iterdir())
        return iter(sorted(n for n in found if NAME.fullmatch(n)))

    @staticmethod
    def _read(path: Path) -> Stored | None:
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        return Stored(blob, _tag(blob))

    def _write(
        self,
        path: Path,
        blob: bytes,
        *,
        exclusive: bool = False,
        unless: Callable[[], bool] | None = None,
    ) -> bool:
        """Write ``path`` (``exclusive``: only if absent; ``unless``: only if it says so)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)  # as the document store
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            if exclusive:
                try:
                    os.link(temporary, path)  # atomic, and refuses an existing name
                except FileExistsError:
                    return False
            elif unless is not None and not unless():
                return False
            else:
                os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)
        _fsync(self.root)
        return True

    def _io(self, work: Callable[[], _T]) -> _T:
        try:
            return work()
        except OSError as exc:
            raise StoreUnavailableError(
                f"the patient key store {self.root} failed ({exc.strerror or type(exc).__name__})"
                ": check RELAIS_DOCUMENT_STORE and the folder's rights"
            ) from None


class S3KeyStore:
    """``<prefix>/keys/<name>.json`` objects (tombstones ``<name>.<version>.erased``) in the
    document store's bucket, through a client of its own with short timeouts
    (:func:`relais.patient_keys.open.open_key_store`)."""

    def __init__(self, client: Any, bucket: str, prefix: str, where: str) -> None:
        self.client, self.bucket, self.where = client, bucket, where
        self.prefix = f"{prefix.strip('/')}/keys/" if prefix.strip("/") else "keys/"

    @property
    def description(self) -> str:
        return f"{self.where} ({self.prefix})"

    def _name(self, name: str) -> str:
        return f"{self.prefix}{_check(name)}.json"

    def create(self, name: str, blob: bytes) -> bool:
        return self._put(self._name(name), blob, _ALREADY_THERE, IfNoneMatch="*")

    def read(self, name: str) -> Stored | None:
        def get() -> Stored | None:
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self._name(name))
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
            return Stored(bytes(answer["Body"].read()), str(answer["ETag"]))

        return self._call(get)

    def replace(self, name: str, blob: bytes, *, tag: str) -> bool:
        return self._put(self._name(name), blob, _CHANGED, IfMatch=tag)

    def delete(self, name: str) -> bool:
        def delete() -> bool:
            there = self.read(name) is not None
            self.client.delete_object(Bucket=self.bucket, Key=self._name(name))
            return there

        return self._call(delete)

    def bury(self, name: str, version: str | None) -> None:
        key = f"{self.prefix}{_tomb(name, version)}"
        self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=b""))

    def present(self) -> bool:
        return True  # it answered the read that found no record (errors raise instead)

    def buried(self, name: str, version: str | None) -> bool:
        def head() -> bool:
            key = f"{self.prefix}{_tomb(name, version)}"
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return False
                raise
            return True

        return self._call(head)

    def names(self) -> Iterator[str]:
        def listing() -> list[str]:
            pages = self.client.get_paginator("list_objects_v2")
            found = []
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for entry in page.get("Contents", []):
                    name = str(entry["Key"])[len(self.prefix) :].removesuffix(".json")
                    if NAME.fullmatch(name):
                        found.append(name)
            return sorted(found)

        return iter(self._call(listing))

    def _put(self, key: str, blob: bytes, failed: frozenset[str], **condition: str) -> bool:
        """A conditional put: False when it answers one of the ``failed`` codes."""

        def put() -> bool:
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=blob, **condition)
            except ClientError as exc:
                if _code(exc) in failed:
                    return False
                raise
            return True

        return self._call(put)

    def _call(self, work: Callable[[], _T]) -> _T:
        try:
            return work()
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailableError(
                f"the patient key store {self.description} failed ({type(exc).__name__}): "
                "check RELAIS_DOCUMENT_STORE, RELAIS_DOCUMENT_STORE_ENDPOINT and the AWS_* "
                "credentials"
            ) from None


_MISSING: Final = frozenset({"NoSuchKey", "404", "NotFound"})
_ALREADY_THERE: Final = frozenset({"PreconditionFailed", "412"})  # 409 (concurrent): retried
#: a re-wrap's record changed or went (erased) since it was read: not written back
_CHANGED: Final = _ALREADY_THERE | _MISSING | {"ConditionalRequestConflict", "409"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _fsync(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
