"""The MLLP listener's settings (:class:`GatewayConfig`) and its TLS context."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GatewayConfig:
    """Listener settings. ``tls`` None means plain TCP; see :func:`server_tls_context`."""

    host: str = "127.0.0.1"
    port: int = 2575
    max_frame_bytes: int = 16 << 20
    idle_timeout_s: float = 60.0
    max_connections: int = 1000
    max_connections_per_peer: int = 20
    frame_timeout_s: float = 60.0
    tls: ssl.SSLContext | None = None
    shutdown_grace_s: float = 10.0
    #: SO_REUSEPORT: several gateway processes listen on the one port, the kernel spreads
    #: the connections among them (each process sets it: RELAIS_MLLP_REUSE_PORT)
    reuse_port: bool = False


def server_tls_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server context, TLS 1.2 or later; with ``client_ca``, client certificates are required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=cert, keyfile=key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
