"""Turn a parsed HL7 v2 message into ``DocumentSubmitted`` records (pure).

Identity traits, document content and mail recipients are sealed here, bound
to each record's event id; what stays readable is what routing needs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime

from producers.document_id import unique_id
from producers.hl7_message import Hl7Message
from relais.contracts import Record
from relais.envelope import seal
from relais.keyring import Keyring, pseudonymise

ACTIONS = {"F": "SUBMIT", "C": "REPLACE", "D": "DELETE"}
SECTORS = ("HOSPITAL", "LAB", "RADIOLOGY", "CITY")


def patient_key(keyring: Keyring, message: Hl7Message) -> str:
    """Pseudonym of the patient: of the INS when present, else of the first local id."""
    patient = message.patient
    if patient.ins:
        return pseudonymise(keyring, f"{patient.ins_oid}|{patient.ins}")
    local = patient.local_ids[0] if patient.local_ids else ("", message.sending_facility)
    return pseudonymise(keyring, f"{local[1]}|{local[0]}", domain="local-patient")


def identity_update(
    message: Hl7Message,
    *,
    sector: str,
    keyring: Keyring,
    now: datetime,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> Record:
    """An ``IdentityUpdate`` record for an ADT message (A01/A04/A08 update, A40 merge)."""
    event_id = new_id()
    merged = None
    if message.merged_ids:
        plain = json.dumps([list(pair) for pair in message.merged_ids]).encode()
        merged = seal(keyring, plain, event_id=event_id, purpose="merged").to_record()
    return {
        "event_id": event_id,
        "received_at": now,
        "sector": sector,
        "source": _source(message, now),
        "trigger": message.message_type.split("^")[-1],
        "kind": "MERGE" if message.merged_ids else "UPDATE",
        "patient": _patient(message, keyring, event_id),
        "merged": merged,
    }


def _source(message: Hl7Message, now: datetime) -> Record:
    return {
        "facility": message.sending_facility,
        "application": message.sending_application,
        "message_control_id": message.control_id,
        "message_type": message.message_type,
        "received_at": now,
    }


def _patient(message: Hl7Message, keyring: Keyring, event_id: str) -> Record:
    identity = json.dumps(dataclasses.asdict(message.patient), sort_keys=True).encode()
    return {
        "patient_key": patient_key(keyring, message),
        "identity": seal(keyring, identity, event_id=event_id, purpose="identity").to_record(),
        "ins_oid": message.patient.ins_oid,
        "reliability": message.patient.reliability,
    }


def submissions(
    message: Hl7Message,
    *,
    sector: str,
    keyring: Keyring,
    now: datetime,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> list[Record]:
    """One ``DocumentSubmitted`` record per document the message carries."""
    if sector not in SECTORS:
        raise ValueError(f"unknown sector {sector!r}; expected one of {', '.join(SECTORS)}")
    recipients = [p.address for p in message.participants if p.role == "RCT" and p.address]
    records: list[Record] = []
    for document in message.documents:
        event_id = new_id()
        records.append(
            {
                "event_id": event_id,
                "submitted_at": now,
                "sector": sector,
                "source": _source(message, now),
                "patient": _patient(message, keyring, event_id),
                "document": {
                    "unique_id": unique_id(message, document),
                    "type_code": document.type_code,
                    "type_label": document.type_label,
                    "media_type": document.media_type,
                    "action": ACTIONS.get(document.result_status, "SUBMIT"),
                    "parent_unique_id": message.parent_document_id,
                    "content_sha256": hashlib.sha256(document.content).hexdigest(),
                    "size_bytes": len(document.content),
                    "content": seal(
                        keyring, document.content, event_id=event_id, purpose="content"
                    ).to_record(),
                },
                "hints": {
                    "flags": dict(message.flags),
                    "recipients": seal(
                        keyring,
                        json.dumps(recipients).encode(),
                        event_id=event_id,
                        purpose="recipient",
                    ).to_record()
                    if recipients
                    else None,
                },
            }
        )
    return records
