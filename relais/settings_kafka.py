"""How Relais's Kafka clients authenticate (RELAIS_KAFKA_*): a part of
:class:`relais.settings_parts.KafkaSettings`.

Every producer, consumer, admin client and the Faust app take these through one factory
(:mod:`relais.kafka_clients`). Protocols and mechanisms are Kafka's own names:

=================  ===============================================================
PLAINTEXT          no TLS, no authentication (the local broker, a private network)
SSL                TLS; with RELAIS_KAFKA_CERT_FILE / _KEY_FILE, mutual TLS
SASL_PLAINTEXT     SASL without TLS (credentials cross the network in clear: avoid)
SASL_SSL           SASL over TLS: PLAIN, SCRAM-SHA-256/512 or OAUTHBEARER
=================  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relais.settings_env import Env, SettingsError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


@dataclass(frozen=True, repr=False)
class OAuthClient:
    """An OAuth 2.0 client (client credentials grant) that obtains the OAUTHBEARER token."""

    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None

    def __repr__(self) -> str:
        return f"OAuthClient(token_url={self.token_url!r}, client_id={self.client_id!r})"


@dataclass(frozen=True, repr=False)
class KafkaSecurity:
    """TLS files and SASL credentials; the default is PLAINTEXT (the local broker)."""

    protocol: str = "PLAINTEXT"
    ca_file: Path | None = None  # None with TLS: the system's trust store
    cert_file: Path | None = None  # mutual TLS: the client certificate (PEM)
    key_file: Path | None = None
    key_password: str | None = None
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    oauth: OAuthClient | None = None

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def __repr__(self) -> str:  # never the password, the key's password or the secret
        return (
            f"KafkaSecurity(protocol={self.protocol!r}, ca_file={self.ca_file!r}, "
            f"cert_file={self.cert_file!r}, sasl_mechanism={self.sasl_mechanism!r}, "
            f"username={self.username!r})"
        )

    @classmethod
    def from_env(cls, env: Env) -> KafkaSecurity:
        protocol = env.text("RELAIS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
        if protocol not in PROTOCOLS:
            raise SettingsError(
                f"RELAIS_KAFKA_SECURITY_PROTOCOL={protocol!r}: expected {', '.join(PROTOCOLS)}"
            )
        return cls(protocol=protocol, **_tls(env, protocol), **_sasl(env, protocol))


@dataclass(frozen=True)
class KafkaConnection:
    """The bus: bootstrap servers, how to authenticate, idempotent producers or not
    (:mod:`relais.kafka_clients` builds every client from it)."""

    bootstrap: str
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    idempotent: bool = False

    def __str__(self) -> str:
        return f"{self.bootstrap} ({self.security.protocol})"


def _tls(env: Env, protocol: str) -> dict[str, Any]:
    files = {
        "ca_file": env.path("RELAIS_KAFKA_CA_FILE"),
        "cert_file": env.path("RELAIS_KAFKA_CERT_FILE"),
        "key_file": env.path("RELAIS_KAFKA_KEY_FILE"),
    }
    given = [name for name, path in files.items() if path is not None]
    if given and protocol not in ("SSL", "SASL_SSL"):
        raise SettingsError(
            f"RELAIS_KAFKA_{given[0].upper()} is set but RELAIS_KAFKA_SECURITY_PROTOCOL="
            f"{protocol}: set it to SSL (or SASL_SSL) to use TLS"
        )
    if (files["cert_file"] is None) != (files["key_file"] is None):
        raise SettingsError(
            "RELAIS_KAFKA_CERT_FILE and RELAIS_KAFKA_KEY_FILE go together (mutual TLS): "
            "set both or neither"
        )
    return {**files, "key_password": env.raw("RELAIS_KAFKA_KEY_PASSWORD") or None}


def _sasl(env: Env, protocol: str) -> dict[str, Any]:
    mechanism = env.raw("RELAIS_KAFKA_SASL_MECHANISM").upper() or None
    if not protocol.startswith("SASL_"):
        if mechanism:
            raise SettingsError(
                f"RELAIS_KAFKA_SASL_MECHANISM={mechanism} needs RELAIS_KAFKA_SECURITY_PROTOCOL="
                f"SASL_SSL (or SASL_PLAINTEXT), not {protocol}"
            )
        return {}
    if mechanism not in MECHANISMS:
        raise SettingsError(
            f"RELAIS_KAFKA_SASL_MECHANISM={mechanism or ''!r}: with {protocol}, expected one "
            f"of {', '.join(MECHANISMS)}"
        )
    if mechanism == "OAUTHBEARER":
        return {"sasl_mechanism": mechanism, "oauth": _oauth(env)}
    username, password = (
        env.raw("RELAIS_KAFKA_SASL_USERNAME"),
        env.raw("RELAIS_KAFKA_SASL_PASSWORD"),
    )
    for name, value in (
        ("RELAIS_KAFKA_SASL_USERNAME", username),
        ("RELAIS_KAFKA_SASL_PASSWORD", password),
    ):
        if not value:
            raise SettingsError(f"{name} is required with RELAIS_KAFKA_SASL_MECHANISM={mechanism}")
    return {"sasl_mechanism": mechanism, "username": username, "password": password}


def _oauth(env: Env) -> OAuthClient:
    values = {
        name: env.raw(f"RELAIS_KAFKA_OAUTH_{name}")
        for name in ("TOKEN_URL", "CLIENT_ID", "CLIENT_SECRET")
    }
    for name, value in values.items():
        if not value:
            raise SettingsError(
                f"RELAIS_KAFKA_OAUTH_{name} is required with RELAIS_KAFKA_SASL_MECHANISM="
                "OAUTHBEARER (the client credentials grant of your identity provider)"
            )
    if not values["TOKEN_URL"].startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise SettingsError(
            f"RELAIS_KAFKA_OAUTH_TOKEN_URL={values['TOKEN_URL']!r}: use https:// (the client "
            "secret would cross the network in clear)"
        )
    return OAuthClient(
        token_url=values["TOKEN_URL"],
        client_id=values["CLIENT_ID"],
        client_secret=values["CLIENT_SECRET"],
        scope=env.raw("RELAIS_KAFKA_OAUTH_SCOPE") or None,
    )
