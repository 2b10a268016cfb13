"""Where and as whom the identity stage asks INSi: endpoint, the structure's TLS, ContexteLPS.

Built from :class:`relais.settings.InsiSettings` at the identity worker's start; a
missing certificate, an http:// URL or a missing identity stops the start with one
line naming the variables to set (docs/insi.md).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from relais import __version__
from relais.settings import InsiSettings, Settings, SettingsError
from streams.identity.insi_messages import LpsIdentity

LPS_NAME = "Relais"


@dataclass(frozen=True)
class InsiConfig:
    """The INSi endpoint, the structure's certificate and the ContexteLPS identity."""

    url: str
    lps: LpsIdentity
    client_cert: Path
    client_key: Path
    ca_file: Path | None = None  # None: the system's trust store
    timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> InsiConfig:
        """The configuration, or :class:`SettingsError` naming every variable to set."""
        insi = settings.insi
        _check_required(insi)
        if not insi.url.startswith("https://"):
            raise SettingsError(
                f"RELAIS_INSI_URL={insi.url!r}: INSi is reached by https:// with the "
                "structure's certificate (mutual TLS)"
            )
        cert = _file("RELAIS_INSI_CLIENT_CERT", insi.client_cert)
        key = _file("RELAIS_INSI_CLIENT_KEY", insi.client_key)
        if insi.ca_file is not None and not insi.ca_file.is_file():
            raise SettingsError(f"RELAIS_INSI_CA_FILE={insi.ca_file}: no such file")
        lps = LpsIdentity(
            idam=insi.idam,
            name=LPS_NAME,
            version=__version__,
            instance=f"relais-{settings.kafka.prefix}",
            emitter=insi.emitter,
        )
        return cls(insi.url, lps, cert, key, insi.ca_file, insi.timeout_s)

    def tls_context(self) -> ssl.SSLContext:
        """TLS that checks INSi's certificate and presents the structure's."""
        return client_tls(self.client_cert, self.client_key, self.ca_file)


def client_tls(cert: Path, key: Path, ca_file: Path | None) -> ssl.SSLContext:
    """A TLS 1.2+ client context presenting ``cert`` and trusting ``ca_file`` (or the system)."""
    ca = str(ca_file) if ca_file is not None else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _check_required(insi: InsiSettings) -> None:
    required = {
        "RELAIS_INSI_CLIENT_CERT": insi.client_cert,
        "RELAIS_INSI_CLIENT_KEY": insi.client_key,
        "RELAIS_INSI_IDAM": insi.idam,
        "RELAIS_INSI_EMITTER": insi.emitter,
    }
    if missing := [name for name, value in required.items() if not value]:
        raise SettingsError(
            "the identity stage needs " + ", ".join(missing) + " to ask INSi (the "
            "structure's certificate, CNDA authorisation and emitter; the RELAIS_DMP_* "
            "certificate and structure id stand in when set); `relais sandbox insi` prints "
            "them for its test PKI"
        )


def _file(name: str, path: Path | None) -> Path:
    if path is None or not path.is_file():
        raise SettingsError(f"{name}={path or ''}: no such file")
    return path
