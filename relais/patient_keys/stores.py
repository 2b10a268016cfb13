"""Where wrapped data keys live: beside the document bodies, where deletion is real.

A key store holds one small object per patient, ``keys/<name>.json`` under the document
store's folder or bucket prefix (``<name>``: 32 hex, a keyed pseudonym of the patient's
pseudonym). The document store's own listing, expiry and usage only count objects of the
``<32 hex>/<32 hex>.<key id>`` shape, so they never touch ``keys/``.

Calls are synchronous: envelopes open in the stages' pure cores, which cannot await. The
vault caches what it read, so a process calls its store once per patient per cache period
(RELAIS_PATIENT_KEY_CACHE_S); an S3 call then blocks its event loop for one round trip.

- :meth:`KeyStore.create` is conditional (first writer wins: ``O_EXCL`` link / S3
  ``If-None-Match: *``), so two processes creating a patient's key at once agree on one.
- :meth:`KeyStore.delete` removes the object (S3: on a bucket without versioning, the
  object is gone; with versioning, erasure must also remove the versions: see
  docs/keys-and-erasure.md).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from relais.document_store.errors import StoreUnavailableError

__all__ = ["NAME", "FolderKeyStore", "KeyStore", "MemoryKeyStore", "S3KeyStore"]

#: a data key's object name: 32 hex
NAME: Final = re.compile(r"[0-9a-f]{32}")
_T = TypeVar("_T")


def _check(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError("a data key's name is 32 hex digits")
    return name


class KeyStore(Protocol):
    """Create once, read, replace (re-wrap), delete, list."""

    @property
    def description(self) -> str: ...

    def create(self, name: str, blob: bytes) -> bool:
        """Write unless an object is there; True when this call wrote it."""
        ...

    def get(self, name: str) -> bytes | None:
        """The object, or None when there is none (never created, or erased)."""
        ...

    def replace(self, name: str, blob: bytes) -> None:
        """Overwrite an object (a re-wrap)."""
        ...

    def delete(self, name: str) -> bool:
        """Remove the object; True when there was one."""
        ...

    def names(self) -> Iterator[str]:
        """Every data key's name."""
        ...


class MemoryKeyStore:
    """A dict (unit tests)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    @property
    def description(self) -> str:
        return "memory"

    def create(self, name: str, blob: bytes) -> bool:
        return self.objects.setdefault(_check(name), blob) is blob

    def get(self, name: str) -> bytes | None:
        return self.objects.get(_check(name))

    def replace(self, name: str, blob: bytes) -> None:
        self.objects[_check(name)] = blob

    def delete(self, name: str) -> bool:
        return self.objects.pop(_check(name), None) is not None

    def names(self) -> Iterator[str]:
        return iter(sorted(self.objects))


class FolderKeyStore:
    """``root/<name>.json`` files, each written to a temporary file, fsync'd, then linked
    into place (create: fails when the name exists) or renamed (replace)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def description(self) -> str:
        return f"folder {self.root}"

    def _path(self, name: str) -> Path:
        return self.root / f"{_check(name)}.json"

    def create(self, name: str, blob: bytes) -> bool:
        return self._io(lambda: self._write(self._path(name), blob, exclusive=True))

    def get(self, name: str) -> bytes | None:
        def read() -> bytes | None:
            try:
                return self._path(name).read_bytes()
            except FileNotFoundError:
                return None

        return self._io(read)

    def replace(self, name: str, blob: bytes) -> None:
        self._io(lambda: self._write(self._path(name), blob, exclusive=False))

    def delete(self, name: str) -> bool:
        def delete() -> bool:
            path = self._path(name)
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            _fsync(self.root)
            return True

        return self._io(delete)

    def names(self) -> Iterator[str]:
        if not self.root.is_dir():
            return iter(())
        found = (p.name.removesuffix(".json") for p in self.root.iterdir())
        return iter(sorted(n for n in found if NAME.fullmatch(n)))

    def _write(self, path: Path, blob: bytes, *, exclusive: bool) -> bool:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
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
    """``<prefix>/keys/<name>.json`` objects in the document store's bucket."""

    def __init__(self, client: Any, bucket: str, prefix: str, where: str) -> None:
        self.client, self.bucket, self.where = client, bucket, where
        self.prefix = f"{prefix.strip('/')}/keys/" if prefix.strip("/") else "keys/"

    @property
    def description(self) -> str:
        return f"{self.where} ({self.prefix})"

    def _name(self, name: str) -> str:
        return f"{self.prefix}{_check(name)}.json"

    def create(self, name: str, blob: bytes) -> bool:
        def put() -> bool:
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._name(name), Body=blob, IfNoneMatch="*"
                )
            except ClientError as exc:
                if _code(exc) in {"PreconditionFailed", "412"}:
                    return False
                raise
            return True

        return self._call(put)

    def get(self, name: str) -> bytes | None:
        def get() -> bytes | None:
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self._name(name))
            except ClientError as exc:
                if _code(exc) in {"NoSuchKey", "404", "NotFound"}:
                    return None
                raise
            return bytes(answer["Body"].read())

        return self._call(get)

    def replace(self, name: str, blob: bytes) -> None:
        self._call(
            lambda: self.client.put_object(Bucket=self.bucket, Key=self._name(name), Body=blob)
        )

    def delete(self, name: str) -> bool:
        def delete() -> bool:
            there = self.get(name) is not None
            self.client.delete_object(Bucket=self.bucket, Key=self._name(name))
            return there

        return self._call(delete)

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

    def _call(self, work: Callable[[], _T]) -> _T:
        try:
            return work()
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailableError(
                f"the patient key store {self.description} failed ({type(exc).__name__}): "
                "check RELAIS_DOCUMENT_STORE, RELAIS_DOCUMENT_STORE_ENDPOINT and the AWS_* "
                "credentials"
            ) from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _fsync(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
