"""Scale-out (issue 16, point 6): gateways sharing one port, and one partition count.

Two ``relais mllp`` processes listen on one port with SO_REUSEPORT
(RELAIS_MLLP_REUSE_PORT): the kernel spreads the senders' connections over both and every
message gets its AA. Topics get RELAIS_PARTITIONS partitions; a topic made with another
count stops ``relais topics create`` and ``relais worker`` with one line naming the setting.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops.demo import samples
from ops.localstack import LocalStack, scrape
from ops.ports import free_port
from relais.topic_admin import PartitionCountError, ensure_topics, list_topics
from relais.topics import ALL_TOPICS, SUBMITTED
from tests.integration.mllp_client import exchange
from tests.shared_data import shared

GATEWAYS = 2
CONNECTIONS = 16  # the kernel hashes each connection: all on one gateway has odds 2**-15


@pytest.fixture(scope="module")
async def shared_port(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    port = free_port()
    stack = LocalStack(
        Path(tmp_path_factory.mktemp("scale-out")),
        prefix=f"s{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        partitions=6,
        workers=tuple(("mllp", "--port", str(port), "--reuse-port") for _ in range(GATEWAYS)),
        extra_environment={"RELAIS_MLLP_WORKERS": "0"},  # checks in-process: 2 processes, not 10
    )
    async with stack as local:
        yield local


def port_of(stack: LocalStack) -> int:
    return int(stack.processes[0].args[2])


async def send(port: int, number: int) -> str:
    """One valid letter on its own connection; MSA-1 of its ACK."""
    control = f"S{number}-{uuid.uuid4().hex[:10]}"
    doc_id = f"1.2.250.1.213.1.1.9.4242.{uuid.uuid4().int % 10**12}"
    body = samples.cda(samples.LETTER, samples.DOMINIQUE, doc_id, "lettre de liaison")
    raw = samples.hl7_message(samples.LETTER, samples.DOMINIQUE, control, body)
    ack = await exchange(port, raw, timeout_s=60)
    msa = next(s for s in ack.decode().split("\r") if s.startswith("MSA|"))
    return msa.split("|")[1]


def accepted(stack: LocalStack) -> list[float]:
    key = 'relais_mllp_messages_total{ack_code="AA"}'
    return [scrape(p.metrics_port).get(key, 0.0) for p in stack.processes]


async def test_two_gateways_share_one_port_and_each_takes_connections(
    shared_port: LocalStack,
) -> None:
    stack = shared_port
    assert len({p.popen.pid for p in stack.processes}) == GATEWAYS
    answers = await asyncio.gather(*(send(port_of(stack), n) for n in range(CONNECTIONS)))
    assert answers == ["AA"] * CONNECTIONS
    by_gateway = accepted(stack)
    assert sum(by_gateway) == CONNECTIONS, by_gateway
    assert all(n > 0 for n in by_gateway), f"one gateway took every connection: {by_gateway}"
    # the topics were made with the stack's RELAIS_PARTITIONS
    counts = await list_topics(stack.broker.bootstrap, stack.prefix)
    assert counts[SUBMITTED.name(stack.prefix)] == 6
    assert set(counts.values()) == {6}


async def test_a_gateway_not_sharing_the_port_is_refused_naming_the_setting(
    shared_port: LocalStack,
) -> None:
    stack = shared_port
    env = {**stack.environment(free_port()), "RELAIS_MLLP_REUSE_PORT": "no"}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ops", "mllp", "--port", str(port_of(stack))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "RELAIS_MLLP_REUSE_PORT=yes" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


async def test_topics_of_another_partition_count_stop_the_start(shared_port: LocalStack) -> None:
    stack = shared_port
    prefix = f"p{uuid.uuid4().hex[:8]}"
    made = await ensure_topics(stack.broker.bootstrap, prefix, partitions=4)
    assert {t.partitions for t in made} == {4}
    assert len(made) == len(ALL_TOPICS)
    with pytest.raises(PartitionCountError, match=r"RELAIS_PARTITIONS=12 .*RELAIS_PARTITIONS=4"):
        await ensure_topics(stack.broker.bootstrap, prefix, partitions=12)
    env = {
        **stack.environment(free_port()),
        "RELAIS_TOPIC_PREFIX": prefix,
        "RELAIS_PARTITIONS": "12",
    }
    for command in (["topics", "create"], ["worker", "route"]):
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ops", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0, (command, done.stdout, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(errors) == 1, (command, done.stderr)
        assert "RELAIS_PARTITIONS=12" in errors[0]
        assert f"{prefix}.acks.business.v1 (4)" in errors[0]
        assert "set RELAIS_PARTITIONS=4" in errors[0]
