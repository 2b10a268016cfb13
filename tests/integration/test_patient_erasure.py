"""Per-patient keys on the real broker and a real S3 server (moto): erase one patient.

Two patients' lab results go through the producer library (what the MLLP gateway calls) to
the bus, their bodies to the S3 document store; a stage's step dead-letters one of patient
A's records. ``relais patient erase`` (a process of its own) then erases A. A fresh process
(nothing cached) reading everything back finds A's sealed fields, body and dead letter
unreadable (``ErasedKeyError``; the body gone from the bucket) while B's all open; the audit
topic has the erasure. ``relais keys rotate`` re-wraps B's key, ``relais keys retire`` then
destroys the old master key, and a copy of B's key wrapped under it (a restored backup) is
refused. Synthetic patients only (the demo's samples).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import pytest_asyncio

from ops.broker import LocalBroker
from ops.demo.samples import DOMINIQUE, LAB, SARAH_LOU, sample
from ops.load.chaos import S3_BUCKET
from ops.load.chaos import S3Store as MotoServer
from ops.ports import free_port
from producers.hl7.message import parse_message
from producers.publisher import Publisher
from relais import kafka_clients
from relais.contracts import Codec, Record
from relais.deadletter import StageFailure
from relais.document_store.bodies import read_content
from relais.document_store.open import open_store
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from relais.keyring_source import load_keyring
from relais.patient_keys.errors import ErasedKeyError, MasterKeyRetiredError
from relais.patient_traits import open_traits
from relais.settings import Settings
from relais.topic_admin import ensure_topics
from relais.topic_reader import partitions_of, read_to_end
from relais.topics import AUDIT, DEADLETTER, SUBMITTED
from streams.stage import Output, Stage, StageContext, step

CODEC = Codec()
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = Path(tmp_path_factory.mktemp("erasure-broker")) / "tansu.log"
    local = LocalBroker(listen=f"127.0.0.1:{free_port()}", log_path=log_path)
    asyncio.run(local.start())
    try:
        yield local.bootstrap
    finally:
        local.stop()


@pytest_asyncio.fixture
async def env(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[dict[str, str]]:
    moto = MotoServer(tmp_path / "moto.log")
    await moto.start()
    keyring_file = tmp_path / "keyring.json"
    Keyring.generate("m1").write(keyring_file)
    variables = {
        **moto.environment(),
        "RELAIS_BOOTSTRAP_SERVERS": broker,
        "RELAIS_TOPIC_PREFIX": f"e{uuid.uuid4().hex[:8]}",
        "RELAIS_KEYRING_FILE": str(keyring_file),
        "RELAIS_DOCUMENT_STORE": f"s3://{S3_BUCKET}/documents",
        "RELAIS_DOCUMENT_STORE_ENDPOINT": moto.endpoint,
        "RELAIS_PATIENT_KEYS": "yes",
        "RELAIS_DATA_DIR": str(tmp_path / "data"),
        "RELAIS_OPERATOR": "dr.vigilance",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    await ensure_topics(broker, variables["RELAIS_TOPIC_PREFIX"])
    try:
        yield variables
    finally:
        moto.stop()


def relais(env: dict[str, str], *args: str, fails: bool = False) -> str:
    """Run ``relais ARGS`` as its own process; its output (stdout, or stderr when it fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode != 0) == fails, done.stderr
    return done.stderr if fails else done.stdout


async def publish(settings: Settings) -> dict[str, Record]:
    """A lab result for each patient through the producer library, then a stage's dead
    letter of each; {INS: {"submitted": record, "letter": dead letter}}."""
    store = open_store(settings)
    async with Publisher(
        bootstrap=settings.kafka.bootstrap,
        keyring=load_keyring(settings),
        topic_prefix=settings.kafka.prefix,
        store=store,
    ) as publisher:
        for who in (DOMINIQUE, SARAH_LOU):
            await publisher.publish_message(parse_message(sample(LAB, who, 1)), sector="LAB")
    await store.close()
    found: dict[str, Record] = {}
    for key, value, record in await records(settings, SUBMITTED):
        await dead_letter_of(settings, value, key)
        ins = open_traits(record, load_keyring(settings))["ins"]
        found[ins] = {"submitted": record}
    for _, _, letter in await records(settings, DEADLETTER):
        for patient in found.values():
            if letter["event_id"] == patient["submitted"]["event_id"]:
                patient["letter"] = letter
    return found


async def dead_letter_of(settings: Settings, value: bytes, key: bytes) -> None:
    """A stage that cannot process the record: its dead letter, sent as the shell sends it."""

    def refuse(record: Record, ctx: StageContext) -> list[Output]:
        raise StageFailure("synthetic refusal", reason_code="test-refused")

    stage = Stage("test", SUBMITTED, "DocumentSubmitted", refuse)
    ctx = StageContext(keyring=load_keyring(settings), now=NOW)
    prefix = settings.kafka.prefix
    result = await step(stage, CODEC, ctx, prefix, key=key, value=value, partition=0, offset=0)
    producer = kafka_clients.producer(settings.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for out in result.outputs:
            await producer.send_and_wait(out.topic, out.value, key=out.key)
    finally:
        await producer.stop()


async def records(settings: Settings, spec: Any) -> list[tuple[bytes, bytes, Record]]:
    """(key, value, decoded record) of every record on the topic."""
    bootstrap, prefix = settings.kafka.bootstrap, settings.kafka.prefix
    messages = await read_to_end(bootstrap, await partitions_of(bootstrap, [spec], prefix))
    return [(m.key or b"", m.value or b"", CODEC.decode(m.value)[1]) for m in messages]


def bucket(env: dict[str, str], folder: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=env["RELAIS_DOCUMENT_STORE_ENDPOINT"])
    listed = s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=f"documents/{folder}")
    return [str(o["Key"]) for o in listed.get("Contents", [])]


async def opened(settings: Settings, submitted: Record, letter: Record) -> bytes:
    """Everything of one patient a fresh process can open (raises when it cannot)."""
    keyring = load_keyring(settings)  # a fresh vault: nothing cached
    open_traits(submitted, keyring)
    store = open_store(settings)
    try:
        await read_content(store, keyring, submitted["document"], event_id=submitted["event_id"])
    finally:
        await store.close()
    envelope = Envelope.from_record(letter["original"])
    return open_envelope(keyring, envelope, event_id=letter["dead_letter_id"], purpose="original")


async def test_an_erased_patient_cannot_be_decrypted_anywhere(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    published = await publish(settings)
    a, b = published[DOMINIQUE.ins], published[SARAH_LOU.ins]
    a_key = a["submitted"]["patient"]["patient_key"]
    a_key_id = a["submitted"]["patient"]["identity"]["key_id"]
    assert a_key_id.startswith("p.")
    assert Envelope.from_record(a["letter"]["original"]).key_id == a_key_id
    assert len(bucket(env, "keys/")) == 2  # a data key per patient
    assert len([k for k in bucket(env, "") if "/keys/" not in k]) == 2  # a body each

    said = relais(env, "patient", "erase", "--ins", DOMINIQUE.ins, "--yes")
    assert f"patient {a_key[:16]}: 1 stored bodies erased, key {a_key_id} destroyed" in said
    assert "audited (operator dr.vigilance" in said
    assert DOMINIQUE.ins not in said
    again = relais(env, "patient", "erase", "--ins", DOMINIQUE.ins, "--yes", fails=True)
    assert "no data key for this INS" in again  # erased: nothing left to find by INS

    fresh = load_keyring(settings)
    with pytest.raises(ErasedKeyError):
        open_traits(a["submitted"], fresh)
    store = open_store(settings)
    with pytest.raises(ErasedKeyError):
        await read_content(store, fresh, a["submitted"]["document"], event_id="x")
    await store.close()
    letter = a["letter"]
    with pytest.raises(ErasedKeyError):
        open_envelope(
            fresh,
            Envelope.from_record(letter["original"]),
            event_id=letter["dead_letter_id"],
            purpose="original",
        )
    assert not [k for k in bucket(env, "") if a_key_id in k]  # A's body is gone
    keys = bucket(env, "keys/")
    assert len([k for k in keys if k.endswith(".json")]) == 1  # B's data key only
    name, version = a_key_id.split(".")[1:]
    assert f"documents/keys/{name}.{version}.erased" in keys  # A's tombstone: "erased", a fact
    assert await opened(settings, b["submitted"], b["letter"])  # B: all still open

    audits = [r for _, _, r in await records(settings, AUDIT) if r["outcome"] == "patient-erased"]
    assert len(audits) == 1
    assert "operator dr.vigilance" in audits[0]["detail"]
    assert a_key[:16] in audits[0]["detail"]
    assert DOMINIQUE.ins not in str(audits[0])


async def test_rotation_rewraps_and_a_retired_master_key_is_refused(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    published = await publish(settings)
    b = published[SARAH_LOU.ins]
    name = b["submitted"]["patient"]["identity"]["key_id"].split(".")[1]
    backup_name = f"documents/keys/{name}.json"
    s3 = boto3.client("s3", endpoint_url=env["RELAIS_DOCUMENT_STORE_ENDPOINT"])
    backup = s3.get_object(Bucket=S3_BUCKET, Key=backup_name)["Body"].read()  # under m1
    path = env["RELAIS_KEYRING_FILE"]

    relais(env, "keys", "rotate", "--file", path, "--no-rewrap")
    refused = relais(env, "keys", "retire", "m1", "--file", path, fails=True)
    assert "still wrapped under 'm1'" in refused
    assert "relais keys rewrap" in refused
    said = relais(env, "keys", "rewrap", "--file", path)
    assert "2 re-wrapped" in said
    relais(env, "keys", "retire", "m1", "--file", path)
    assert "m1" in Keyring.from_file(Path(path)).retired
    assert await opened(settings, b["submitted"], b["letter"])  # under the new master key

    s3.put_object(Bucket=S3_BUCKET, Key=backup_name, Body=backup)  # a restored old backup
    with pytest.raises(MasterKeyRetiredError, match="retired"):
        open_traits(b["submitted"], load_keyring(settings))
