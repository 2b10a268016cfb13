"""The MLLP listener's settings (:class:`GatewayConfig`), its TLS context and a client's."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from producers.mllp.peers import PeerBinding


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
    #: client certificate -> the MSH-4 it may send as (mutual TLS; None: no binding)
    binding: PeerBinding | None = None


def client_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A client context, TLS 1.2 or later, checking the server's certificate and name
    against ``ca_file`` (None: the system's trust store); load a client certificate on it
    for mutual TLS."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def server_tls_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server context, TLS 1.2 or later; with ``client_ca``, client certificates are required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=cert, keyfile=key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
