"""Answer a received mail: the MDN, or the plain error mail when no MDN was asked for.

Used by the mailbox worker (a mail that cannot be taken in) and by the LPS delivery (the
DPI took the mail's documents, or refused one). The reply's Message-ID is derived from
the received mail's, so a replay answers with the same id. A reply that cannot go is
logged (hashed mail id, reason code) and not retried: the mail itself is handled.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from domain.mssante_address import MailAddress
from mss_bridge.acknowledgements import (
    MdnRequest,
    build_error_mail,
    build_mdn,
    error_reply_to,
    mdn_recipient,
)
from mss_bridge.metrics import REPLIES_SENT
from relais.deadletter import RELAIS_IDS
from relais.mail.errors import AcknowledgementError, SmtpError
from relais.mail.smtp import SmtpSender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboundSetup:
    mailbox: MailAddress  # Relais's own address: From of its MDNs
    reporting_ua: str  # "<host>; Relais <version>"


async def send_reply(
    sender: SmtpSender,
    setup: InboundSetup,
    original: EmailMessage,
    mail_id: str,
    *,
    error: tuple[str, str] | None,
    now: datetime,
) -> str | None:
    """Send the MDN (``processed`` or its error), else an error mail; the kind sent, or None."""
    request = MdnRequest(original, setup.mailbox, setup.reporting_ua, now)
    message_id = f"<relais-reply.{uuid.uuid5(RELAIS_IDS, mail_id)}@{setup.mailbox.domain}>"
    try:
        if mdn_recipient(original) is not None:
            reply, kind = build_mdn(request, message_id=message_id, error=error), "mdn"
        elif error is not None and error_reply_to(original) is not None:
            reply, kind = (
                build_error_mail(request, message_id=message_id, error=error),
                "error-mail",
            )
        else:
            return None
        await sender.send(
            reply, sender=str(setup.mailbox), recipient=str(reply["To"]), request_dsn=False
        )
    except (AcknowledgementError, SmtpError) as exc:
        log.warning("reply to mail %s not sent: %s", hash_id(mail_id), exc.reason_code)
        return None
    REPLIES_SENT.labels(kind).inc()
    return kind


def hash_id(mail_id: str) -> str:
    """A mail id fit for logs: its Message-ID may name the patient's mailbox domain or more."""
    return hashlib.sha256(mail_id.encode()).hexdigest()[:16]
