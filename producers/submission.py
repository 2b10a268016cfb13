"""Build ``DocumentSubmitted`` and ``IdentityUpdate`` records (pure).

Whatever the input (an HL7 v2 message, a CDA file, a PDF with its sidecar),
it is first described with the typed inputs below, then sealed here: identity
traits and mail recipients become AES-256-GCM envelopes bound to each record's
event id, the document content a reference to the document store (made by the
caller's sealer, :mod:`relais.document_store.bodies`); what stays readable is what
routing needs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from domain.document_id import cda_id
from domain.lab_results import LAB_REPORT_MEDIA, encode_lab_report
from producers.hl7.consent import consent_record
from producers.hl7.message import EmbeddedDocument, Hl7Message, PatientIdentity
from relais.contracts import Record
from relais.document_store.bodies import ContentSealer, inline_sealer
from relais.envelope import seal
from relais.keyring import Keyring, pseudonymise

ACTIONS = {"F": "SUBMIT", "C": "REPLACE", "D": "DELETE"}
SECTORS = ("HOSPITAL", "LAB", "RADIOLOGY", "CITY")


@dataclass(frozen=True)
class Author:
    """The sending professional (PRT SB): person id, names, organisation id."""

    person_id: str
    family: str | None = None
    given: str | None = None
    organisation_id: str | None = None


@dataclass(frozen=True)
class Origin:
    """Who sent it: facility, application, their message id and type, the professional."""

    facility: str
    application: str
    control_id: str
    message_type: str
    author: Author | None = None


@dataclass(frozen=True)
class DocumentInput:
    """One document and the metadata routing needs."""

    content: bytes
    media_type: str  # text/xml (CDA R2) or application/pdf
    type_code: str  # LOINC document type (JDV_J07)
    type_label: str
    unique_id: str
    action: str = "SUBMIT"  # SUBMIT | REPLACE | DELETE
    parent_unique_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """What the producer asks for: MetaDMPMSS flags and MSSanté recipients."""

    flags: Mapping[str, bool] = field(default_factory=dict)
    recipients: tuple[str, ...] = ()


def _new_id() -> str:
    return str(uuid.uuid4())


def local_key(keyring: Keyring, facility: str, authority: str, local_id: str) -> str:
    """Pseudonym of a patient known only by a local id: scoped to the sending structure."""
    return pseudonymise(keyring, f"{facility}|{authority}|{local_id}", domain="local-patient")


def patient_key_of(keyring: Keyring, patient: PatientIdentity, facility: str) -> str:
    """Pseudonym of the patient: of the INS when present, else of the first local id."""
    if patient.ins:
        return pseudonymise(keyring, f"{patient.ins_oid}|{patient.ins}")
    local_id, authority = patient.local_ids[0] if patient.local_ids else ("", "")
    return local_key(keyring, facility, authority, local_id)


def patient_key(keyring: Keyring, message: Hl7Message) -> str:
    return patient_key_of(keyring, message.patient, message.sending_facility)


def _source(origin: Origin, now: datetime) -> Record:
    return {
        "facility": origin.facility,
        "application": origin.application,
        "message_control_id": origin.control_id,
        "message_type": origin.message_type,
        "received_at": now,
        "author": dataclasses.asdict(origin.author) if origin.author else None,
    }


def _patient(patient: PatientIdentity, origin: Origin, keyring: Keyring, event_id: str) -> Record:
    """The record's patient: its pseudonym, and its traits sealed under its data key."""
    identity = json.dumps(dataclasses.asdict(patient), sort_keys=True).encode()
    key = patient_key_of(keyring, patient, origin.facility)
    sealed = seal(keyring.for_patient(key), identity, event_id=event_id, purpose="identity")
    return {
        "patient_key": key,
        "identity": sealed.to_record(),
        "ins_oid": patient.ins_oid,
        "reliability": patient.reliability,
        "dmp_consent": None,  # an ADT's ZFA (identity_update); the identity stage stamps documents
    }


def _recipients(keyring: Keyring, delivery: Delivery, event_id: str) -> Record | None:
    if not delivery.recipients:
        return None
    plain = json.dumps(list(delivery.recipients)).encode()
    return seal(keyring, plain, event_id=event_id, purpose="recipient").to_record()


def document_submitted(
    document: DocumentInput,
    *,
    patient: PatientIdentity,
    origin: Origin,
    delivery: Delivery,
    sector: str,
    keyring: Keyring,
    now: datetime,
    event_id: str,
    sealer: ContentSealer | None = None,
) -> Record:
    """The ``DocumentSubmitted`` record of one document; ``sealer`` makes its ``content``
    (default: sealed inline; the publisher's writes it once to the document store)."""
    if sector not in SECTORS:
        raise ValueError(f"unknown sector {sector!r}; expected one of {', '.join(SECTORS)}")
    seal_content = sealer or inline_sealer(keyring)
    key = patient_key_of(keyring, patient, origin.facility)
    recipients = _recipients(keyring.for_patient(key), delivery, event_id)
    return {
        "event_id": event_id,
        "submitted_at": now,
        "sector": sector,
        "source": _source(origin, now),
        "patient": _patient(patient, origin, keyring, event_id),
        "document": {
            "unique_id": document.unique_id,
            "type_code": document.type_code,
            "type_label": document.type_label,
            "media_type": document.media_type,
            "action": document.action,
            "parent_unique_id": document.parent_unique_id,
            "content_sha256": hashlib.sha256(document.content).hexdigest(),
            "size_bytes": len(document.content),
            "content": seal_content(document.content, document.unique_id, event_id, key),
        },
        "hints": {"flags": dict(delivery.flags), "recipients": recipients},
    }


def origin_of(message: Hl7Message) -> Origin:
    sender = next((p for p in message.participants if p.role == "SB" and p.person_id), None)
    author = None
    if sender is not None and sender.person_id:
        author = Author(sender.person_id, sender.family, sender.given, sender.organisation_id)
    return Origin(
        message.sending_facility,
        message.sending_application,
        message.control_id,
        message.message_type,
        author,
    )


def submissions(
    message: Hl7Message,
    *,
    sector: str,
    keyring: Keyring,
    now: datetime,
    new_id: Callable[[], str] = _new_id,
    sealer: ContentSealer | None = None,
) -> list[Record]:
    """One ``DocumentSubmitted`` record per document an HL7 message carries."""
    origin = origin_of(message)
    delivery = Delivery(
        flags=message.flags,
        recipients=tuple(p.address for p in message.participants if p.role == "RCT" and p.address),
    )
    return [
        document_submitted(
            DocumentInput(
                content=_content(message, document),
                media_type=_media(message, document),
                type_code=document.type_code,
                type_label=document.type_label,
                unique_id=unique_id(message, document),
                action=ACTIONS.get(document.result_status, "SUBMIT"),
                parent_unique_id=message.parent_document_id,
            ),
            patient=message.patient,
            origin=origin,
            delivery=delivery,
            sector=sector,
            keyring=keyring,
            now=now,
            event_id=new_id(),
            sealer=sealer,
        )
        for document in message.documents
    ]


def _builds_a_lab_report(message: Hl7Message, document: EmbeddedDocument) -> bool:
    """An ORU with structured results and the report's PDF: transcode builds the CR-BIO N3."""
    return bool(message.results) and document.media_type == "application/pdf"


def _content(message: Hl7Message, document: EmbeddedDocument) -> bytes:
    if _builds_a_lab_report(message, document):
        return encode_lab_report(message.results, document.content)
    return document.content


def _media(message: Hl7Message, document: EmbeddedDocument) -> str:
    return LAB_REPORT_MEDIA if _builds_a_lab_report(message, document) else document.media_type


def identity_update(
    message: Hl7Message,
    *,
    sector: str,
    keyring: Keyring,
    now: datetime,
    new_id: Callable[[], str] = _new_id,
) -> Record:
    """An ``IdentityUpdate`` record for an ADT message (A01/A04/A08 update, A40 merge)."""
    event_id = new_id()
    merged = None
    if message.merged_ids:
        plain = json.dumps([list(pair) for pair in message.merged_ids]).encode()
        sealing = keyring.for_patient(patient_key(keyring, message))
        merged = seal(sealing, plain, event_id=event_id, purpose="merged").to_record()
    origin = origin_of(message)
    return {
        "event_id": event_id,
        "received_at": now,
        "sector": sector,
        "source": _source(origin, now),
        "trigger": message.message_type.split("^")[-1],
        "kind": "MERGE" if message.merged_ids else "UPDATE",
        "patient": {
            **_patient(message.patient, origin, keyring, event_id),
            "dmp_consent": consent_record(
                message.dmp_consent, as_of=message.timestamp, source_event_id=event_id
            ),
        },
        "merged": merged,
        "target_key": None,
    }


def unique_id(message: Hl7Message, document: EmbeddedDocument) -> str:
    """The id a sink deduplicates on: CDA id, TXA-12, OBR-3 + OBX-1, or sender + MSH-10 + OBX-1."""
    if document.media_type == "text/xml":
        found = cda_id(document.content)
        if found:
            return found
    if message.message_type.startswith("MDM") and message.document_unique_id:
        return message.document_unique_id  # TXA-12: one document per MDM
    if message.document_unique_id:  # ORU: OBR-3 names the order, OBX-1 the document in it
        return f"{message.document_unique_id}.{document.set_id}"
    return f"{message.sending_facility}.{message.control_id}.{document.set_id}"
