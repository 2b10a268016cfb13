"""The SMTP client's configuration, built once from :class:`relais.settings.Settings`."""

from __future__ import annotations

from relais.mail.errors import ConfigError
from relais.mail.smtp import SmtpConfig, SmtpServer, TlsMode
from relais.settings import Settings


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
    host, port = host_port(settings.mss.smtp, "RELAIS_MSS_SMTP")
    tls: TlsMode = "implicit" if settings.mss.smtp_tls == "implicit" else "starttls"
    return SmtpConfig(
        server=SmtpServer(host, port, tls),
        routes=smtp_routes(settings.mss.smtp_routes),
        ca_file=settings.mss.ca_file,
        client_cert=settings.mss.client_cert,
        client_key=settings.mss.client_key,
        username=settings.mss.smtp_user or None,
        password=settings.mss.smtp_password or None,
    )
