"""The three ways to tell a patient, behind one seam: :meth:`Channels.send`.

* **mssante** — the patient's Mon espace santé mailbox ``<INS>@patient.mssante.fr``,
  from Relais's MSSanté mailbox through the operator's SMTP server: the same server,
  certificate and sender as mss_bridge (``RELAIS_MSS_*``), with ``X-MSS-MES: FIN``;
* **email** — the patient's own address, through an ordinary SMTP relay (TLS);
* **sms** — an SMS gateway's HTTP webhook: ``POST`` JSON ``{"to", "text",
  "message_id"}`` with an ``Idempotency-Key`` header.

Both SMTP channels use :class:`relais.mail.smtp.SmtpSender` (pooled, verified
TLS) with a single attempt: retries belong to the ledger, which keeps the document
pending and tries again with backoff instead of holding the worker. Every message
carries an id derived from its request ids (Message-ID, Idempotency-Key), so a
resend after a crash is recognisable by the receiver.

Errors (foreign ones are translated here, and never quote an address)::

    ChannelError
     ├── ChannelUnavailable   4xx, 429, 5xx from the gateway, timeout, connection: retry later
     └── ChannelRejected      5xx from SMTP, 4xx from the gateway, no usable address: give up
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import aiohttp

from consumers.notify.message import MailHeaders, Notice, mail_message, message_id, sms_text
from consumers.notify.preferences import Channel, Preference
from domain.mssante_address import patient_address
from relais.mail.errors import AddressError, SmtpError, SmtpPermanent
from relais.mail.smtp import SmtpConfig, SmtpSender, SmtpServer


class ChannelError(Exception):
    """A notification did not go out; ``code`` is short and safe to report."""

    retriable = False

    def __init__(self, message: str, *, code: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s


class ChannelUnavailable(ChannelError):
    retriable = True


class ChannelRejected(ChannelError):
    pass


class ChannelConfigError(ValueError):
    """A channel setting Relais cannot use."""


def email_server(value: str, *, setting: str = "RELAIS_NOTIFY_EMAIL_SMTP") -> SmtpServer:
    """``host:port`` (STARTTLS, required) or ``host:port/implicit`` (TLS from the start)."""
    address, _, mode = value.strip().partition("/")
    host, _, port = address.rpartition(":")
    if mode.lower() not in {"", "starttls", "implicit"}:
        raise ChannelConfigError(f"{setting}={value!r}: TLS is /starttls (default) or /implicit")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ChannelConfigError(f"{setting}={value!r}: expected host:port[/implicit]")
    tls: Literal["starttls", "implicit"] = "implicit" if mode.lower() == "implicit" else "starttls"
    return SmtpServer(host, int(port), tls)


@dataclass(frozen=True)
class ChannelConfig:
    """Where each channel sends: the MSSanté operator (mss_bridge's settings), an e-mail
    relay, an SMS gateway; ``ca_file`` verifies the e-mail relay and the gateway."""

    mssante: SmtpConfig
    mssante_sender: str
    email: SmtpConfig
    email_sender: str
    sms_url: str
    ca_file: Path | None = None
    timeout_s: float = 15.0


@dataclass(frozen=True)
class Accepted:
    channel: Channel
    code: str  # the server's reply code: "250" (SMTP) or the gateway's 2xx


class SmsWebhook:
    """POST one SMS to the gateway; 2xx is accepted."""

    def __init__(self, url: str, *, ca_file: Path | None, timeout_s: float) -> None:
        self.url = url
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._connector_ssl = context
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, phone: str, text: str, idempotency_key: str) -> str:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._connector_ssl)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        payload = {"to": phone, "text": text, "message_id": idempotency_key}
        headers = {"Idempotency-Key": idempotency_key}
        try:
            async with self._session.post(self.url, json=payload, headers=headers) as response:
                status = response.status
                retry_after = _seconds(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ChannelUnavailable(
                f"SMS gateway unreachable ({type(exc).__name__})", code="connection"
            ) from None
        if 200 <= status < 300:
            return str(status)
        if status in {408, 425, 429} or status >= 500:
            raise ChannelUnavailable(
                f"SMS gateway answered {status}", code=str(status), retry_after_s=retry_after
            )
        raise ChannelRejected(
            f"SMS gateway refused the message with {status}; check the phone number in the "
            "patient's preferences or the gateway's API",
            code=str(status),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: let the backoff decide


def _one_try(config: SmtpConfig, timeout_s: float) -> SmtpConfig:
    """One attempt per call: the ledger retries, without holding the worker."""
    return replace(config, max_attempts=1, timeout_s=timeout_s)


class Channels:
    """Send one notice to one patient by the channel of their preference."""

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        try:
            self._mssante = SmtpSender(_one_try(config.mssante, config.timeout_s))
        except SmtpError as exc:
            raise ChannelConfigError(str(exc)) from None
        try:
            self._email = SmtpSender(_one_try(config.email, config.timeout_s))
        except SmtpError as exc:
            raise ChannelConfigError(
                f"e-mail relay: {exc}; check RELAIS_NOTIFY_CA_FILE".replace("RELAIS_MSS_", "")
            ) from None
        self._sms = SmsWebhook(config.sms_url, ca_file=config.ca_file, timeout_s=config.timeout_s)

    async def send(
        self,
        preference: Preference,
        notice: Notice,
        *,
        request_ids: list[str],
        ins: str | None,
        now: datetime,
    ) -> Accepted:
        """Send; :class:`ChannelUnavailable` or :class:`ChannelRejected` when it does not go."""
        if preference.channel is Channel.SMS:
            ident = message_id(request_ids, "sms.relais")
            code = await self._sms.send(preference.address or "", sms_text(notice), ident)
            return Accepted(Channel.SMS, code)
        if preference.channel is Channel.EMAIL:
            recipient, smtp = preference.address or "", self._email
            origin = self.config.email_sender
        elif preference.channel is Channel.MSSANTE:
            recipient, smtp = self._patient_mailbox(ins), self._mssante
            origin = self.config.mssante_sender
        else:
            raise ChannelRejected("the patient asked for no notifications", code="OPTED_OUT")
        ident = message_id(request_ids, origin.rpartition("@")[2] or "relais.invalid")
        to_patient_mailbox = preference.channel is Channel.MSSANTE
        headers = MailHeaders(origin, recipient, ident, to_patient_mailbox)
        message = mail_message(notice, headers, date=now)
        return Accepted(preference.channel, await self._mail(smtp, message, recipient))

    @staticmethod
    def _patient_mailbox(ins: str | None) -> str:
        try:
            return str(patient_address(ins or ""))
        except AddressError:
            raise ChannelRejected(
                "the patient has no valid matricule INS for a patient.mssante.fr mailbox; "
                "give them an e-mail or SMS preference",
                code="NO_PATIENT_MAILBOX",
            ) from None

    @staticmethod
    async def _mail(sender: SmtpSender, message: EmailMessage, recipient: str) -> str:
        try:
            await sender.send(
                message, sender=str(message["From"]), recipient=recipient, request_dsn=False
            )
        except SmtpPermanent as exc:
            raise ChannelRejected(str(exc), code=exc.reply) from None
        except SmtpError as exc:
            raise ChannelUnavailable(str(exc), code=exc.reply) from None
        return "250"  # aiosmtplib returns only when the server took the message

    async def close(self) -> None:
        await self._mssante.close()
        await self._email.close()
        await self._sms.close()
