"""The settings of what goes back to producers over MLLP (ZAM, LPS MDM): the routes
(``RELAIS_ACK_ROUTES``) and the TLS material of the routes marked ``/tls``, a part of
:class:`relais.settings.Settings`. The files are checked where they are used
(``producers.mllp.ack_routes.routes_from``), not here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relais.settings_env import Env


@dataclass(frozen=True)
class AckSettings:
    """Where business acknowledgements (ZAM) go back to: ``FACILITY=host:port[/tls],...``."""

    routes: str = ""
    ca_file: Path | None = None  # CAs of the producers' MLLP servers (None: system store)
    client_cert: Path | None = None  # Relais's client certificate (PEM): mutual TLS
    client_key: Path | None = None

    @classmethod
    def from_env(cls, env: Env) -> AckSettings:
        return cls(
            routes=env.raw("RELAIS_ACK_ROUTES"),
            ca_file=env.path("RELAIS_ACK_CA_FILE"),
            client_cert=env.path("RELAIS_ACK_CLIENT_CERT"),
            client_key=env.path("RELAIS_ACK_CLIENT_KEY"),
        )
