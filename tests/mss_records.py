"""MSSanté delivery requests as the route stage makes them, for the mss_bridge tests."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from lxml import etree

from domain.document_id import safe_parser
from producers.document_files import cda_patient
from producers.submission import Delivery, DocumentInput, Origin, document_submitted
from relais.contracts import Record
from relais.envelope import seal
from relais.keyring import Keyring
from tests.shared_data import shared

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
LAB_CDA = "BIO-CR-BIO_2024.01_TSH_1.xml"  # CR-BIO N3 with its PDF copy
LETTER_CDA = "LDL-SES_2022.01.xml"  # lettre de liaison, no PDF


def sample_cda(name: str = LAB_CDA) -> bytes:
    return shared("cda", name).read_bytes()


def mss_request(
    keyring: Keyring,
    recipient: str,
    *,
    cda: bytes | None = None,
    event_id: str | None = None,
    control_id: str = "MSG-0001",
    recipient_plain: bytes | None = None,
    flags: dict[str, bool] | None = None,
) -> Record:
    """A ``DeliveryRequest`` to MSSANTE for ``cda`` (the lab report by default)."""
    content = cda if cda is not None else sample_cda()
    root = etree.fromstring(content, safe_parser())
    unique_id = root.find("{urn:hl7-org:v3}id").get("root")
    code = root.find("{urn:hl7-org:v3}code")
    event = event_id or str(uuid.uuid4())
    submitted = document_submitted(
        DocumentInput(
            content=content,
            media_type="text/xml",
            type_code=code.get("code"),
            type_label=code.get("displayName"),
            unique_id=unique_id,
        ),
        patient=cda_patient(root, "VALI"),
        origin=Origin("LABO-X", "SIL-Y", control_id, "ORU^R01"),
        delivery=Delivery(),
        sector="LAB",
        keyring=keyring,
        now=NOW,
        event_id=event,
    )
    plain = recipient_plain if recipient_plain is not None else recipient.encode()
    return {
        "event_id": event,
        "request_id": hashlib.sha256(
            f"{unique_id}|SUBMIT|MSSANTE|{recipient}".encode()
        ).hexdigest()[:32],
        "destination": "MSSANTE",
        "requested_at": NOW,
        "submitted_at": NOW,
        "sector": "LAB",
        "source": submitted["source"],
        "patient": submitted["patient"],
        "document": submitted["document"],
        "recipient": seal(keyring, plain, event_id=event, purpose="recipient").to_record(),
        "release": None,
        "flags": dict(flags or {}),
    }
