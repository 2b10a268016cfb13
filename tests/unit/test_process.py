"""The one way a long-running process runs: announce, /metrics + /healthz + /readyz, stop on signals.

And the MLLP gateway's settings: RELAIS_MLLP_* with the ``relais mllp`` flags over them.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import main as relais
from producers.mllp.gateway import GatewayConfig
from producers.mllp.service import gateway_config
from relais import process as process_module
from relais.health import Readiness
from relais.keyring import Keyring
from relais.process import Process, run_process
from relais.settings import MllpSettings, ProcessSettings, Settings, SettingsError

LOCAL = Settings(process=ProcessSettings(metrics_host="127.0.0.1", metrics_port=0))


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, answer.read()


def test_a_process_announces_serves_and_stops_on_sigterm(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    readiness = Readiness()
    monkeypatch.setattr(process_module, "READINESS", readiness)
    seen: list[str] = []

    async def main(process: Process) -> None:
        url = re.search(r"metrics on (\S+)", capsys.readouterr().out)
        assert url is not None
        seen.append(url[1])
        assert get(url[1].replace("/metrics", "/healthz")) == (200, b'{"status": "alive"}')
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(process.stop.wait(), 5)
        assert process.settings is LOCAL

    run_process(LOCAL, main, what="test-component", checks={"probe": lambda: (True, "fine")})
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", seen[0])
    assert readiness.report() == (True, {"probe": {"ok": True, "detail": "fine"}})


def test_a_process_that_announces_itself_once_started(capsys: pytest.CaptureFixture[str]) -> None:
    async def main(process: Process) -> None:
        assert capsys.readouterr().out == ""  # nothing served nor said before it is ready
        process.serve(lambda url: f"listening on 127.0.0.1:2575; metrics on {url}")

    run_process(LOCAL, main, what=None)
    out = capsys.readouterr().out
    assert re.fullmatch(r"listening on 127\.0\.0\.1:2575; metrics on http://\S+/metrics\n", out)


# MLLP settings ------------------------------------------------------------------------


def test_the_gateway_defaults_are_the_listener_s() -> None:
    assert gateway_config(MllpSettings()) == GatewayConfig()


def test_the_gateway_takes_its_limits_from_settings() -> None:
    mllp = MllpSettings(
        host="0.0.0.0", port=0, max_frame_bytes=1024, idle_timeout_s=5.0, max_connections=3
    )
    config = gateway_config(mllp)
    assert (config.host, config.port, config.max_frame_bytes) == ("0.0.0.0", 0, 1024)
    assert (config.idle_timeout_s, config.max_connections, config.tls) == (5.0, 3, None)


def test_a_missing_tls_file_names_its_variable(tmp_path: Path) -> None:
    mllp = MllpSettings(tls_cert=tmp_path / "absent.pem", tls_key=tmp_path / "absent.key")
    with pytest.raises(SettingsError, match=r"RELAIS_MLLP_TLS_CERT=.*absent\.pem: no such file"):
        gateway_config(mllp)


def test_mllp_flags_still_refuse_a_certificate_without_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "server.pem"
    cert.write_text("not read")
    result = CliRunner().invoke(relais, ["mllp", "--tls-cert", str(cert)], env={})
    assert result.exit_code == 2
    assert "--tls-cert and --tls-key go together" in result.output


def test_mllp_flags_are_checked_like_the_variables() -> None:
    result = CliRunner().invoke(relais, ["mllp", "--max-frame-bytes", "0"], env={})
    assert result.exit_code == 2
    assert "--max-frame-bytes" in result.output


def test_mllp_flags_override_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flags given replace their RELAIS_MLLP_* values; the others stay as set."""
    started: list[Settings] = []
    monkeypatch.setattr(
        "producers.mllp_intake.run_gateway", lambda settings, keyring: started.append(settings)
    )
    Keyring.generate().write(tmp_path / "keyring.json")
    env = {
        "RELAIS_KEYRING_FILE": str(tmp_path / "keyring.json"),
        "RELAIS_MLLP_PORT": "6661",
        "RELAIS_MLLP_SECTOR": "LAB",
    }
    result = CliRunner().invoke(relais, ["mllp", "--port", "2576", "--idle-timeout", "9"], env=env)
    assert result.exit_code == 0, result.output
    assert started[0].mllp == MllpSettings(port=2576, sector="LAB", idle_timeout_s=9.0)
