"""RELAIS_KAFKA_* → every client's options: TLS, mutual TLS, SASL PLAIN / SCRAM / OAUTHBEARER.

The local broker's SASL does not work, so the SASL mapping is checked here, on the options
aiokafka and Faust are given; TLS and mutual TLS are checked for real in
tests/integration/test_kafka_tls.py. The OAuth token provider is checked against a real
HTTP server.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import Producer

from relais import kafka_clients
from relais.kafka_faust import broker_credentials, install_idempotence
from relais.kafka_oauth import ClientCredentialsTokens, TokenError
from relais.settings import Settings, SettingsError
from relais.settings_kafka import KafkaConnection, KafkaSecurity, OAuthClient
from tests.integration.mail_servers import make_pki

SCRAM = {
    "RELAIS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "RELAIS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "RELAIS_KAFKA_SASL_USERNAME": "relais",
    "RELAIS_KAFKA_SASL_PASSWORD": "s3cret-pw",
}


def security(env: dict[str, str]) -> KafkaSecurity:
    return Settings.from_env(env).kafka.security


def test_plaintext_by_default_and_a_string_target_means_plaintext() -> None:
    assert security({}) == KafkaSecurity()
    options = kafka_clients.client_options("127.0.0.1:9092")
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_user_and_password_reach_aiokafka_and_faust(mechanism: str) -> None:
    conn = Settings.from_env(
        {**SCRAM, "RELAIS_KAFKA_SASL_MECHANISM": mechanism.lower()}
    ).kafka.connection
    options = kafka_clients.client_options(conn)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "relais",
        "s3cret-pw",
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)  # the system's trust store
    faust = broker_credentials(conn)
    assert isinstance(faust, SASLCredentials)
    assert faust.protocol.value == "SASL_SSL"
    assert faust.mechanism.value == mechanism
    assert (faust.username, faust.password) == ("relais", "s3cret-pw")


def test_sasl_without_tls_has_no_tls_context() -> None:
    conn = Settings.from_env(
        {**SCRAM, "RELAIS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    ).kafka.connection
    options = kafka_clients.client_options(conn)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert "ssl_context" not in options
    faust = broker_credentials(conn)
    assert isinstance(faust, SASLCredentials)
    assert faust.protocol.value == "SASL_PLAINTEXT"


def test_oauthbearer_gets_one_shared_token_provider() -> None:
    env = {
        "RELAIS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "RELAIS_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "RELAIS_KAFKA_OAUTH_TOKEN_URL": "https://idp.example/token",
        "RELAIS_KAFKA_OAUTH_CLIENT_ID": "relais",
        "RELAIS_KAFKA_OAUTH_CLIENT_SECRET": "cs",
        "RELAIS_KAFKA_OAUTH_SCOPE": "kafka",
    }
    conn = Settings.from_env(env).kafka.connection
    assert conn.security.oauth == OAuthClient("https://idp.example/token", "relais", "cs", "kafka")
    first, second = (kafka_clients.client_options(conn) for _ in range(2))
    provider = first["sasl_oauth_token_provider"]
    assert isinstance(provider, ClientCredentialsTokens)
    assert second["sasl_oauth_token_provider"] is provider
    assert "sasl_plain_username" not in first
    faust = broker_credentials(conn)
    assert isinstance(faust, OAuthCredentials)
    assert faust.oauth_cb is provider


def test_mutual_tls_loads_the_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    conn = Settings.from_env(
        {
            "RELAIS_KAFKA_SECURITY_PROTOCOL": "ssl",
            "RELAIS_KAFKA_CA_FILE": str(pki.ca),
            "RELAIS_KAFKA_CERT_FILE": str(pki.client_cert),
            "RELAIS_KAFKA_KEY_FILE": str(pki.client_key),
        }
    ).kafka.connection
    context = kafka_clients.client_options(conn)["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert isinstance(broker_credentials(conn), SSLCredentials)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"RELAIS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "RELAIS_KAFKA_SECURITY_PROTOCOL"),
        ({"RELAIS_KAFKA_CA_FILE": "/ca.pem"}, "SECURITY_PROTOCOL=PLAINTEXT"),
        (
            {"RELAIS_KAFKA_SECURITY_PROTOCOL": "SSL", "RELAIS_KAFKA_CERT_FILE": "/c.pem"},
            "RELAIS_KAFKA_KEY_FILE",
        ),
        ({"RELAIS_KAFKA_SASL_MECHANISM": "PLAIN"}, "SASL_SSL"),
        ({**SCRAM, "RELAIS_KAFKA_SASL_MECHANISM": "GSSAPI"}, "RELAIS_KAFKA_SASL_MECHANISM"),
        ({**SCRAM, "RELAIS_KAFKA_SASL_PASSWORD": ""}, "RELAIS_KAFKA_SASL_PASSWORD"),
        (
            {**SCRAM, "RELAIS_KAFKA_SASL_MECHANISM": "OAUTHBEARER"},
            "RELAIS_KAFKA_OAUTH_TOKEN_URL",
        ),
        (
            {
                **SCRAM,
                "RELAIS_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                "RELAIS_KAFKA_OAUTH_TOKEN_URL": "http://idp.example/token",
                "RELAIS_KAFKA_OAUTH_CLIENT_ID": "relais",
                "RELAIS_KAFKA_OAUTH_CLIENT_SECRET": "cs",
            },
            "use https://",
        ),
    ],
)
def test_an_unusable_combination_names_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


def test_an_unreadable_ca_file_names_the_variable(tmp_path: Path) -> None:
    conn = KafkaConnection("h:9093", KafkaSecurity(protocol="SSL", ca_file=tmp_path / "none.pem"))
    with pytest.raises(SettingsError, match="RELAIS_KAFKA_CA_FILE"):
        kafka_clients.producer(conn)


def test_secrets_are_not_in_the_repr() -> None:
    env = {**SCRAM, "RELAIS_KAFKA_KEY_PASSWORD": "key-pw"}
    text = repr(Settings.from_env(env))
    assert "s3cret-pw" not in text
    assert "key-pw" not in text
    assert "relais" in text  # the user name is not a secret


async def test_producers_are_idempotent_on_apache_kafka_only() -> None:
    tansu = Settings.from_env({}).kafka.connection
    kafka = Settings.from_env({"RELAIS_BROKER_KIND": "kafka"}).kafka.connection
    assert not tansu.idempotent
    assert kafka.idempotent

    def idempotent(producer: object) -> bool:  # aiokafka keeps a transaction manager for it
        return producer._txn_manager is not None  # type: ignore[attr-defined]

    assert idempotent(kafka_clients.producer(kafka))
    assert not idempotent(kafka_clients.producer(tansu))
    # a caller asking for less than acks=all cannot have idempotence: it gets what it asked
    assert not idempotent(kafka_clients.producer(kafka, acks=1))


@pytest.fixture
async def token_server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    calls: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        calls.append(
            {**{k: str(v) for k, v in form.items()}, "auth": request.headers["Authorization"]}
        )
        if request.headers["Authorization"] != "Basic cmVsYWlzOmNz":  # relais:cs
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response({"access_token": f"t{len(calls)}", "expires_in": 3600})

    app = web.Application()
    app.router.add_post("/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/token", calls
    finally:
        await runner.cleanup()


async def test_the_token_is_fetched_once_and_shared(
    token_server: tuple[str, list[dict[str, str]]],
) -> None:
    url, calls = token_server
    tokens = ClientCredentialsTokens(OAuthClient(url, "relais", "cs", "kafka"))
    got = await asyncio.gather(*(tokens.token() for _ in range(5)))
    assert got == ["t1"] * 5
    assert len(calls) == 1
    assert calls[0]["grant_type"] == "client_credentials"
    assert calls[0]["scope"] == "kafka"


async def test_a_refused_client_is_one_line_naming_the_settings(
    token_server: tuple[str, list[dict[str, str]]],
) -> None:
    url, _ = token_server
    tokens = ClientCredentialsTokens(OAuthClient(url, "relais", "wrong"))
    with pytest.raises(TokenError, match="HTTP 401: check RELAIS_KAFKA_OAUTH_CLIENT_ID"):
        await tokens.token()


def test_faust_producers_ask_for_idempotence_once_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # keep the class as it was for the other tests of this process
    monkeypatch.setattr(Producer, "_settings_extra", Producer._settings_extra)
    monkeypatch.setattr(Producer, "_relais_idempotent", False, raising=False)
    assert "enable_idempotence" not in Producer._settings_extra(_NotInTransaction())
    install_idempotence()
    assert Producer._settings_extra(_NotInTransaction()) == {
        "acks": "all",
        "enable_idempotence": True,
    }


class _NotInTransaction:
    class app:  # Faust's attribute name
        in_transaction = False
