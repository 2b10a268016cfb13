"""Send mail to MSSanté operators with aiosmtplib: TLS, pooled connections, retries.

One seam, :meth:`SmtpSender.send`. Connections are pooled per operator server
(several recipient domains may share one); every connection verifies the server's
certificate against the configured CA bundle and presents the client certificate
(mutual TLS, as MSSanté requires). STARTTLS (587) or implicit TLS (465) per server.

A 4xx reply, a timeout or a lost connection is retried on a fresh connection with
exponential backoff, up to ``max_attempts``; then :class:`SmtpTransient` is raised
and the caller pauses and tries later. A 5xx reply raises :class:`SmtpPermanent`:
the delivery is REJECTED. aiosmtplib's exceptions never leave this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Final, Literal

import aiosmtplib

from relais.backoff import exponential_backoff
from relais.mail.errors import SmtpError, SmtpPermanent, SmtpTransient
from relais.mail.metrics import MAILS_FAILED, MAILS_SENT, SMTP_SECONDS
from relais.mail.tls import client_context

log = logging.getLogger(__name__)
TlsMode = Literal["starttls", "implicit"]
_ENHANCED: Final = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True)
class SmtpServer:
    """An operator's submission server."""

    host: str
    port: int
    tls: TlsMode = "starttls"

    def __str__(self) -> str:
        return f"{self.host}:{self.port} ({self.tls})"


@dataclass(frozen=True)
class SmtpConfig:
    """How to reach the operators: default server, per-domain routes, TLS material."""

    server: SmtpServer
    routes: Mapping[str, SmtpServer] = field(default_factory=dict)
    ca_file: Path | None = None  # None: the system's CAs (IGC-Santé in production)
    client_cert: Path | None = None
    client_key: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    local_hostname: str | None = None
    timeout_s: float = 30.0
    pool_size: int = 2
    max_attempts: int = 3
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 10.0

    def server_for(self, domain: str) -> SmtpServer:
        """The route of a recipient domain (or of a parent domain), else the default server."""
        labels = domain.lower().split(".")
        for n in range(len(labels) - 1):
            route = self.routes.get(".".join(labels[n:]))
            if route is not None:
                return route
        return self.server


def tls_context(config: SmtpConfig) -> ssl.SSLContext:
    """Verify the server against ``ca_file``; present the client certificate if given."""
    try:
        context = client_context(config.ca_file, config.client_cert, config.client_key)
    except (OSError, ssl.SSLError) as exc:
        raise SmtpError(
            f"TLS material cannot be loaded ({type(exc).__name__}: {exc}); check "
            "RELAIS_MSS_CA_FILE, RELAIS_MSS_CLIENT_CERT and RELAIS_MSS_CLIENT_KEY",
            reason_code="smtp-tls-config",
        ) from None
    return context


@dataclass(frozen=True)
class Sent:
    """The server's acceptance: reply text (e.g. ``2.0.0 Ok: queued as ...``) and tries."""

    reply: str
    attempts: int


Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class _Dsn:
    """What a mail asks of the server's DSN extension (RFC 3461), when the server has it."""

    requested: bool
    envelope_id: str | None
    notify_success: bool

    def options(self, recipient: str) -> tuple[list[str], list[str]]:
        """(MAIL FROM options, RCPT TO options): headers only back, which events, for whom."""
        mail_options = ["RET=HDRS"]
        if self.envelope_id:
            mail_options.append(f"ENVID={_xtext(self.envelope_id)}")
        notify = "SUCCESS,FAILURE,DELAY" if self.notify_success else "FAILURE,DELAY"
        return mail_options, [f"NOTIFY={notify}", f"ORCPT=rfc822;{recipient}"]


class _Pool:
    """Idle connections to one server, at most ``size`` open at once."""

    def __init__(self, size: int) -> None:
        self.idle: list[aiosmtplib.SMTP] = []
        self.slots = asyncio.Semaphore(size)


class SmtpSender:
    """Pooled, TLS-verified SMTP client for the MSSanté operators."""

    def __init__(self, config: SmtpConfig, *, sleep: Sleep = asyncio.sleep) -> None:
        self.config = config
        self._context = tls_context(config)
        self._pools: dict[SmtpServer, _Pool] = {}
        self._sleep = sleep

    async def send(
        self,
        message: EmailMessage,
        *,
        sender: str,
        recipient: str,
        envelope_id: str | None = None,
        request_dsn: bool = True,
        notify_success: bool = True,
    ) -> Sent:
        """Send ``message`` to one recipient; retry transient failures, raise on the rest."""
        domain = recipient.rpartition("@")[2].lower()
        server = self.config.server_for(domain)
        dsn = _Dsn(request_dsn, envelope_id, notify_success)
        delays = self._delays()
        for attempt in range(1, self.config.max_attempts + 1):
            start = time.perf_counter()
            try:
                reply = await self._send_once(server, message, sender, recipient, dsn)
            except SmtpTransient as exc:
                MAILS_FAILED.labels(domain, "transient").inc()
                if attempt == self.config.max_attempts:
                    raise
                log.warning(
                    "SMTP %s to operator %s: transient failure %s (attempt %d), retrying",
                    server,
                    domain,
                    exc.reply,
                    attempt,
                )
                await self._sleep(next(delays))
                continue
            except SmtpPermanent:
                MAILS_FAILED.labels(domain, "permanent").inc()
                raise
            finally:
                SMTP_SECONDS.labels(domain).observe(time.perf_counter() - start)
            MAILS_SENT.labels(domain).inc()
            return Sent(reply, attempt)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _delays(self) -> Iterator[float]:
        return exponential_backoff(self.config.backoff_base_s, self.config.backoff_cap_s)

    async def _send_once(
        self, server: SmtpServer, message: EmailMessage, sender: str, recipient: str, dsn: _Dsn
    ) -> str:
        pool = self._pools.setdefault(server, _Pool(self.config.pool_size))
        async with pool.slots:
            client = await self._checkout(server, pool)
            try:
                mail_options: list[str] = []
                rcpt_options: list[str] = []
                if dsn.requested and client.supports_extension("dsn"):
                    mail_options, rcpt_options = dsn.options(recipient)
                _errors, reply = await client.send_message(
                    message,
                    sender=sender,
                    recipients=[recipient],
                    mail_options=mail_options,
                    rcpt_options=rcpt_options,
                )
            except aiosmtplib.SMTPException as exc:
                client.close()
                raise _translate(exc, server) from None
            except (OSError, ssl.SSLError) as exc:
                client.close()
                raise SmtpTransient(
                    f"SMTP {server}: connection failed ({type(exc).__name__})",
                    reason_code="smtp-connection",
                ) from None
            pool.idle.append(client)
            return reply

    async def _checkout(self, server: SmtpServer, pool: _Pool) -> aiosmtplib.SMTP:
        while pool.idle:
            client = pool.idle.pop()
            if client.is_connected:
                return client
        client = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            use_tls=server.tls == "implicit",
            start_tls=server.tls == "starttls",
            tls_context=self._context,
            timeout=self.config.timeout_s,
            local_hostname=self.config.local_hostname,
        )
        try:
            await client.connect()
            if self.config.username and self.config.password:
                await client.login(self.config.username, self.config.password)
        except aiosmtplib.SMTPException as exc:
            client.close()
            raise _translate(exc, server) from None
        except (OSError, ssl.SSLError) as exc:
            client.close()
            if _certificate_failure(exc):
                raise _tls_refused(server) from None
            raise SmtpTransient(
                f"SMTP {server}: cannot connect ({type(exc).__name__})",
                reason_code="smtp-connection",
            ) from None
        return client

    async def close(self) -> None:
        """QUIT every pooled connection."""
        for pool in self._pools.values():
            while pool.idle:
                client = pool.idle.pop()
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.quit()
                client.close()


def _xtext(value: str) -> str:
    """RFC 3461 xtext: ``+XX`` for '+', '=' and anything outside printable ASCII."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}" for c in value)


def _translate(exc: aiosmtplib.SMTPException, server: SmtpServer) -> SmtpError:
    """aiosmtplib's error as ours; the reply text is not kept (it may quote the address)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
        found = _ENHANCED.match(exc.message or "")
        enhanced = found.group(1) if found else None
        what = (
            "refused the recipient"
            if isinstance(exc, aiosmtplib.SMTPRecipientRefused)
            else (
                "refused the sender"
                if isinstance(exc, aiosmtplib.SMTPSenderRefused)
                else "answered"
            )
        )
        text = f"SMTP {server} {what} with {code}{' ' + enhanced if enhanced else ''}"
        if 500 <= code < 600:
            return SmtpPermanent(text, code=code, enhanced=enhanced)
        return SmtpTransient(text, code=code, enhanced=enhanced)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return SmtpTransient(f"SMTP {server}: timed out", reason_code="smtp-timeout")
    if _certificate_failure(exc):
        return _tls_refused(server)
    return SmtpTransient(f"SMTP {server}: {type(exc).__name__}", reason_code="smtp-connection")


def _certificate_failure(exc: BaseException) -> bool:
    """Whether the server's certificate failed verification, anywhere in the chain."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _tls_refused(server: SmtpServer) -> SmtpTransient:
    return SmtpTransient(
        f"SMTP {server}: the server certificate does not verify against RELAIS_MSS_CA_FILE",
        reason_code="smtp-tls",
    )
