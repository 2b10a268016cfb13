"""From a sealed MSSanté ``DeliveryRequest`` to the mail that carries it (pure).

Opens the three envelopes the mail needs (the CDA, the patient's traits, the
recipient address), derives the XDS metadata from the CDA
(:func:`domain.xds.metadata.document_entry`, with the release decision's
visibility), packs ``IHE_XDM.ZIP``, finds the PDF copy the CDA carries (N1 body or
an N3 ``observationMedia``), and builds the mail with its tracking Message-ID.
The producer's flags decide the receipts: ``ACK_LECTURE_MSS`` a read receipt
(Disposition-Notification-To; default RELAIS_MSS_READ_RECEIPT), ``ACK_RECEPTION`` a
DSN on success too (default: yes).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Final

from lxml import etree

from domain.document_id import HL7V3, safe_parser
from domain.ins import INS_OIDS
from domain.mssante_address import MailAddress, parse_address
from domain.visibility import visibility_flags
from domain.xds.metadata import DocumentEntry, MetadataError, document_entry, xds_time
from mss_bridge.mail_message import OutboundMail, PatientHeading, build_mail, build_withdrawal
from mss_bridge.tracking import MailRef, envelope_id, mail_signer, message_id, recipient_tag
from mss_bridge.xdm_metadata import SubmissionSet
from mss_bridge.xdm_package import XdmDocument, build_package
from relais.contracts import Record
from relais.deadletter import RELAIS_IDS
from relais.document_store.bodies import inline_content
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from relais.mail.errors import AddressError, MailFormatError, MssError
from relais.patient_traits import open_traits

# The sending system's OID in XDM submission sets: 2.25 (UUID-derived) under Relais's id.
SOURCE_OID: Final = f"2.25.{RELAIS_IDS.int}"
_PDF_PATHS: Final = (
    "v3:component/v3:nonXMLBody/v3:text[@mediaType='application/pdf']",
    ".//v3:observationMedia/v3:value[@mediaType='application/pdf']",
)


@dataclass(frozen=True)
class ComposeConfig:
    """What the operator configures: sender mailbox, product reference, receipts, domains."""

    sender: MailAddress
    product_nil: str
    read_receipt: bool = True
    patient_may_reply: bool = False
    domains: tuple[str, ...] = ("mssante.fr",)


@dataclass(frozen=True)
class ComposedMail:
    """The mail and what the sender and the status records need to know of it."""

    message: EmailMessage
    recipient: MailAddress
    ref: MailRef
    envelope_id: str | None
    delivery_receipt: bool = True  # ACK_RECEPTION: ask the DSN for success too


def recipient_of(request: Record, keyring: Keyring, domains: tuple[str, ...]) -> MailAddress:
    """The sealed recipient address: plain text, or a JSON list holding one address."""
    sealed = request.get("recipient")
    if not sealed:
        raise AddressError(
            "the MSSanté delivery request has no recipient", reason_code="no-recipient"
        )
    plain = open_envelope(
        keyring, Envelope.from_record(sealed), event_id=request["event_id"], purpose="recipient"
    ).decode("utf-8", errors="replace")
    text = plain.strip()
    if text.startswith(("[", '"')):
        try:
            value = json.loads(text)
        except ValueError:
            raise AddressError("the sealed recipient is neither an address nor JSON") from None
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
            text = value[0]
        elif isinstance(value, str):
            text = value
        else:
            raise AddressError("the sealed recipient must name exactly one address per request")
    return parse_address(text, domains)


def pdf_copy(cda: bytes) -> bytes | None:
    """The PDF the CDA carries (N1 body, or the N3 copy in an observationMedia), if any."""
    try:
        root = etree.fromstring(cda, safe_parser())
    except etree.XMLSyntaxError:
        return None
    for path in _PDF_PATHS:
        node = root.find(path, {"v3": HL7V3})
        if node is not None and node.text:
            try:
                pdf = base64.b64decode("".join(node.text.split()), validate=True)
            except (binascii.Error, ValueError):
                continue
            if pdf.startswith(b"%PDF-"):
                return pdf
    return None


def ins_qualified(traits: dict[str, Any]) -> bool:
    """A qualified INS present: matricule, INS OID and the traits ECO.2.4.2 lists."""
    needed = ("ins", "birth_name", "given_names", "birth_date", "sex")
    return traits.get("ins_oid") in INS_OIDS and all(traits.get(k) for k in needed)


def patient_heading(traits: dict[str, Any]) -> PatientHeading:
    """What the subject names of the patient: birth name, first given name, birth date."""
    given = str(traits.get("given_names") or "").split()
    return PatientHeading(
        birth_name=str(traits.get("birth_name") or ""),
        first_given=given[0] if given else "",
        birth_date=str(traits.get("birth_date") or ""),
    )


def mail_ref(request: Record) -> MailRef:
    source = request["source"]
    submitted: datetime = request["submitted_at"]
    return MailRef(
        event_id=request["event_id"],
        request_id=request["request_id"],
        document_unique_id=request["document"]["unique_id"],
        submitted_at_ms=int(submitted.timestamp() * 1000),
        facility=source["facility"],
        application=source["application"],
        control_id=source["message_control_id"],
    )


def compose(
    request: Record,
    keyring: Keyring,
    config: ComposeConfig,
    now: datetime,
    content: bytes | None = None,
) -> ComposedMail:
    """The mail for one ``DeliveryRequest``; :class:`MssError` says why it cannot be made.

    ``content`` is the CDA the sink fetched from the document store (None: inline)."""
    _require_mssante(request)
    recipient = recipient_of(request, keyring, config.domains)
    event_id = request["event_id"]
    document = request["document"]
    if document["action"] == "DELETE":
        return _withdrawal(request, keyring, config, now, recipient)
    cda = content if content is not None else inline_content(keyring, document, event_id=event_id)
    traits = open_traits(request, keyring)
    entry = _entry_of(cda, request, now)
    ref = mail_ref(request)
    flags: dict[str, bool] = dict(request.get("flags") or {})  # the producer's MetaDMPMSS flags
    tag = recipient_tag(ref.request_id, str(recipient))
    package = _package(cda, entry, _submission_set(entry, ref, tag, now), config)
    mail = OutboundMail(
        sender=config.sender,
        recipient=recipient,
        message_id=message_id(ref, config.sender.domain, tag, mail_signer(keyring)),
        date=now,
        type_label=document["type_label"],
        cda_codes=[entry.type_code.code],
        patient=patient_heading(traits),
        ins_qualified=ins_qualified(traits),
        product_nil=config.product_nil,
        package=package,
        pdf=pdf_copy(cda),
        patient_may_reply=config.patient_may_reply,
        read_receipt=flags.get("ACK_LECTURE_MSS", config.read_receipt),
    )
    receipt = flags.get("ACK_RECEPTION", flags.get("ACK_RECEPTION_MSS", True))
    return ComposedMail(build_mail(mail), recipient, ref, envelope_id(ref), receipt)


def _require_mssante(request: Record) -> None:
    """Only MSSanté requests reach this sender; anything else is a routing mistake."""
    if request["destination"] != "MSSANTE":
        raise MailFormatError(
            f"a {request['destination']} request reached the MSSanté sender",
            reason_code="wrong-destination",
        )


def _entry_of(cda: bytes, request: Record, now: datetime) -> DocumentEntry:
    """The XDS document entry of the CDA, with the release decision's visibility."""
    try:
        return document_entry(cda, visibility_flags(request.get("release"), now))
    except MetadataError as exc:
        raise MailFormatError(
            f"XDS metadata for the XDM package: {exc}", reason_code="xdm-metadata"
        ) from None


def _package(
    cda: bytes, entry: DocumentEntry, submission: SubmissionSet, config: ComposeConfig
) -> bytes:
    """``IHE_XDM.ZIP`` holding the one document (its README names the sender and product)."""
    return build_package(
        [XdmDocument(cda, entry)],
        submission,
        sender=str(config.sender),
        product=config.product_nil,
    )


def _withdrawal(
    request: Record, keyring: Keyring, config: ComposeConfig, now: datetime, recipient: MailAddress
) -> ComposedMail:
    """A deletion cannot recall a mail: the recipient is told the document was withdrawn."""
    traits = open_traits(request, keyring)
    ref = mail_ref(request)
    tag = recipient_tag(ref.request_id, str(recipient))
    mail = OutboundMail(
        sender=config.sender,
        recipient=recipient,
        message_id=message_id(ref, config.sender.domain, tag, mail_signer(keyring)),
        date=now,
        type_label=request["document"]["type_label"],
        cda_codes=[request["document"]["type_code"]],
        patient=patient_heading(traits),
        ins_qualified=ins_qualified(traits),
        product_nil=config.product_nil,
        package=b"",
        pdf=None,
        patient_may_reply=config.patient_may_reply,
        read_receipt=False,
    )
    return ComposedMail(build_withdrawal(mail), recipient, ref, envelope_id(ref), False)


def _submission_set(entry: DocumentEntry, ref: MailRef, tag: str, now: datetime) -> SubmissionSet:
    # Same request and recipient: same submission set id (a re-sent mail is recognisable).
    ident = uuid.uuid5(RELAIS_IDS, f"xdm|{ref.request_id}|{tag}")
    return SubmissionSet(
        unique_id=f"2.25.{ident.int}",
        source_id=SOURCE_OID,
        submission_time=xds_time(now.strftime("%Y%m%d%H%M%S+0000")),
        title=entry.title,
        content_type=entry.type_code,
    )


__all__ = ["ComposeConfig", "ComposedMail", "MssError", "compose", "pdf_copy", "recipient_of"]
