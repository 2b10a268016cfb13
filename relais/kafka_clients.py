"""The one factory of Kafka clients: every producer, consumer and admin client of Relais.

A :class:`KafkaConnection` is where the bus is and how to reach it: the bootstrap servers,
:class:`relais.settings_kafka.KafkaSecurity` (TLS, mutual TLS, SASL PLAIN / SCRAM /
OAUTHBEARER) and whether producers are idempotent. ``settings.kafka.connection`` builds it
from the RELAIS_* settings at the entry point; a plain ``"host:port"`` string (tests, the
local broker) means PLAINTEXT.

Producers always ask for ``acks=all``. On Apache Kafka they are also idempotent
(``enable.idempotence``): a retried send after a lost acknowledgement does not write the
record twice, and order is kept with several requests in flight. The local broker's
in-memory engine refuses InitProducerId, so there they are not (``RELAIS_BROKER_KIND``).
The Faust side of the same settings is in :mod:`relais.kafka_faust`.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from relais.kafka_oauth import ClientCredentialsTokens
from relais.settings_env import SettingsError
from relais.settings_kafka import KafkaConnection, KafkaSecurity, OAuthClient

__all__ = [
    "KafkaConnection",
    "Target",
    "admin",
    "client_options",
    "connection",
    "consumer",
    "producer",
    "ssl_context",
    "token_provider",
]


#: what the factories accept: a connection, or bootstrap servers reached in PLAINTEXT
Target = KafkaConnection | str


def connection(target: Target) -> KafkaConnection:
    return target if isinstance(target, KafkaConnection) else KafkaConnection(target)


@functools.lru_cache(maxsize=8)
def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context of every client of a process (None without TLS): the CA file or the
    system's trust store, the client certificate for mutual TLS, TLS 1.2 at least."""
    if not security.tls:
        return None
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(security.ca_file) if security.ca_file else None,
        )
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(
            f"RELAIS_KAFKA_CA_FILE={str(security.ca_file)!r} holds no usable CA certificate "
            f"({exc}): give the PEM of the CA that signed the brokers' certificates"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if security.cert_file is not None and security.key_file is not None:
        try:
            context.load_cert_chain(
                security.cert_file, security.key_file, password=security.key_password
            )
        except (ssl.SSLError, OSError) as exc:
            raise SettingsError(
                f"RELAIS_KAFKA_CERT_FILE / RELAIS_KAFKA_KEY_FILE cannot be used ({exc}): give "
                "the client certificate and its private key in PEM (RELAIS_KAFKA_KEY_PASSWORD "
                "when the key is encrypted)"
            ) from None
    return context


@functools.lru_cache(maxsize=4)
def token_provider(client: OAuthClient) -> ClientCredentialsTokens:
    """The OAUTHBEARER token provider of ``client``: one per process, its token shared by
    every connection (aiokafka's and Faust's)."""
    return ClientCredentialsTokens(client)


def client_options(target: Target) -> dict[str, Any]:
    """The aiokafka keyword arguments every client takes: servers, TLS and SASL."""
    conn = connection(target)
    security = conn.security
    options: dict[str, Any] = {
        "bootstrap_servers": conn.bootstrap,
        "security_protocol": security.protocol,
    }
    if security.tls:
        options["ssl_context"] = ssl_context(security)
    if security.sasl:
        options["sasl_mechanism"] = security.sasl_mechanism
        if security.oauth is not None:
            options["sasl_oauth_token_provider"] = token_provider(security.oauth)
        else:
            options["sasl_plain_username"] = security.username
            options["sasl_plain_password"] = security.password
    return options


def producer(target: Target, **options: Any) -> AIOKafkaProducer:
    """A producer: ``acks=all``, idempotent on Apache Kafka; ``options`` add to that."""
    conn = connection(target)
    settings: dict[str, Any] = {"acks": "all", **options}
    # idempotence needs acks=all; a caller asking for less gets what it asked for
    settings.setdefault("enable_idempotence", conn.idempotent and settings["acks"] in ("all", -1))
    return AIOKafkaProducer(**client_options(conn), **settings)


def consumer(target: Target, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **client_options(target), **options)


def admin(target: Target, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(target), **options)
