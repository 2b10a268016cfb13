"""Kafka over mutual TLS, for real: the local broker behind stunnel (Debian's stunnel4), which
requires a client certificate from the test CA; the broker advertises the proxy's address, so
every client (the processes, the test's readers) goes through TLS or not at all.

A document goes end to end through it (MLLP gateway, the three stages, the DMP sink), and a
wrong CA, a missing client certificate and a plaintext client each stop a command with one
line naming the setting to fix.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.localstack import LocalStack, read_landing
from ops.ports import free_port
from tests.integration.mail_servers import Pki, make_pki
from tests.integration.mllp_client import exchange
from tests.integration.mllp_pki import TestCa
from tests.integration.test_fanout_e2e import FIXTURES, message
from tests.shared_data import shared

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")


@dataclass
class TlsBroker:
    """Where the broker listens (plain, behind the proxy), where clients go, the PKI."""

    listen: str
    proxy: str
    pki: Pki
    log: Path

    def environment(self, *, ca: Path | None = None, with_cert: bool = True) -> dict[str, str]:
        env = {
            "RELAIS_BOOTSTRAP_SERVERS": self.proxy,
            "RELAIS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "RELAIS_KAFKA_CA_FILE": str(ca or self.pki.ca),
        }
        if with_cert:
            env["RELAIS_KAFKA_CERT_FILE"] = str(self.pki.client_cert)
            env["RELAIS_KAFKA_KEY_FILE"] = str(self.pki.client_key)
        return env


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"stunnel exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("stunnel did not listen in 15 s")


@pytest.fixture(scope="module")
def tls_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """stunnel on a free port: TLS 1.2+, a client certificate from the test CA required,
    forwarding to the broker's plain port (which the broker will listen on)."""
    if STUNNEL is None:
        pytest.fail("stunnel4 is missing: `make system-deps` installs it (Debian stunnel4)")
    folder = Path(tmp_path_factory.mktemp("kafka-tls"))
    pki = make_pki(folder)
    listen, proxy = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    log = folder / "stunnel.log"
    config = folder / "stunnel.conf"
    config.write_text(
        "foreground = yes\n"
        "pid =\n"
        f"output = {log}\n"
        "debug = 5\n"
        "[kafka]\n"
        f"accept = {proxy}\n"
        f"connect = {listen}\n"
        f"cert = {pki.server_cert}\n"
        f"key = {pki.server_key}\n"
        f"CAfile = {pki.ca}\n"
        "verifyChain = yes\n"
        "requireCert = yes\n"
        "sslVersionMin = TLSv1.2\n"
    )
    process = subprocess.Popen(
        [STUNNEL, str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_port(int(proxy.rsplit(":", 1)[1]), process, log)
        yield TlsBroker(listen=listen, proxy=proxy, pki=pki, log=log)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
async def tls_stack(
    tls_proxy: TlsBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[LocalStack, int]]:
    port = free_port()
    stack = LocalStack(
        Path(tmp_path_factory.mktemp("tls-stack")),
        prefix=f"tls{uuid.uuid4().hex[:8]}",
        catalogue_dir=FIXTURES,
        loinc_table=shared("loinc", "loinc_fr_labels_from_ans_crbio_examples.csv"),
        ucum_units=shared("jdv", "UCUM_2.16.840.1.113883.6.8.xml"),
        workers=(
            ("worker", "identity", "transcode", "route"),
            ("sink", "dmp"),
            ("mllp", "--host", "127.0.0.1", "--port", str(port)),
        ),
        broker_advertise=tls_proxy.proxy,
        extra_environment=tls_proxy.environment(),
    )
    await stack.start(broker_listen=tls_proxy.listen)
    try:
        await stack.wait_for_metrics()
        yield stack, port
    finally:
        await stack.stop()


async def test_a_document_goes_end_to_end_through_mutual_tls(
    tls_stack: tuple[LocalStack, int], tls_proxy: TlsBroker
) -> None:
    stack, port = tls_stack
    assert stack.settings.kafka.bootstrap == tls_proxy.proxy
    ack = await exchange(port, message(81))
    assert b"MSA|AA|" in ack, ack
    landing = await read_landing(
        stack.settings.kafka.connection,
        stack.settings.kafka.prefix,
        timeout_s=120,
        until=lambda lan: len(lan.delivered) >= 1,
    )
    assert landing.dead == [], [d["reason"] for d in landing.dead]
    assert len(landing.delivered) == 1
    assert len(stack.sandbox.filed) == 1  # the DMP sandbox holds the document
    # the processes reached the broker through the proxy, with the test CA's client cert
    log = tls_proxy.log.read_text(errors="replace")
    assert "Certificate accepted" in log or "certificate accepted" in log.lower(), log[-2000:]


def relais(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize("command", [("topics", "list"), ("worker", "identity")])
def test_a_wrong_ca_is_one_line_naming_the_ca_setting(
    tls_stack: tuple[LocalStack, int], tls_proxy: TlsBroker, command: tuple[str, ...]
) -> None:
    stack, _ = tls_stack
    env = {
        **tls_proxy.environment(ca=tls_proxy.pki.other_ca),
        "RELAIS_TOPIC_PREFIX": stack.settings.kafka.prefix,
        "RELAIS_KEYRING_FILE": str(stack.settings.keys.file),
        "RELAIS_METRICS_PORT": "0",
    }
    line = one_error(relais(*command, env=env))
    assert "does not verify" in line, line
    assert "RELAIS_KAFKA_CA_FILE" in line, line


def test_a_missing_client_certificate_is_one_line_naming_the_cert_settings(
    tls_stack: tuple[LocalStack, int], tls_proxy: TlsBroker
) -> None:
    env = {
        **tls_proxy.environment(with_cert=False),
        "RELAIS_TOPIC_PREFIX": tls_stack[0].settings.kafka.prefix,
    }
    line = one_error(relais("topics", "list", env=env))
    assert "requires a client certificate" in line, line
    assert "RELAIS_KAFKA_CERT_FILE" in line, line


def test_a_plaintext_client_is_told_to_use_tls(
    tls_stack: tuple[LocalStack, int], tls_proxy: TlsBroker
) -> None:
    env = {
        "RELAIS_BOOTSTRAP_SERVERS": tls_proxy.proxy,
        "RELAIS_TOPIC_PREFIX": tls_stack[0].settings.kafka.prefix,
    }
    line = one_error(relais("topics", "list", env=env))
    assert "RELAIS_KAFKA_SECURITY_PROTOCOL" in line, line


def test_with_the_right_settings_the_command_works(
    tls_stack: tuple[LocalStack, int], tls_proxy: TlsBroker
) -> None:
    stack, _ = tls_stack
    env = {**tls_proxy.environment(), "RELAIS_TOPIC_PREFIX": stack.settings.kafka.prefix}
    result = relais("topics", "list", env=env)
    assert result.returncode == 0, result.stderr
    assert f"{stack.settings.kafka.prefix}.deadletter" in result.stdout, result.stdout


def test_a_client_certificate_from_another_ca_is_one_line_naming_it(
    tls_stack: tuple[LocalStack, int], tls_proxy: TlsBroker, tmp_path: Path
) -> None:
    stranger = TestCa(tmp_path, "not-the-brokers").client("relais")
    env = {
        **tls_proxy.environment(),
        "RELAIS_KAFKA_CERT_FILE": str(stranger.cert),
        "RELAIS_KAFKA_KEY_FILE": str(stranger.key),
        "RELAIS_TOPIC_PREFIX": tls_stack[0].settings.kafka.prefix,
    }
    line = one_error(relais("topics", "list", env=env))
    assert "refused the client certificate of RELAIS_KAFKA_CERT_FILE" in line, line
