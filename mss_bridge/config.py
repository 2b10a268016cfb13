"""mss_bridge's typed configuration, built once from :class:`relais.settings.Settings`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mss_bridge.addresses import parse_address
from mss_bridge.compose import ComposeConfig
from mss_bridge.errors import MssError
from mss_bridge.smtp_sender import SmtpConfig, SmtpServer, TlsMode
from relais.settings import Settings


class ConfigError(MssError):
    """A RELAIS_MSS_* value cannot be used; the message names the variable."""

    reason_code = "mss-config"


@dataclass(frozen=True)
class ImapConfig:
    """The watched mailbox: IMAPS server, login, folders, TLS material, polling period."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folders: tuple[str, ...] = ("INBOX",)
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    poll_s: float = 30.0
    idle_s: float = 300.0  # re-issue IDLE at least this often (servers drop idle clients)
    processed_folder: str = "Relais-Processed"
    quarantine_folder: str = "Relais-Quarantine"
    timeout_s: float = 30.0


def host_port(value: str, variable: str) -> tuple[str, int]:
    host, _, port = value.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{variable}={value!r}: expected host:port")
    return host, int(port)


def smtp_routes(value: str) -> dict[str, SmtpServer]:
    """``domain=host:port[/implicit|/starttls]`` entries, comma-separated."""
    routes: dict[str, SmtpServer] = {}
    for item in (p.strip() for p in value.split(",") if p.strip()):
        domain, eq, target = item.partition("=")
        if not eq or not domain.strip():
            raise ConfigError(f"RELAIS_MSS_SMTP_ROUTES entry {item!r}: expected domain=host:port")
        address, _, mode = target.partition("/")
        tls: TlsMode = "implicit" if mode.strip().lower() == "implicit" else "starttls"
        if mode.strip().lower() not in {"", "implicit", "starttls"}:
            raise ConfigError(f"RELAIS_MSS_SMTP_ROUTES entry {item!r}: TLS is implicit or starttls")
        host, port = host_port(address, "RELAIS_MSS_SMTP_ROUTES")
        routes[domain.strip().lower()] = SmtpServer(host, port, tls)
    return routes


def smtp_config(settings: Settings) -> SmtpConfig:
    host, port = host_port(settings.mss_smtp, "RELAIS_MSS_SMTP")
    tls: TlsMode = "implicit" if settings.mss_smtp_tls == "implicit" else "starttls"
    return SmtpConfig(
        server=SmtpServer(host, port, tls),
        routes=smtp_routes(settings.mss_smtp_routes),
        ca_file=settings.mss_ca_file,
        client_cert=settings.mss_client_cert,
        client_key=settings.mss_client_key,
        username=settings.mss_smtp_user or None,
        password=settings.mss_smtp_password or None,
    )


def compose_config(settings: Settings) -> ComposeConfig:
    return ComposeConfig(
        sender=parse_address(settings.mss_sender, ()),
        product_nil=settings.mss_nil,
        read_receipt=settings.mss_read_receipt,
        patient_may_reply=settings.mss_patient_reply,
        domains=settings.mss_domains,
    )


def imap_config(settings: Settings) -> ImapConfig:
    host, port = host_port(settings.mss_imap, "RELAIS_MSS_IMAP")
    if not settings.mss_imap_user or not settings.mss_imap_password:
        raise ConfigError(
            "RELAIS_MSS_IMAP_USER and RELAIS_MSS_IMAP_PASSWORD are needed to watch the mailbox"
        )
    return ImapConfig(
        host=host,
        port=port,
        user=settings.mss_imap_user,
        password=settings.mss_imap_password,
        folders=settings.mss_mailboxes,
        ca_file=settings.mss_ca_file,
        client_cert=settings.mss_client_cert,
        client_key=settings.mss_client_key,
        poll_s=settings.mss_poll_s,
    )
