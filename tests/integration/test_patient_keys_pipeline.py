"""The whole pipeline with per-patient keys (RELAIS_PATIENT_KEYS=yes): real broker, worker
processes (identity, transcode, route), the DMP sink and its sandbox. Each patient's records
are sealed under their own data key at every hop, and both documents are filed. After
``relais patient erase`` the patient's next document gets a new key and still goes through.
Synthetic patients only (the demo's samples)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops.demo.samples import DOMINIQUE, LAB, SARAH_LOU, sample
from ops.localstack import Landing, LocalStack, read_landing
from producers.hl7.message import parse_message
from producers.publisher import Publisher
from relais.contracts import Codec
from relais.document_store.open import open_store
from relais.keyring import Keyring
from relais.patient_keys.open import with_patient_keys
from relais.topic_reader import partitions_of, read_to_end
from relais.topics import DELIVERY_DMP, QUALIFIED, READY, SUBMITTED
from tests.shared_data import shared

CODEC = Codec()


@pytest.fixture(scope="module")
async def keyed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("keyed")),
        prefix=f"k{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        extra_environment={"RELAIS_PATIENT_KEYS": "yes", "RELAIS_OPERATOR": "dr.vigilance"},
    ) as local:
        yield local


async def publish(stack: LocalStack, *inputs: bytes) -> list[str]:
    """Through the producer library, as a gateway with a fresh vault would."""
    s = stack.settings
    store = open_store(s)
    async with Publisher(
        bootstrap=s.kafka.bootstrap,
        keyring=with_patient_keys(s, stack.keyring),
        topic_prefix=s.kafka.prefix,
        store=store,
    ) as publisher:
        ids = [(await publisher.submit_lab_result(raw))[0] for raw in inputs]
    await store.close()
    return ids


async def filed(stack: LocalStack, ids: list[str]) -> Landing:
    def done(landing: Landing) -> bool:
        return all(i in landing.delivered for i in ids) or bool(landing.dead)

    s = stack.settings
    landing = await read_landing(s.kafka.bootstrap, s.kafka.prefix, until=done, timeout_s=120)
    assert landing.dead == [], [d["reason"] for d in landing.dead]
    return landing


async def key_ids(stack: LocalStack, event_id: str) -> set[str]:
    """The key ids that sealed the event's patient traits at every hop."""
    s = stack.settings
    specs = [SUBMITTED, QUALIFIED, READY, DELIVERY_DMP]
    partitions = await partitions_of(s.kafka.bootstrap, specs, s.kafka.prefix)
    found = set()
    for m in await read_to_end(s.kafka.bootstrap, partitions):
        _, record = CODEC.decode(m.value)
        if record["event_id"] == event_id:
            found.add(record["patient"]["identity"]["key_id"])
    return found


async def test_each_patient_is_sealed_under_their_key_end_to_end(keyed: LocalStack) -> None:
    inputs = [sample(LAB, DOMINIQUE, 1), sample(LAB, SARAH_LOU, 2)]
    a, b = await publish(keyed, *inputs)
    landing = await filed(keyed, [a, b])
    for event_id, raw in zip([a, b], inputs, strict=True):
        status = landing.delivered[event_id]
        assert status["outcome"] == "DELIVERED"
        content = parse_message(raw).documents[0].content
        body = keyed.sandbox.content[status["document_unique_id"]]
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(content).hexdigest()
    [a_key], [b_key] = await key_ids(keyed, a), await key_ids(keyed, b)
    assert a_key.startswith("p.")
    assert b_key.startswith("p.")
    assert a_key != b_key

    env = {**os.environ, **keyed.environment(0)}
    done = subprocess.run(
        [sys.executable, "-m", "ops", "patient", "erase", "--ins", DOMINIQUE.ins, "--yes"],
        env={**env, "RELAIS_LOG_LEVEL": "info"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"1 stored bodies erased, key {a_key} destroyed" in done.stdout
    [again] = await publish(keyed, sample(LAB, DOMINIQUE, 3))
    landing = await filed(keyed, [again])
    assert landing.delivered[again]["outcome"] == "DELIVERED"
    [new_key] = await key_ids(keyed, again)
    assert new_key != a_key
    assert Keyring.from_file(Path(env["RELAIS_KEYRING_FILE"])).active_key_id
