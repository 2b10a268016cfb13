"""The outbound MSSanté mail of one document to one recipient (pure).

Rules (STANDARDS.md §5, Référentiel #2 "Clients de messageries sécurisées de santé"):

- one patient per message; attachment ``IHE_XDM.ZIP`` plus the PDF copy when the
  document carries one;
- subject ``XDM/1.0/DDM+<libellé> <NOM> <prénom> <date de naissance>`` (ECO.2.1.3):
  the document type label, the patient's birth name, first given name and birth date
  (``DD/MM/YYYY``), and nothing else;
- ``X-MSS-CODECDA`` the CDA ``code`` of each document, comma-separated (ECO.2.4.1);
  ``X-MSS-INS`` ``O``/``N``: a qualified INS is present (ECO.2.4.2); ``X-MSS-NIL`` the
  product reference, on every message (ECO.2.4.3); ``X-MSS-MES: FIN`` on patient mail
  when the patient may not reply (ECO.2.2.8);
- RFC 5322 ``Message-ID`` (see :mod:`mss_bridge.tracking`), ``Date``, and
  ``Disposition-Notification-To`` (RFC 8098) when a read receipt is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Final

from domain.mssante_address import MailAddress
from mss_bridge.xdm_package import PACKAGE_NAME
from relais.mail.errors import MailFormatError

SUBJECT_PREFIX: Final = "XDM/1.0/DDM+"
BODY_PROFESSIONAL: Final = (
    "Bonjour,\n\nVous trouverez ci-joint un document de santé transmis par messagerie "
    "sécurisée de santé (pièce jointe IHE_XDM.ZIP).\n\nCe message a été envoyé "
    "automatiquement.\n"
)
BODY_PATIENT: Final = (
    "Bonjour,\n\nUn professionnel de santé vous a adressé un document dans votre "
    "messagerie Mon espace santé.\n\nCe message a été envoyé automatiquement.\n"
)


@dataclass(frozen=True)
class PatientHeading:
    """What the subject rule needs of the patient: birth name, first given name, birth date."""

    birth_name: str
    first_given: str
    birth_date: str  # YYYYMMDD (HL7 / CDA)


@dataclass(frozen=True)
class OutboundMail:
    """Everything one outbound mail is made of."""

    sender: MailAddress
    recipient: MailAddress
    message_id: str
    date: datetime
    type_label: str
    cda_codes: Sequence[str]
    patient: PatientHeading
    ins_qualified: bool
    product_nil: str
    package: bytes
    pdf: bytes | None = None
    patient_may_reply: bool = False
    read_receipt: bool = False
    reply_to: MailAddress | None = None
    body: str | None = None


def subject(type_label: str, patient: PatientHeading) -> str:
    """``XDM/1.0/DDM+<libellé> <NOM> <prénom> <date de naissance>`` (ECO.2.1.3)."""
    return (
        f"{SUBJECT_PREFIX}{_one_line(type_label)} {_one_line(patient.birth_name).upper()} "
        f"{_one_line(patient.first_given)} {_french_date(patient.birth_date)}"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _french_date(value: str) -> str:
    digits = value[:8]
    if len(digits) != 8 or not digits.isdigit():
        raise MailFormatError(
            "the patient's birth date is not YYYYMMDD; the MSSanté subject needs the full date"
        )
    return f"{digits[6:8]}/{digits[4:6]}/{digits[0:4]}"


def _headed(
    mail: OutboundMail, subject_text: str, *, reply_to: MailAddress | None = None
) -> EmailMessage:
    """A message with the headers every MSSanté mail of Relais carries (ECO.2.1.3, ECO.2.4)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = str(mail.sender)
    message["To"] = str(mail.recipient)
    if reply_to is not None:
        message["Reply-To"] = str(reply_to)
    message["Subject"] = subject_text
    message["Date"] = format_datetime(mail.date)
    message["Message-ID"] = mail.message_id
    message["X-MSS-CODECDA"] = ",".join(mail.cda_codes)
    message["X-MSS-INS"] = "O" if mail.ins_qualified else "N"
    message["X-MSS-NIL"] = mail.product_nil
    if mail.recipient.is_patient and not mail.patient_may_reply:
        message["X-MSS-MES"] = "FIN"
    return message


def build_mail(mail: OutboundMail) -> EmailMessage:
    """The MIME message: text body, ``IHE_XDM.ZIP`` and the optional PDF copy."""
    if not mail.product_nil.strip():
        raise MailFormatError("X-MSS-NIL is empty: set RELAIS_MSS_NIL to the product reference")
    if not mail.cda_codes:
        raise MailFormatError("X-MSS-CODECDA needs the CDA code of at least one document")
    message = _headed(mail, subject(mail.type_label, mail.patient), reply_to=mail.reply_to)
    if mail.read_receipt:
        message["Disposition-Notification-To"] = str(mail.sender)
    default = BODY_PATIENT if mail.recipient.is_patient else BODY_PROFESSIONAL
    message.set_content(mail.body or default, charset="utf-8")
    message.add_attachment(
        mail.package, maintype="application", subtype="zip", filename=PACKAGE_NAME
    )
    if mail.pdf is not None:
        message.add_attachment(
            mail.pdf, maintype="application", subtype="pdf", filename="DOCUMENT.PDF"
        )
    return message


WITHDRAWAL_BODY: Final = (
    "Bonjour,\n\n"
    "Le document « {label} » qui vous a été adressé par messagerie sécurisée de santé "
    "a été annulé par son émetteur. Merci de ne plus en tenir compte.\n\n"
    "Ce message a été envoyé automatiquement.\n"
)


def build_withdrawal(mail: OutboundMail) -> EmailMessage:
    """The notice that a document sent earlier was withdrawn (deleted by its producer).

    Same headers as the document's mail (subject prefixed ``Annulation :``), a plain
    French body naming the document type, and no attachment: the document is gone.
    """
    if not mail.product_nil.strip():
        raise MailFormatError("X-MSS-NIL is empty: set RELAIS_MSS_NIL to the product reference")
    message = _headed(mail, "Annulation : " + subject(mail.type_label, mail.patient))
    message.set_content(WITHDRAWAL_BODY.format(label=_one_line(mail.type_label)), charset="utf-8")
    return message
