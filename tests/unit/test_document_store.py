"""The document store: bodies sealed once, references bound to their event, folder store.

The stage tests at the end show the claim check's point: identity and route never fetch a
body, transcode fetches once and writes only the CDA it builds.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from ops.cli.main import main
from relais.deadletter import failure_of
from relais.document_store import (
    BodyMissingError,
    BodyTamperedError,
    FileStore,
    MemoryStore,
    StoreUnavailableError,
)
from relais.document_store.bodies import (
    BodyWriter,
    document_prefix,
    open_body,
    read_content,
    seal_body,
    write_content,
)
from relais.keyring import Keyring

KEYRING = Keyring.generate("k1")
CDA = b"<ClinicalDocument>" + b"x" * 5000 + b"</ClinicalDocument>"


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_a_body_round_trips_and_its_reference_names_no_id() -> None:
    sealed = seal_body(KEYRING, CDA, unique_id="1.2.250.1.999.42", event_id="e-1")
    assert open_body(KEYRING, sealed.blob, sealed.ref, event_id="e-1") == CDA
    assert "1.2.250" not in sealed.key
    assert CDA not in sealed.blob
    assert sealed.key.startswith(document_prefix(KEYRING, "1.2.250.1.999.42") + "/")
    assert sealed.key.endswith(".k1")
    assert sealed.ref.size == len(CDA)


def test_same_document_same_bytes_same_key_so_a_retry_writes_nothing_new() -> None:
    first = seal_body(KEYRING, CDA, unique_id="doc-1", event_id="e-1")
    retry = seal_body(KEYRING, CDA, unique_id="doc-1", event_id="e-2")
    other_document = seal_body(KEYRING, CDA, unique_id="doc-2", event_id="e-1")
    assert first.key == retry.key != other_document.key
    store = MemoryStore()
    assert run(store.put(first.key, first.blob)) is True
    assert run(store.put(retry.key, retry.blob)) is False
    assert store.written == 1
    # each event opens the object with its own reference
    assert open_body(KEYRING, first.blob, retry.ref, event_id="e-2") == CDA


def test_a_reference_pasted_into_another_event_fails() -> None:
    sealed = seal_body(KEYRING, CDA, unique_id="doc-1", event_id="e-1")
    with pytest.raises(BodyTamperedError, match="another event"):
        open_body(KEYRING, sealed.blob, sealed.ref, event_id="e-2")


def test_an_altered_object_or_reference_fails_and_is_dead_lettered() -> None:
    sealed = seal_body(KEYRING, CDA, unique_id="doc-1", event_id="e-1")
    altered = sealed.blob[:-1] + bytes([sealed.blob[-1] ^ 1])
    with pytest.raises(BodyTamperedError) as caught:
        open_body(KEYRING, altered, sealed.ref, event_id="e-1")
    assert failure_of(caught.value).reason_code == "body-tampered"
    other = seal_body(KEYRING, b"<other/>", unique_id="doc-1", event_id="e-1")
    with pytest.raises(BodyTamperedError):  # another object under this reference
        open_body(KEYRING, other.blob, sealed.ref, event_id="e-1")


def test_rotation_keeps_old_objects_readable_and_new_ones_use_the_new_key() -> None:
    old = seal_body(KEYRING, CDA, unique_id="doc-1", event_id="e-1")
    rotated = KEYRING.rotated("k2")
    new = seal_body(rotated, CDA, unique_id="doc-1", event_id="e-1")
    assert new.key != old.key
    assert new.key.endswith(".k2")
    assert new.ref.key_id == "k2"
    assert open_body(rotated, old.blob, old.ref, event_id="e-1") == CDA


def test_file_store_writes_once_durably_reads_erases_and_expires(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "documents")
    ref = run(write_content(store, KEYRING, CDA, unique_id="doc-1", event_id="e-1"))
    again = run(write_content(store, KEYRING, CDA, unique_id="doc-1", event_id="e-2"))
    assert ref["store_key"] == again["store_key"]
    assert run(store.usage()).objects == 1
    leftovers = [p.name for p in (tmp_path / "documents").rglob(".tmp-*")]
    assert leftovers == []
    document = {"content": again}
    assert run(read_content(store, KEYRING, document, event_id="e-2")) == CDA
    other = run(write_content(store, KEYRING, b"<old/>", unique_id="doc-2", event_id="e-3"))
    old_path = tmp_path / "documents" / other["store_key"]
    an_hour_ago = time.time() - 3600
    os.utime(old_path, (an_hour_ago, an_hour_ago))
    assert run(store.expire(datetime.now(UTC) - timedelta(minutes=30))) == 1
    with pytest.raises(BodyMissingError, match="RELAIS_DOCUMENT_RETENTION_DAYS"):
        run(read_content(store, KEYRING, {"content": other}, event_id="e-3"))
    assert run(store.erase(document_prefix(KEYRING, "doc-1"))) == 1
    assert run(store.usage()).objects == 0


def test_an_unwritable_store_is_unavailable_naming_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    store = FileStore(blocker)
    with pytest.raises(StoreUnavailableError, match="RELAIS_DOCUMENT_STORE"):
        run(write_content(store, KEYRING, CDA, unique_id="doc-1", event_id="e-1"))


def test_a_reference_without_a_store_names_the_setting() -> None:
    ref = seal_body(KEYRING, CDA, unique_id="doc-1", event_id="e-1").ref.to_record()
    with pytest.raises(StoreUnavailableError, match="RELAIS_DOCUMENT_STORE"):
        run(read_content(None, KEYRING, {"content": ref}, event_id="e-1"))


def test_inline_envelopes_from_before_the_store_stay_readable() -> None:
    inline = run(write_content(None, KEYRING, CDA, unique_id="doc-1", event_id="e-1"))
    assert "ciphertext" in inline
    assert run(read_content(MemoryStore(), KEYRING, {"content": inline}, event_id="e-1")) == CDA


def test_the_writer_keeps_bodies_until_flushed() -> None:
    store = MemoryStore()
    writer = BodyWriter(KEYRING, store)
    refs = [writer(CDA + bytes([n]), f"doc-{n}", f"e-{n}") for n in range(3)]
    assert (store.written, len(writer.pending)) == (0, 3)
    run(writer.flush())
    assert (store.written, len(writer.pending)) == (3, 0)
    assert {r["store_key"] for r in refs} == set(store.objects)


@given(st.text(min_size=1, max_size=120))
def test_a_hostile_key_never_reaches_the_file_system(key: str) -> None:
    store = FileStore(Path("/nonexistent-relais-store"))
    hostile = {"store_key": key, "key_id": "k1", "sha256": "0" * 64, "size": 1, "binding": "x"}
    with pytest.raises((BodyMissingError, BodyTamperedError)):
        run(read_content(store, KEYRING, {"content": hostile}, event_id="e-1"))


@pytest.mark.parametrize("key", ["../../etc/passwd", "a" * 32 + "/../../x.k1", "/etc/passwd"])
def test_a_path_as_key_is_refused(key: str) -> None:
    with pytest.raises(BodyMissingError, match="not a document store key"):
        run(FileStore(Path("/tmp")).get(key))


def test_relais_store_counts_and_expires_what_is_past_the_retention(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "documents")
    old = run(write_content(store, KEYRING, b"<old/>", unique_id="doc-1", event_id="e-1"))
    run(write_content(store, KEYRING, CDA, unique_id="doc-2", event_id="e-2"))
    forty_days_ago = time.time() - 40 * 86400
    os.utime(tmp_path / "documents" / old["store_key"], (forty_days_ago, forty_days_ago))
    env = {"RELAIS_DATA_DIR": str(tmp_path)}
    usage = CliRunner().invoke(main, ["store", "usage"], env=env)
    assert "2 objects" in usage.output, usage.output
    dry = CliRunner().invoke(main, ["store", "expire", "--dry-run"], env=env)
    assert "would remove 1 bodies" in dry.output, dry.output
    assert run(store.usage()).objects == 2
    done = CliRunner().invoke(main, ["store", "expire"], env=env)
    assert "removed 1 bodies" in done.output, done.output
    assert "(30 days)" in done.output
    assert run(store.usage()).objects == 1
    kept = CliRunner().invoke(main, ["store", "expire", "--days", "0.5"], env=env)
    assert "removed 0 bodies" in kept.output, kept.output
