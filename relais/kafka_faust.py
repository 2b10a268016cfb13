"""The Faust app's side of :mod:`relais.kafka_clients`: the same TLS and SASL settings as
every other client (Faust's ``broker_credentials``), and idempotent producers on Apache Kafka.

Faust turns idempotence on only inside transactions (exactly-once processing), which
Relais does not use: its stages are at-least-once and their outputs keyed by event id.
:func:`install_idempotence` makes the producers of a non-transactional app ask for it too,
so a retried send after a lost acknowledgement does not duplicate a record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from relais.kafka_clients import KafkaConnection, ssl_context, token_provider

__all__ = ["broker_credentials", "install_idempotence"]


def broker_credentials(conn: KafkaConnection) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for a connection (None: PLAINTEXT)."""
    security = conn.security
    context = ssl_context(security)
    if security.oauth is not None:
        return OAuthCredentials(oauth_cb=token_provider(security.oauth), ssl_context=context)
    if security.sasl:
        return SASLCredentials(
            username=security.username,
            password=security.password,
            ssl_context=context,
            mechanism=security.sasl_mechanism,
        )
    if context is not None:
        return SSLCredentials(context)
    return None


def install_idempotence() -> None:
    """Faust's aiokafka producers ask for ``enable.idempotence`` (and ``acks=all``)."""
    from faust.transport.drivers.aiokafka import Producer  # noqa: PLC0415

    if getattr(Producer, "_relais_idempotent", False):
        return

    def settings_extra(self: Any) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}

    setattr(Producer, "_settings_extra", settings_extra)  # noqa: B010 (typed method)
    setattr(Producer, "_relais_idempotent", True)  # noqa: B010
