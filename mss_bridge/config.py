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
        sender=parse_address(settings.mss.sender, ()),
        product_nil=settings.mss.nil,
        read_receipt=settings.mss.read_receipt,
        patient_may_reply=settings.mss.patient_reply,
        domains=settings.mss.domains,
    )


def imap_config(settings: Settings) -> ImapConfig:
    host, port = host_port(settings.mss.imap, "RELAIS_MSS_IMAP")
    if not settings.mss.imap_user or not settings.mss.imap_password:
        raise ConfigError(
            "RELAIS_MSS_IMAP_USER and RELAIS_MSS_IMAP_PASSWORD are needed to watch the mailbox"
        )
    return ImapConfig(
        host=host,
        port=port,
        user=settings.mss.imap_user,
        password=settings.mss.imap_password,
        folders=settings.mss.mailboxes,
        ca_file=settings.mss.ca_file,
        client_cert=settings.mss.client_cert,
        client_key=settings.mss.client_key,
        poll_s=settings.mss.poll_s,
    )
