"""The words of a patient notification (pure): French, short, and free of health data.

A notification only says that something is waiting in Mon espace santé. Its text is
built from two facts and nothing else: how many documents, and whether they are new
or updated versions. The functions here never receive a delivery request, so no
document type, title, date, author, facility or patient name *can* reach the text:
the sending facility alone (an oncology centre, a fertility clinic) would already
tell something about the patient's health. The patient's identity stays out as well
(no name in the greeting): a phone or a shared mailbox may be read by someone else.

:func:`mail_message` wraps a :class:`Notice` in an RFC 5322 message for the MSSanté
and e-mail channels; :func:`sms_text` is the SMS body (GSM 03.38 characters, one
segment of at most 160).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from enum import StrEnum
from typing import Final

from relais.deadletter import derived_id

PORTAL: Final = "https://www.monespacesante.fr"
SMS_LIMIT: Final = 160
# GSM 03.38 basic character set: what one 160-character SMS segment may hold.
GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


class Kind(StrEnum):
    """What changed for the patient: a new document, or a new version of one."""

    NEW = "NEW"
    UPDATED = "UPDATED"


@dataclass(frozen=True)
class Notice:
    """One notification: ``count`` documents of the given kinds (at least one)."""

    count: int
    kinds: frozenset[Kind]

    def __post_init__(self) -> None:
        if self.count < 1 or not self.kinds:
            raise ValueError("a notice is about at least one document of a known kind")

    @property
    def subject(self) -> str:
        if self.count == 1 and self.kinds == {Kind.UPDATED}:
            return "Un document a été mis à jour dans Mon espace santé"
        if self.count == 1:
            return "Nouveau document disponible dans Mon espace santé"
        return "Nouveaux documents disponibles dans Mon espace santé"

    @property
    def headline(self) -> str:
        if self.count == 1 and self.kinds == {Kind.UPDATED}:
            return "Un document de votre profil Mon espace santé a été mis à jour."
        if self.count == 1:
            return "Un nouveau document est disponible dans votre profil Mon espace santé."
        if self.kinds == {Kind.UPDATED}:
            return f"{self.count} documents de votre profil Mon espace santé ont été mis à jour."
        return (
            f"{self.count} nouveaux documents sont disponibles dans votre profil Mon espace santé."
        )


def notice_of(kinds: list[Kind]) -> Notice:
    """The notice for documents of these kinds (one entry per document)."""
    return Notice(len(kinds), frozenset(kinds))


def mail_text(notice: Notice) -> str:
    them = "le" if notice.count == 1 else "les"
    return (
        "Bonjour,\n\n"
        f"{notice.headline}\n\n"
        f"Pour {them} consulter, connectez-vous à Mon espace santé : {PORTAL}\n"
        "ou ouvrez l'application Mon espace santé.\n\n"
        "Ce message automatique ne contient aucune information médicale. "
        "Merci de ne pas y répondre.\n"
    )


def sms_text(notice: Notice) -> str:
    """One SMS segment (GSM characters, at most 160)."""
    if notice.count == 1 and notice.kinds == {Kind.UPDATED}:
        what = "un document a été mis à jour"
    elif notice.count == 1:
        what = "un nouveau document est disponible"
    else:
        what = f"{notice.count} documents sont disponibles"
    them = "le" if notice.count == 1 else "les"
    text = (
        f"Mon espace santé : {what}. Consultez-{them} sur monespacesante.fr ou dans l'application."
    )
    if len(text) > SMS_LIMIT or not set(text) <= GSM_BASIC:
        raise ValueError("SMS text leaves one GSM segment: shorten the template")  # a bug here
    return text


def message_id(request_ids: list[str], domain: str) -> str:
    """The same Message-ID for the same documents: a receiver can drop a resend."""
    return f"<{derived_id('notify', *sorted(request_ids))}@{domain}>"


@dataclass(frozen=True)
class MailHeaders:
    sender: str
    recipient: str
    message_id: str
    patient_mailbox: bool  # to <INS>@patient.mssante.fr: forbid replies (X-MSS-MES: FIN)


def mail_message(notice: Notice, headers: MailHeaders, *, date: datetime) -> EmailMessage:
    """The RFC 5322 notification message (plain UTF-8 text, no attachment)."""
    message = EmailMessage()
    message["From"] = headers.sender
    message["To"] = headers.recipient
    message["Subject"] = notice.subject
    message["Message-ID"] = headers.message_id
    message["Date"] = format_datetime(date)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    if headers.patient_mailbox:
        message["X-MSS-MES"] = "FIN"  # STANDARDS.md §5: the patient may not reply
    message.set_content(mail_text(notice), charset="utf-8")
    return message
