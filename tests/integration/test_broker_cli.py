"""`relais broker` and `relais topics` against the real bundled tansu binary."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ops.ports import free_port
from relais.topics import ALL_TOPICS, DEFAULT_PARTITIONS


def relais(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    seen = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen += line
        if needle in line:
            return seen
        if process.poll() is not None:
            break
    raise AssertionError(f"no {needle!r} within {timeout} s; output: {seen!r}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    """The configs the broker describes for ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [(_error, _message, _kind, _name, entries)] = response.resources
    return {entry[0]: entry[1] for entry in entries}


def test_broker_starts_answers_creates_topics_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    prefix = f"cli{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "RELAIS_BROKER_LISTEN": f"127.0.0.1:{port}",
        "RELAIS_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "RELAIS_TOPIC_PREFIX": prefix,
    }
    broker = subprocess.Popen(
        [sys.executable, "-m", "ops", "broker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_line(broker, "broker ready", timeout=30)
        assert port_open(port)

        first = relais("topics", "create", env=env)
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("created") == len(ALL_TOPICS)
        second = relais("topics", "create", env=env)
        assert second.returncode == 0, second.stderr
        assert second.stdout.count("exists") == len(ALL_TOPICS)
        assert "created" not in second.stdout

        listed = relais("topics", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        for spec in ALL_TOPICS:
            assert f"{spec.name(prefix)}" in listed.stdout
        assert listed.stdout.count(f" {DEFAULT_PARTITIONS} partitions") == len(ALL_TOPICS)
        configs = asyncio.run(topic_configs(f"127.0.0.1:{port}", ALL_TOPICS[0].name(prefix)))
        assert configs.get("min.insync.replicas") == "1"  # RELAIS_MIN_INSYNC_REPLICAS, local

        broker.send_signal(signal.SIGTERM)
        assert broker.wait(timeout=15) == 0
        assert broker.stdout is not None
        assert "broker stopped" in broker.stdout.read()
        deadline = time.monotonic() + 5
        while port_open(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not port_open(port), "the tansu process outlived `relais broker`"
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()


def test_broker_binary_from_the_environment_is_used(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tansu"
    env = {
        **os.environ,
        "RELAIS_BROKER_BIN": str(missing),
        "RELAIS_BROKER_LISTEN": f"127.0.0.1:{free_port()}",
    }
    result = relais("broker", env=env, timeout=30)
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_topics_against_a_broker_that_is_not_there() -> None:
    env = {**os.environ, "RELAIS_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    result = relais("topics", "list", env=env, timeout=60)
    assert result.returncode != 0
    assert "127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
