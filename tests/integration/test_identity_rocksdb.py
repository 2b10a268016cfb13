"""The identity tables on RocksDB (the production store): holds survive a restart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops.demo.samples import LAB, Patient, sample
from ops.localstack import LocalStack, read_landing
from producers.publisher import Publisher
from tests.builders import adt_message

HOMONYM = Patient(
    "285063306301222", "MARTIN", "CLAIRE MARIE", "19850612", "F", "33063", reliability="PROV"
)


@pytest.fixture(scope="module")
async def rocks(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("rocks")),
        prefix=f"r{uuid.uuid4().hex[:8]}",
        table_store="rocksdb://",
        workers=(
            ("worker", "identity"),
            ("worker", "transcode"),
            ("worker", "route"),
            ("sink", "dmp"),
        ),
    ) as local:
        yield local


async def test_hold_survives_a_restart_on_rocksdb(rocks: LocalStack) -> None:
    s = rocks.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=rocks.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        held = (await publisher.submit_lab_result(sample(LAB, HOMONYM, 1)))[0]
        await read_landing(
            s.kafka.bootstrap, s.kafka.prefix, timeout_s=60, until=lambda lan: held in lan.held
        )
        await rocks.restart("identity")
        await publisher.submit_identity(adt_message(HOMONYM, "A08", "QUAL"))
        landing = await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            timeout_s=90,
            until=lambda lan: held in lan.delivered,
        )
    assert landing.delivered[held]["outcome"] == "DELIVERED"
    stores = list((s.process.data_dir / "faust").rglob("identity-patients-*.db"))
    assert stores, "no RocksDB files: the table did not use the rocksdb store"
