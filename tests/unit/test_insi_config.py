"""The identity stage's INSi configuration: https only, the structure's certificate (the
DMP's when INSi has none of its own), the ContexteLPS identity, and one line naming what
is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from relais import __version__
from relais.settings import Settings, SettingsError
from sandboxes.insi import client_environment, sandbox_pki
from sandboxes.pki import SandboxPki
from streams.identity.circuit_breaker import CircuitBreaker
from streams.identity.insi_client import HttpInsiClient
from streams.identity.insi_config import InsiConfig


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return sandbox_pki(Path(tmp_path_factory.mktemp("insi-config-pki")))


def test_the_sandbox_environment_configures_the_client(pki: SandboxPki) -> None:
    env = client_environment(pki, "https://127.0.0.1:39181/lps")
    config = InsiConfig.from_settings(Settings.from_env({**env, "RELAIS_TOPIC_PREFIX": "p"}))
    assert config.url == "https://127.0.0.1:39181/lps"
    assert (config.client_cert, config.ca_file) == (pki.client_cert, pki.ca_cert)
    assert config.lps.idam == env["RELAIS_INSI_IDAM"]
    assert config.lps.emitter == env["RELAIS_INSI_EMITTER"]
    assert (config.lps.name, config.lps.version, config.lps.instance) == (
        "Relais",
        __version__,
        "relais-p",
    )
    assert config.tls_context().verify_mode.name == "CERT_REQUIRED"


def test_the_dmp_certificate_and_structure_stand_in(pki: SandboxPki) -> None:
    env = {
        "RELAIS_DMP_CA_FILE": str(pki.ca_cert),
        "RELAIS_DMP_CLIENT_CERT": str(pki.client_cert),
        "RELAIS_DMP_CLIENT_KEY": str(pki.client_key),
        "RELAIS_DMP_STRUCTURE_ID": "1120459876",
        "RELAIS_INSI_IDAM": "CNDA-1",
    }
    config = InsiConfig.from_settings(Settings.from_env(env))
    assert (config.client_cert, config.client_key) == (pki.client_cert, pki.client_key)
    assert config.lps.emitter == "1120459876"
    own = InsiConfig.from_settings(Settings.from_env({**env, "RELAIS_INSI_EMITTER": "1999999999"}))
    assert own.lps.emitter == "1999999999"


def test_nothing_set_names_every_missing_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        InsiConfig.from_settings(Settings.from_env({}))
    message = str(caught.value)
    for name in (
        "RELAIS_INSI_CLIENT_CERT",
        "RELAIS_INSI_CLIENT_KEY",
        "RELAIS_INSI_IDAM",
        "RELAIS_INSI_EMITTER",
    ):
        assert name in message
    assert "\n" not in message


def test_http_is_refused_naming_the_variable(pki: SandboxPki) -> None:
    env = client_environment(pki, "http://127.0.0.1:39181/lps")
    with pytest.raises(SettingsError, match=r"^RELAIS_INSI_URL='http://127\.0\.0\.1.*https://"):
        InsiConfig.from_settings(Settings.from_env(env))


def test_a_missing_certificate_file_is_named(pki: SandboxPki, tmp_path: Path) -> None:
    env = {**client_environment(pki, "https://x/lps"), "RELAIS_INSI_CLIENT_KEY": "/nope.key"}
    with pytest.raises(SettingsError, match=r"^RELAIS_INSI_CLIENT_KEY=/nope\.key: no such file"):
        InsiConfig.from_settings(Settings.from_env(env))
    env = {**client_environment(pki, "https://x/lps"), "RELAIS_INSI_CA_FILE": str(tmp_path)}
    with pytest.raises(SettingsError, match=r"^RELAIS_INSI_CA_FILE="):
        InsiConfig.from_settings(Settings.from_env(env))


def test_the_worker_builds_its_client_from_settings(pki: SandboxPki) -> None:
    settings = Settings.from_env(client_environment(pki, "https://127.0.0.1:1/lps"))
    client = HttpInsiClient.from_settings(settings, breaker=CircuitBreaker(), observer=_Observer())
    assert client.url == "https://127.0.0.1:1/lps"
    assert client.lps.idam == "RELAIS-SANDBOX-IDAM"


class _Observer:
    def call(self, operation: str, outcome: str, seconds: float | None) -> None:
        return None

    def circuit(self, state: object) -> None:
        return None
