"""Delivery status notifications and disposition notifications (pure).

- :func:`read_acknowledgement` reads a DSN (RFC 3464, ``multipart/report;
  report-type=delivery-status``) or an MDN (RFC 8098, ``report-type=
  disposition-notification``) and links it to the delivery it answers through the
  original Message-ID (:mod:`mss_bridge.tracking`): a DSN returns the original headers
  (Relais sends with ``RET=HDRS``), an MDN names ``Original-Message-ID``.
- :func:`build_mdn` writes the MDN Relais sends back for a received mail, and
  :func:`build_error_mail` the plain error mail that replaces it when the sender asked
  for no receipt (STANDARDS.md §5, LPS volet: ``processed`` or
  ``processed/Error: <code>^<label>``, subject ``[KO Intégration système !][code] …``).

Nothing read here is copied into a status detail except status codes: a diagnostic
text may quote the recipient's address, which for a patient is the INS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, Message
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from typing import Final, Literal

from domain.mssante_address import MailAddress
from mss_bridge.tracking import MailRef, Signer, read_message_id
from relais.mail.errors import AcknowledgementError

Kind = Literal["DSN", "MDN"]
Outcome = Literal["DELIVERED", "RETRYING", "REJECTED"]
Receipt = Literal["Z02", "Z03"]

_STATUS: Final = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY: Final = re.compile(r"\b([245]\d\d)\b")
_DSN_ACTIONS: Final[dict[str, Outcome]] = {
    "failed": "REJECTED",
    "delayed": "RETRYING",
    "delivered": "DELIVERED",
    "relayed": "DELIVERED",
    "expanded": "DELIVERED",
}
# RFC 3463 subjects and details most seen in DSNs, to explain a code without its text.
_STATUS_TEXT: Final = {
    "1.1": "bad destination mailbox address",
    "1.2": "bad destination system address",
    "1.6": "destination mailbox has moved",
    "2.1": "mailbox disabled",
    "2.2": "mailbox full",
    "3.4": "message too big for system",
    "4.4": "unable to route",
    "4.7": "delivery time expired",
    "7.1": "delivery not authorized, message refused",
}
MDN_TYPE: Final = "disposition-notification"
DSN_TYPE: Final = "delivery-status"


@dataclass(frozen=True)
class Acknowledgement:
    """One acknowledgement of one delivery, ready for a status record and a ZAM."""

    kind: Kind
    ref: MailRef
    recipient: str | None  # the final recipient's address (never logged)
    outcome: Outcome
    code: str  # "DSN 5.1.1", "MDN displayed", "MDN processed/error"
    detail: str  # safe to log and publish: codes and their meaning only
    receipt: Receipt | None  # which HL7 business ack it makes: Z02 delivery, Z03 read
    error_code: str | None = None  # SMTP status or MDN error code, for ZAM ERR-5


def report_type(message: Message) -> str | None:
    """``delivery-status`` / ``disposition-notification`` for a report, else None."""
    if message.get_content_type() != "multipart/report":
        return None
    value = message.get_param("report-type")
    return str(value).lower() if isinstance(value, str) else None


def read_acknowledgement(message: Message, sign: Signer) -> list[Acknowledgement]:
    """The acknowledgements a DSN or MDN carries (one per recipient for a DSN); ``sign``
    authenticates the Message-ID of the mail they answer."""
    kind = report_type(message)
    if kind == DSN_TYPE:
        return _read_dsn(message, sign)
    if kind == MDN_TYPE:
        return [_read_mdn(message, sign)]
    raise AcknowledgementError("the mail is not a multipart/report DSN or MDN")


def _parts(message: Message) -> list[Message]:
    payload = message.get_payload()
    if not isinstance(payload, list):
        raise AcknowledgementError("the report has no MIME parts")
    return [p for p in payload if isinstance(p, Message)]


def _part(message: Message, content_type: str) -> Message | None:
    return next((p for p in _parts(message) if p.get_content_type() == content_type), None)


def _original_ref(message: Message, hint: str | None, sign: Signer) -> MailRef:
    candidates = [hint]
    returned = _part(message, "text/rfc822-headers") or _part(message, "message/rfc822")
    if returned is not None:
        inner = returned.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            candidates.append(inner[0].get("Message-ID"))
        elif isinstance(inner, str):
            found = re.search(r"(?im)^Message-ID:\s*(<[^>\r\n]+>)", inner)
            candidates.append(found.group(1) if found else None)
    for candidate in candidates:
        ref = read_message_id(candidate, sign)
        if ref is not None:
            return ref
    raise AcknowledgementError(
        "the report does not name a Message-ID Relais wrote: it answers a mail Relais did "
        "not send, or the operator stripped the original headers",
        reason_code="ack-unlinked",
    )


def _field_address(value: str | None) -> str | None:
    if not value:
        return None
    _type, _, address = value.partition(";")
    return parseaddr(address.strip() or value.strip())[1] or None


def _read_dsn(message: Message, sign: Signer) -> list[Acknowledgement]:
    status_part = _part(message, "message/delivery-status")
    if status_part is None:
        raise AcknowledgementError("the DSN has no message/delivery-status part")
    payload = status_part.get_payload()
    blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    if len(blocks) < 2:
        raise AcknowledgementError("the DSN has no per-recipient fields")
    ref = _original_ref(message, None, sign)
    acks = []
    for block in blocks[1:]:
        action = str(block.get("Action", "")).strip().lower()
        outcome = _DSN_ACTIONS.get(action)
        if outcome is None:
            raise AcknowledgementError(f"the DSN has an unknown Action {action!r}")
        status = _STATUS.search(str(block.get("Status", "")))
        enhanced = (
            ".".join(status.groups()) if status else ("2.0.0" if outcome == "DELIVERED" else "")
        )
        reply = _REPLY.search(str(block.get("Diagnostic-Code", "")))
        code = f"DSN {enhanced}".strip() if enhanced else f"DSN {action}"
        acks.append(
            Acknowledgement(
                kind="DSN",
                ref=ref,
                recipient=_field_address(block.get("Final-Recipient")),
                outcome=outcome,
                code=code,
                detail=_dsn_detail(action, enhanced, reply.group(1) if reply else None),
                receipt="Z02" if outcome != "RETRYING" else None,
                error_code=enhanced if outcome == "REJECTED" else None,
            )
        )
    return acks


def _dsn_detail(action: str, enhanced: str, reply: str | None) -> str:
    meaning = _STATUS_TEXT.get(enhanced.split(".", 1)[-1], "") if enhanced else ""
    text = f"the recipient's mail system reports the mail {action}"
    if enhanced:
        text += f" (status {enhanced}{', ' + meaning if meaning else ''}"
        text += f", SMTP {reply})" if reply else ")"
    return text


def _read_mdn(message: Message, sign: Signer) -> Acknowledgement:
    part = _part(message, "message/disposition-notification")
    if part is None:
        raise AcknowledgementError("the MDN has no message/disposition-notification part")
    payload = part.get_payload()
    fields = payload[0] if isinstance(payload, list) and payload else part
    if not isinstance(fields, Message):
        raise AcknowledgementError("the MDN's disposition fields cannot be read")
    disposition = str(fields.get("Disposition", ""))
    if not disposition:
        raise AcknowledgementError("the MDN has no Disposition field")
    mode, _, rest = disposition.partition(";")
    kind_text, _, error_text = rest.strip().partition("/")
    kind = kind_text.strip().lower()
    if kind not in {"displayed", "processed", "deleted", "dispatched"}:
        raise AcknowledgementError(f"the MDN has an unknown disposition type {kind!r}")
    error = error_text.strip().lower().startswith("error")
    error_code = _mdn_error_code(error_text) if error else None
    ref = _original_ref(message, fields.get("Original-Message-ID"), sign)
    outcome: Outcome = "REJECTED" if error else "DELIVERED"
    detail = (
        f"the recipient's software reports {kind} with an error"
        + (f" (code {error_code})" if error_code else "")
        if error
        else f"the recipient's software reports the document {kind} ({mode.strip()})"
    )
    return Acknowledgement(
        kind="MDN",
        ref=ref,
        recipient=_field_address(fields.get("Final-Recipient")),
        outcome=outcome,
        code=f"MDN {kind}{'/error' if error else ''}",
        detail=detail,
        receipt="Z03" if kind in {"displayed", "processed"} else None,
        error_code=error_code,
    )


def _mdn_error_code(text: str) -> str | None:
    # "Error: <code>^<label>" (LPS volet); keep only a short code-like token.
    _, _, value = text.partition(":")
    code = value.strip().split("^", 1)[0].strip()
    return code if re.fullmatch(r"[A-Za-z0-9._-]{1,40}", code) else None


@dataclass(frozen=True)
class MdnRequest:
    """What an MDN answers: the received mail and the mailbox that received it."""

    original: EmailMessage
    final_recipient: MailAddress
    reporting_ua: str  # "relais.example; Relais 0.1"
    now: datetime


def mdn_recipient(original: Message) -> str | None:
    """Where the MDN goes: ``Disposition-Notification-To``, if the sender asked for one."""
    value = original.get("Disposition-Notification-To")
    return parseaddr(str(value))[1] or None if value else None


def error_reply_to(original: Message) -> str | None:
    """Where a plain error mail goes: Reply-To, else From."""
    for header in ("Reply-To", "From"):
        value = original.get(header)
        if value and parseaddr(str(value))[1]:
            return parseaddr(str(value))[1]
    return None


def build_mdn(
    request: MdnRequest, *, message_id: str, error: tuple[str, str] | None = None
) -> EmailMessage:
    """The RFC 8098 MDN: ``processed``, or ``processed/Error: <code>^<label>``."""
    to = mdn_recipient(request.original)
    if to is None:
        raise AcknowledgementError("the mail asks for no MDN (no Disposition-Notification-To)")
    report = _reply(request, to, message_id, error)
    original_id = request.original.get("Message-ID")
    report.make_mixed()
    report.set_type("multipart/report")
    report.set_param("report-type", MDN_TYPE)
    human = EmailMessage(policy=SMTP)
    human.set_content(_human_text(error), charset="utf-8")
    report.attach(human)
    disposition = "automatic-action/MDN-sent-automatically; processed"
    if error:
        disposition += f"/Error: {error[0]}^{error[1]}"
    lines = [
        f"Reporting-UA: {request.reporting_ua}",
        f"Original-Recipient: rfc822;{request.final_recipient}",
        f"Final-Recipient: rfc822;{request.final_recipient}",
    ]
    if original_id:
        lines.append(f"Original-Message-ID: {original_id}")
    lines.append(f"Disposition: {disposition}")
    fields = EmailMessage(policy=SMTP)
    fields.set_payload("\r\n".join(lines) + "\r\n")
    fields["Content-Type"] = "message/disposition-notification"
    report.attach(fields)
    returned = EmailMessage(policy=SMTP)
    returned.set_content(request.original)
    report.attach(returned)
    return report


def build_error_mail(
    request: MdnRequest, *, message_id: str, error: tuple[str, str]
) -> EmailMessage:
    """The plain RFC 5322 error mail sent instead of an MDN when none was asked for."""
    to = error_reply_to(request.original)
    if to is None:
        raise AcknowledgementError("the received mail names no sender to answer (From/Reply-To)")
    mail = _reply(request, to, message_id, error)
    mail.set_content(_human_text(error), charset="utf-8")
    return mail


def _reply(
    request: MdnRequest, to: str, message_id: str, error: tuple[str, str] | None
) -> EmailMessage:
    """The headers of an answer to the received mail: from its recipient, in reply to it."""
    reply = EmailMessage(policy=SMTP)
    reply["From"] = str(request.final_recipient)
    reply["To"] = to
    reply["Subject"] = _reply_subject(str(request.original.get("Subject", "")), error)
    reply["Date"] = format_datetime(request.now)
    reply["Message-ID"] = message_id
    original_id = request.original.get("Message-ID")
    if original_id:
        reply["In-Reply-To"] = str(original_id)
        reply["References"] = str(original_id)
    return reply


def _reply_subject(original_subject: str, error: tuple[str, str] | None) -> str:
    subject = " ".join(original_subject.split())
    if error:
        return f"[KO Intégration système !][{error[0]}] {subject}".strip()
    return f"[OK Intégration système] {subject}".strip()


def _human_text(error: tuple[str, str] | None) -> str:
    if error is None:
        return "Le message a été reçu et intégré par le système destinataire.\n"
    return (
        "Le message n'a pas pu être intégré par le système destinataire.\n"
        f"Code : {error[0]}\nMotif : {error[1]}\n"
    )
