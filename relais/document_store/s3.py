"""An S3-compatible bucket as the document store (boto3; calls run in threads).

Writes are conditional (``If-None-Match: *``): the first writer of a key wins and a retry
of the same document is answered 412, which is success here. Credentials come from boto3's
usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, an instance
role). Keep-alive: one client, one connection pool, shared by every call of the process.
Retention is enforced by ``relais store expire``; on AWS an equivalent bucket lifecycle
rule does it without Relais.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from relais.document_store.errors import BodyMissingError, StoreUnavailableError
from relais.document_store.stores import KEY, Usage, check_key, check_prefix, sealed_with

_T = TypeVar("_T")
_MISSING = {"NoSuchKey", "404", "NotFound"}
_ALREADY_THERE = {"PreconditionFailed", "412"}  # 409 (a concurrent write) is retried


class S3Store:
    """Objects under ``s3://bucket/prefix/``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        pool: int = 32,
    ) -> None:
        self.bucket, self.prefix, self.endpoint = bucket, prefix.strip("/"), endpoint
        config = Config(
            max_pool_connections=pool,
            retries={"max_attempts": 4, "mode": "standard"},
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=30,
        )
        self.client: Any = boto3.client(
            "s3", endpoint_url=endpoint, region_name=region, config=config
        )

    @property
    def description(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, blob: bytes) -> bool:
        name = self._name(check_key(key))

        def put() -> bool:
            try:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=blob, IfNoneMatch="*")
            except ClientError as exc:
                if _code(exc) in _ALREADY_THERE:
                    return False
                raise
            return True

        return await self._call(put)

    async def get(self, key: str) -> bytes:
        name = self._name(check_key(key))

        def get() -> bytes:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=name)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise BodyMissingError(key, self.description) from None
                raise
            return bytes(response["Body"].read())

        return await self._call(get)

    async def erase(self, prefix: str) -> int:
        folder = self._name(check_prefix(prefix)) + "/"
        return await self._call(lambda: self._delete(o["Key"] for o in self._objects(folder)))

    async def erase_sealed_with(self, key_id_prefix: str) -> int:
        folder = f"{self.prefix}/" if self.prefix else ""
        return await self._call(
            lambda: self._delete(
                o["Key"] for o in self._objects(folder) if sealed_with(o["Key"], key_id_prefix)
            )
        )

    async def expire(self, before: datetime) -> int:
        folder = f"{self.prefix}/" if self.prefix else ""
        return await self._call(
            lambda: self._delete(
                o["Key"] for o in self._objects(folder) if o["LastModified"] < before
            )
        )

    async def count_older(self, before: datetime) -> int:
        folder = f"{self.prefix}/" if self.prefix else ""
        return await self._call(
            lambda: sum(1 for o in self._objects(folder) if o["LastModified"] < before)
        )

    async def usage(self) -> Usage:
        folder = f"{self.prefix}/" if self.prefix else ""

        def count() -> Usage:
            sizes = [int(o["Size"]) for o in self._objects(folder)]
            return Usage(len(sizes), sum(sizes))

        return await self._call(count)

    async def close(self) -> None:
        self.client.close()

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        """The store's objects under ``prefix``: only keys of the store's shape (a shared
        bucket's other objects are never counted nor deleted)."""
        pages = self.client.get_paginator("list_objects_v2")
        start = len(f"{self.prefix}/") if self.prefix else 0
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from (o for o in page.get("Contents", []) if KEY.fullmatch(o["Key"][start:]))

    def _delete(self, names: Iterator[str]) -> int:
        removed, batch = 0, []
        for name in names:
            batch.append({"Key": name})
            if len(batch) == 1000:  # DeleteObjects takes at most 1,000 keys
                removed += self._delete_batch(batch)
                batch = []
        return removed + (self._delete_batch(batch) if batch else 0)

    def _delete_batch(self, batch: list[dict[str, str]]) -> int:
        answer = self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
        )
        if errors := answer.get("Errors"):  # 200, with the keys it could not delete
            codes = sorted({str(e.get("Code")) for e in errors})
            raise StoreUnavailableError(
                f"the document store {self.description} kept {len(errors)} of {len(batch)} "
                f"objects it was asked to delete ({', '.join(codes)}): check the bucket's rights"
            )
        return len(batch)

    async def _call(self, work: Callable[[], _T]) -> _T:
        try:
            return await asyncio.to_thread(work)
        except BodyMissingError:
            raise
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailableError(
                f"the document store {self.description} failed: {_describe(exc)}; check "
                "RELAIS_DOCUMENT_STORE, RELAIS_DOCUMENT_STORE_ENDPOINT and the AWS_* credentials"
            ) from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return f"{_code(exc)} ({exc.response.get('ResponseMetadata', {}).get('HTTPStatusCode')})"
    return type(exc).__name__
