"""What a received mail holds, checked (pure): acknowledgements or documents.

A mail in Relais's mailbox is either a report (DSN or MDN, :mod:`acknowledgements`)
or a document mail from a professional. Documents come as an ``IHE_XDM.ZIP`` package
(verified against its METADATA.XML: hash and size of every file, uniqueId and
patientId equal to the CDA's) or as plain CDA R2 attachments. Each CDA must be
well-formed, a ``ClinicalDocument`` with an id and a type code, and name the patient
by a well-formed INS under an INS authority (STANDARDS.md §1). A PDF travels only as
the copy of a CDA: alone it names no patient, and the mail is refused.

Anything else raises :class:`MailFormatError`, :class:`PackageError` or
:class:`VerificationError` with the reason; the shell quarantines the mail,
dead-letters it and answers the sender.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default
from email.utils import parseaddr
from typing import Final

from lxml import etree

from domain.document_id import HL7V3, cda_id_of, safe_parser
from domain.ins import INS_OIDS, check_matricule
from mss_bridge.acknowledgements import Acknowledgement, read_acknowledgement, report_type
from mss_bridge.tracking import Signer
from mss_bridge.xdm_package import PACKAGE_NAME, UnpackedDocument, unpack_package
from producers.document_files import cda_patient
from producers.hl7.message import PatientIdentity
from producers.submission import Delivery, DocumentInput, Origin, document_submitted
from relais.contracts import Record
from relais.deadletter import derived_id
from relais.keyring import Keyring
from relais.mail.errors import MailFormatError, PackageError, VerificationError

MAX_MAIL_BYTES: Final = 64 << 20
_NS: Final = {"v3": HL7V3}


@dataclass(frozen=True)
class ReceivedDocument:
    """One verified CDA from a mail, and the patient it names."""

    content: bytes
    unique_id: str
    type_code: str
    type_label: str
    patient: PatientIdentity


@dataclass(frozen=True)
class InboundMail:
    """A parsed mail: its acknowledgements, or its documents (never both)."""

    message: EmailMessage
    message_id: str
    sender_domain: str
    acknowledgements: tuple[Acknowledgement, ...] = ()
    documents: tuple[ReceivedDocument, ...] = ()


def parse_mail(raw: bytes) -> EmailMessage:
    if len(raw) > MAX_MAIL_BYTES:
        raise MailFormatError(f"the mail is larger than {MAX_MAIL_BYTES} bytes")
    message = message_from_bytes(raw, policy=default)
    if not isinstance(message, EmailMessage):  # pragma: no cover - policy.default makes them
        raise MailFormatError("the mail cannot be parsed as RFC 5322")
    return message


def mail_identity(message: Message, raw: bytes) -> str:
    """The Message-ID, or a digest of the bytes when the sender gave none."""
    value = str(message.get("Message-ID", "")).strip()
    return value or f"<sha256.{hashlib.sha256(raw).hexdigest()}@unknown>"


def is_report(message: Message) -> bool:
    """DSNs, MDNs and auto-submitted mail: never answered (no mail loops)."""
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    sender = parseaddr(str(message.get("From", "")))[1].lower()
    return (
        report_type(message) is not None
        or auto != "no"
        or sender.startswith(("mailer-daemon@", "postmaster@"))
    )


def read_mail(raw: bytes, sign: Signer) -> InboundMail:
    """Acknowledgements or verified documents; raises with the reason otherwise.

    ``sign`` authenticates the Message-IDs that acknowledgements name
    (:func:`mss_bridge.tracking.mail_signer`)."""
    message = parse_mail(raw)
    sender = parseaddr(str(message.get("From", "")))[1]
    mail_id, sender_domain = mail_identity(message, raw), sender.rpartition("@")[2].lower()
    if report_type(message) is not None:
        acknowledgements = tuple(read_acknowledgement(message, sign))
        return InboundMail(message, mail_id, sender_domain, acknowledgements=acknowledgements)
    documents = tuple(extract_documents(message))
    return InboundMail(message, mail_id, sender_domain, documents=documents)


def extract_documents(message: EmailMessage) -> list[ReceivedDocument]:
    """Every CDA of the XDM packages and plain CDA attachments, verified."""
    found: list[ReceivedDocument] = []
    pdfs = 0
    for part in message.iter_attachments():
        name = (part.get_filename() or "").upper()
        kind = part.get_content_type()
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name.endswith(".ZIP") or kind in {"application/zip", "application/x-zip-compressed"}:
            found += [_from_package(d) for d in unpack_package(data)]
        elif kind in {"text/xml", "application/xml", "application/hl7-v3+xml"} or name.endswith(
            ".XML"
        ):
            root = _cda_root(data, name or "attachment")
            found.append(_document(data, root))
        elif kind == "application/pdf" or name.endswith(".PDF"):
            pdfs += 1
    if not found:
        if pdfs:
            raise MailFormatError(
                "the mail carries a PDF without its CDA: a lone PDF names no patient (INS); "
                f"send the document as {PACKAGE_NAME} or as a CDA R2",
                reason_code="mail-no-cda",
            )
        raise MailFormatError(
            f"the mail carries no document ({PACKAGE_NAME} or CDA R2 attachment)",
            reason_code="mail-no-document",
        )
    return found


def _cda_root(data: bytes, where: str) -> etree._Element:
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise VerificationError(
            f"{where}: the CDA is not well-formed XML (line {exc.lineno})",
            reason_code="cda-not-well-formed",
        ) from None
    if cda_id_of(root) is None:
        raise VerificationError(
            f"{where}: not a CDA R2 ClinicalDocument with an id", reason_code="not-a-cda"
        )
    return root


def _document(data: bytes, root: etree._Element) -> ReceivedDocument:
    code = root.find("v3:code", _NS)
    if code is None or not code.get("code"):
        raise VerificationError(
            "the CDA has no ClinicalDocument/code (document type)", reason_code="cda-no-type"
        )
    patient = cda_patient(root, None)
    if not patient.ins or not patient.ins_oid:
        raise VerificationError(
            "the CDA names no patient by an INS (recordTarget/patientRole/id under an INS OID)",
            reason_code="ins-missing",
        )
    problems = check_matricule(patient.ins, patient.ins_oid)
    if problems or patient.ins_oid not in INS_OIDS:
        raise VerificationError(
            "the CDA's INS is malformed: " + ", ".join(p.name for p in problems),
            reason_code="ins-malformed",
        )
    title = root.find("v3:title", _NS)
    label = (
        code.get("displayName")
        or (title.text if title is not None else None)
        or code.get("code", "")
    )
    return ReceivedDocument(
        content=data,
        unique_id=str(cda_id_of(root)),
        type_code=str(code.get("code")),
        type_label=str(label),
        patient=patient,
    )


def _from_package(found: UnpackedDocument) -> ReceivedDocument:
    document = _document(found.content, _cda_root(found.content, found.path))
    if found.metadata.unique_id != document.unique_id:
        raise PackageError(
            f"{found.path}: METADATA.XML uniqueId differs from the CDA's id",
            reason_code="xdm-metadata-mismatch",
        )
    ins = found.metadata.patient_id.split("^", 1)[0]
    if ins != document.patient.ins:
        raise PackageError(
            f"{found.path}: METADATA.XML patientId is not the CDA's INS",
            reason_code="xdm-metadata-mismatch",
        )
    return document


def submissions(
    mail: InboundMail, keyring: Keyring, now: datetime, *, mailboxes: tuple[str, ...] = ()
) -> list[Record]:
    """One ``DocumentSubmitted`` per document; ids derived from the mail (replays match).

    ``mailboxes`` (the addresses that received the mail) travel sealed as the record's
    recipients: the LPS delivery finds the DPI by them (:mod:`mss_bridge.lps_context`)."""
    records = []
    for index, document in enumerate(mail.documents):
        event_id = derived_id("mss-inbound", mail.message_id, index)
        record = document_submitted(
            DocumentInput(
                content=document.content,
                media_type="text/xml",
                type_code=document.type_code,
                type_label=document.type_label,
                unique_id=document.unique_id,
            ),
            patient=document.patient,
            origin=Origin(
                facility=mail.sender_domain or "unknown",
                application="MSSANTE",
                control_id=mail.message_id[:200],
                message_type="MSSANTE^XDM",
            ),
            delivery=Delivery(recipients=mailboxes),
            sector="CITY",  # the builder knows the HL7 producers' sectors; set below
            keyring=keyring,
            now=now,
            event_id=event_id,
        )
        record["sector"] = "MSSANTE"
        records.append(record)
    return records
