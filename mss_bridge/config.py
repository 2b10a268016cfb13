"""mss_bridge's typed configuration, built once from :class:`relais.settings.Settings`.

The SMTP client's own (server, routes, TLS material) is :func:`relais.mail.config.smtp_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from domain.mssante_address import parse_address
from mss_bridge.compose import ComposeConfig
from relais.mail.config import host_port
from relais.mail.errors import ConfigError
from relais.settings import Settings


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
