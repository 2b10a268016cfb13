"""Where sealed bodies live: the interface every store offers, a folder, and memory.

A store holds opaque, already sealed objects (:mod:`relais.document_store.bodies` seals and
opens them); it never sees a document's bytes in clear. Keys have one shape,
``<32 hex>/<32 hex>.<key id>`` (:data:`KEY`), checked on every call: a key read from a
record cannot name a path outside the store.

- :class:`FileStore` (the default): one file per object under a folder; a write goes to a
  temporary file, is fsync'd, renamed into place and its folder fsync'd before ``put``
  returns, so an ACK given after it survives a power cut. File work runs in a thread.
- :class:`MemoryStore`: a dict, for unit tests of the cores and the benchmarks' baseline.
- :class:`relais.document_store.s3.S3Store`: an S3-compatible bucket.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

from relais.document_store.errors import BodyMissingError, StoreUnavailableError

#: an object key: document pseudonym / body pseudonym . key id
KEY: Final = re.compile(r"[0-9a-f]{32}/[0-9a-f]{32}\.[A-Za-z0-9._-]{1,64}")
PREFIX: Final = re.compile(r"[0-9a-f]{32}")


def check_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise BodyMissingError(key[:80], "not a document store key")
    return key


def sealed_with(key: str, key_id_prefix: str) -> bool:
    """Whether the object ``key`` (or its last part) names a key id starting with the prefix."""
    body = key.rsplit("/", 1)[-1]
    return body.partition(".")[2].startswith(key_id_prefix)


def check_prefix(prefix: str) -> str:
    if not PREFIX.fullmatch(prefix):
        raise ValueError("a document's prefix is 32 hex digits")
    return prefix


@dataclass(frozen=True)
class Usage:
    """What a store holds: objects and bytes."""

    objects: int
    bytes: int


class DocumentStore(Protocol):
    """Write once, read, erase a document's bodies, expire old ones."""

    @property
    def description(self) -> str:
        """Where the store is, for messages (never a secret)."""
        ...

    async def put(self, key: str, blob: bytes) -> bool:
        """Write ``blob`` under ``key`` unless an object is there; True when written.

        Returns only once the object is durable (fsync'd, or acknowledged by S3)."""
        ...

    async def get(self, key: str) -> bytes:
        """The object; :class:`BodyMissingError` when there is none."""
        ...

    async def erase(self, prefix: str) -> int:
        """Remove every object of one document (its key prefix); how many were removed."""
        ...

    async def erase_sealed_with(self, key_id_prefix: str) -> int:
        """Remove every object sealed under a key id that starts with ``key_id_prefix`` (a
        patient's data keys: their erasure); how many were removed. Lists the whole store."""
        ...

    async def expire(self, before: datetime) -> int:
        """Remove every object written before ``before``; how many were removed."""
        ...

    async def count_older(self, before: datetime) -> int:
        """How many objects :meth:`expire` would remove."""
        ...

    async def usage(self) -> Usage: ...

    async def close(self) -> None: ...


class FileStore:
    """Objects as files under ``root``: ``root/<document>/<body>.<key id>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def description(self) -> str:
        return f"folder {self.root}"

    async def put(self, key: str, blob: bytes) -> bool:
        return await asyncio.to_thread(self.put_now, check_key(key), blob)

    def put_now(self, key: str, blob: bytes) -> bool:
        """:meth:`put`, synchronously (for the gateway's worker processes and tools)."""
        path = self.root / check_key(key)
        try:
            if path.exists():  # written by another writer: durable before it is relied on
                os.utime(path)  # and young again: a resend's ACK starts its retention anew
                _fsync_folder(path.parent)
                return False
            folder_is_new = not path.parent.exists()
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(blob)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            _fsync_folder(path.parent)
            if folder_is_new:
                _fsync_folder(self.root)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot write to the document store {self.root} ({_reason(exc)}): check "
                "RELAIS_DOCUMENT_STORE, the folder's rights and free space"
            ) from None
        return True

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.get_now, check_key(key))

    def get_now(self, key: str) -> bytes:
        try:
            return (self.root / check_key(key)).read_bytes()
        except FileNotFoundError:
            raise BodyMissingError(key, self.description) from None
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot read the document store {self.root} ({_reason(exc)}): check "
                "RELAIS_DOCUMENT_STORE and the folder's rights"
            ) from None

    async def erase(self, prefix: str) -> int:
        folder = self.root / check_prefix(prefix)
        return await self._removing(lambda: _remove_files(folder, None))

    async def erase_sealed_with(self, key_id_prefix: str) -> int:
        def erase() -> int:
            doomed = [p for p in self._files() if sealed_with(p.name, key_id_prefix)]
            for path in doomed:
                path.unlink(missing_ok=True)
            for folder in {p.parent for p in doomed}:
                _fsync_folder(folder)
            return len(doomed)

        return await self._removing(erase)

    async def expire(self, before: datetime) -> int:
        limit = before.timestamp()
        return await self._removing(lambda: sum(_remove_files(f, limit) for f in self._folders()))

    def _folders(self) -> list[Path]:
        if not self.root.exists():
            return []
        return [f for f in self.root.iterdir() if f.is_dir() and PREFIX.fullmatch(f.name)]

    async def _removing(self, work: Callable[[], int]) -> int:
        try:
            return await asyncio.to_thread(work)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot remove from the document store {self.root} ({_reason(exc)}): check "
                "RELAIS_DOCUMENT_STORE and the folder's rights"
            ) from None

    async def count_older(self, before: datetime) -> int:
        def count() -> int:
            return sum(1 for p in self._files() if p.stat().st_mtime < before.timestamp())

        return await asyncio.to_thread(count)

    def _files(self) -> list[Path]:
        """The store's objects (temporary files of a write in progress are not)."""
        if not self.root.exists():
            return []
        return [
            p for f in self._folders() for p in f.iterdir() if KEY.fullmatch(f"{f.name}/{p.name}")
        ]

    async def usage(self) -> Usage:
        def count() -> Usage:
            files = self._files()
            return Usage(len(files), sum(p.stat().st_size for p in files))

        return await asyncio.to_thread(count)

    async def close(self) -> None:
        return None


def _remove_files(folder: Path, before: float | None) -> int:
    """Remove the folder's files (those older than ``before``, or all); then the folder
    when it is empty."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if not KEY.fullmatch(f"{folder.name}/{path.name}"):
            continue  # a write in progress (.tmp-*), or not the store's
        if before is None or path.stat().st_mtime < before:
            path.unlink(missing_ok=True)
            removed += 1
    try:
        folder.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    return removed


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


@dataclass
class MemoryStore:
    """Objects in a dict (unit tests, benchmarks); ``written`` counts the writes made."""

    objects: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    written: int = 0
    read: int = 0

    @property
    def description(self) -> str:
        return "memory"

    async def put(self, key: str, blob: bytes) -> bool:
        if check_key(key) in self.objects:
            return False
        self.objects[key] = (blob, time.time())
        self.written += 1
        return True

    async def get(self, key: str) -> bytes:
        found = self.objects.get(check_key(key))
        if found is None:
            raise BodyMissingError(key, self.description)
        self.read += 1
        return found[0]

    async def erase(self, prefix: str) -> int:
        doomed = [k for k in self.objects if k.startswith(check_prefix(prefix) + "/")]
        for key in doomed:
            del self.objects[key]
        return len(doomed)

    async def erase_sealed_with(self, key_id_prefix: str) -> int:
        doomed = [k for k in self.objects if sealed_with(k, key_id_prefix)]
        for key in doomed:
            del self.objects[key]
        return len(doomed)

    async def expire(self, before: datetime) -> int:
        doomed = [k for k, (_, at) in self.objects.items() if at < before.timestamp()]
        for key in doomed:
            del self.objects[key]
        return len(doomed)

    async def count_older(self, before: datetime) -> int:
        return sum(1 for _, at in self.objects.values() if at < before.timestamp())

    async def usage(self) -> Usage:
        return Usage(len(self.objects), sum(len(b) for b, _ in self.objects.values()))

    async def close(self) -> None:
        return None
