"""The document store on a real S3 server (moto's, on 127.0.0.1): the production backend.

Conditional writes (If-None-Match), reads, a missing body, erasing a document, expiry, the
store built from RELAIS_DOCUMENT_STORE, and what an unreachable server gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from ops.load.chaos import S3_BUCKET
from ops.load.chaos import S3Store as MotoServer
from relais.document_store import BodyMissingError, StoreUnavailableError
from relais.document_store.bodies import document_prefix, read_content, seal_body, write_content
from relais.document_store.open import open_store
from relais.document_store.s3 import S3Store
from relais.keyring import Keyring
from relais.settings import Settings

KEYRING = Keyring.generate("k-s3")
CDA = b"<ClinicalDocument>" + b"s3" * 40_000 + b"</ClinicalDocument>"


@pytest_asyncio.fixture
async def moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MotoServer]:
    server = MotoServer(tmp_path / "moto.log")
    await server.start()
    for name, value in server.environment().items():  # boto3's credential chain reads these
        monkeypatch.setenv(name, value)
    try:
        yield server
    finally:
        server.stop()


async def test_bodies_are_written_once_read_erased_and_expired(moto: MotoServer) -> None:
    settings = Settings.from_env(
        {
            "RELAIS_DOCUMENT_STORE": f"s3://{S3_BUCKET}/documents",
            "RELAIS_DOCUMENT_STORE_ENDPOINT": moto.endpoint,
        }
    )
    store = open_store(settings)
    assert isinstance(store, S3Store)
    sealed = seal_body(KEYRING, CDA, unique_id="doc-1", event_id="e-1")
    assert await store.put(sealed.key, sealed.blob) is True
    assert await store.put(sealed.key, b"RLB1 something else") is False  # 412: first one wins
    document = {"content": sealed.ref.to_record()}
    assert await read_content(store, KEYRING, document, event_id="e-1") == CDA
    other = await write_content(store, KEYRING, b"<other/>", unique_id="doc-2", event_id="e-2")
    usage = await store.usage()
    assert usage.objects == 2
    assert usage.bytes > len(CDA)
    assert await store.erase(document_prefix(KEYRING, "doc-1")) == 1
    with pytest.raises(BodyMissingError):
        await read_content(store, KEYRING, document, event_id="e-1")
    assert await store.expire(datetime.now(UTC) - timedelta(hours=1)) == 0  # too young
    assert await store.expire(datetime.now(UTC) + timedelta(minutes=1)) == 1
    with pytest.raises(BodyMissingError):
        await read_content(store, KEYRING, {"content": other}, event_id="e-2")
    await store.close()


async def test_an_unreachable_server_is_unavailable_naming_the_settings(moto: MotoServer) -> None:
    store = S3Store(S3_BUCKET, "documents", endpoint=moto.endpoint)
    moto.stop()
    sealed = seal_body(KEYRING, CDA, unique_id="doc-1", event_id="e-1")
    with pytest.raises(StoreUnavailableError, match="RELAIS_DOCUMENT_STORE_ENDPOINT"):
        await store.put(sealed.key, sealed.blob)
    await store.close()
