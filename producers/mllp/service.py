"""The MLLP gateway as a long-running process: ``settings.mllp`` in, a listener served.

:func:`gateway_config` turns :class:`~relais.settings.MllpSettings` (RELAIS_MLLP_*, the
``relais mllp`` flags applied over them) into the listener's :class:`GatewayConfig`;
:func:`serve_gateway` runs one gateway inside :func:`relais.process.run_process`: listen,
then serve /metrics and say where, wait for SIGINT/SIGTERM, stop (handlers in progress
finish). What a message means is the handler's business: ``producers.mllp_intake``
gives it the ingest over the producer library.
"""

from __future__ import annotations

import errno
import ssl
from pathlib import Path

from producers.mllp.gateway import (
    GatewayConfig,
    GatewayObserver,
    MessageHandler,
    MllpGateway,
    server_tls_context,
)
from producers.mllp.peers import PeerBinding, parse_peer_facilities
from relais.process import Process
from relais.settings import MllpSettings, SettingsError


def gateway_config(mllp: MllpSettings) -> GatewayConfig:
    """The listener's configuration; :class:`SettingsError` names a TLS setting to fix.

    Checked here, not when the settings are read: only the gateway uses them, so a wrong
    RELAIS_MLLP_* value never stops another process sharing the environment.
    """
    return GatewayConfig(
        host=mllp.host,
        port=mllp.port,
        max_frame_bytes=mllp.max_frame_bytes,
        idle_timeout_s=mllp.idle_timeout_s,
        max_connections=mllp.max_connections,
        max_connections_per_peer=mllp.max_connections_per_peer,
        frame_timeout_s=mllp.frame_timeout_s,
        tls=_server_tls(mllp),
        reuse_port=mllp.reuse_port,
        binding=peer_binding(mllp),
    )


def _server_tls(mllp: MllpSettings) -> ssl.SSLContext | None:
    """The listener's TLS context (None: plain TCP); unusable PEM files are named."""
    if (mllp.tls_cert is None) != (mllp.tls_key is None):
        raise SettingsError("RELAIS_MLLP_TLS_CERT and RELAIS_MLLP_TLS_KEY go together")
    if mllp.tls_cert is None or mllp.tls_key is None:
        return None
    cert = _file("RELAIS_MLLP_TLS_CERT", mllp.tls_cert)
    key = _file("RELAIS_MLLP_TLS_KEY", mllp.tls_key)
    ca = _file("RELAIS_MLLP_CLIENT_CA", mllp.client_ca) if mllp.client_ca else None
    try:
        return server_tls_context(cert, key, ca)
    except ssl.SSLError as exc:
        files = f"RELAIS_MLLP_TLS_CERT={cert}, RELAIS_MLLP_TLS_KEY={key}"
        if ca is not None:
            files += f" or RELAIS_MLLP_CLIENT_CA={ca}"
        raise SettingsError(f"{files}: not usable PEM material ({exc})") from None


def peer_binding(mllp: MllpSettings) -> PeerBinding | None:
    """With client certificates (RELAIS_MLLP_CLIENT_CA), which MSH-4 each may send as
    (:mod:`producers.mllp.peers`); without them there is nothing to bind: None."""
    if mllp.client_ca is None:
        if mllp.peer_facilities.strip():
            raise SettingsError(
                "RELAIS_MLLP_PEER_FACILITIES binds client certificates to facilities: set "
                "RELAIS_MLLP_CLIENT_CA (with RELAIS_MLLP_TLS_CERT and _KEY) or unset it"
            )
        return None
    if mllp.tls_cert is None:
        raise SettingsError(
            "RELAIS_MLLP_CLIENT_CA needs RELAIS_MLLP_TLS_CERT and RELAIS_MLLP_TLS_KEY "
            "(client certificates are asked for in the TLS handshake)"
        )
    return PeerBinding(parse_peer_facilities(mllp.peer_facilities))


def _file(variable: str, path: Path) -> Path:
    if not path.is_file():
        raise SettingsError(f"{variable}={path}: no such file")
    return path


async def serve_gateway(
    process: Process, config: GatewayConfig, handler: MessageHandler, observer: GatewayObserver
) -> None:
    """Listen, announce ``MLLP[S] on host:port -> bootstrap; metrics on URL``, run until stop."""
    gateway = MllpGateway(config, handler, observer)
    try:
        bound = await gateway.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        where = f"RELAIS_MLLP_PORT={config.port}: {config.host}:{config.port} is in use"
        if config.reuse_port:
            raise SettingsError(f"{where} by a process that does not share it") from None
        raise SettingsError(
            f"{where}: choose another port, or set RELAIS_MLLP_REUSE_PORT=yes on every "
            "gateway process that shares it"
        ) from None
    scheme = "MLLPS" if config.tls else "MLLP"
    bootstrap = process.settings.kafka.connection
    process.serve(lambda url: f"{scheme} on {config.host}:{bound} -> {bootstrap}; metrics on {url}")
    await process.stop.wait()
    await gateway.stop()
