"""What the DMP needs from a ``DeliveryRequest`` (pure): the submission, the patient's id.

The document's bytes come from the document store (the sink fetches them once) or, for a
request from before the store, from its inline envelope.
"""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.dmp.submission import Submission, patient_cx
from domain.document_id import split_id
from domain.visibility import visibility_flags
from domain.xds.metadata import document_entry
from relais.contracts import Record
from relais.document_store.bodies import inline_content
from relais.keyring import Keyring
from relais.patient_traits import open_traits


def submission_of(
    request: Record, keyring: Keyring, now: datetime | None = None, content: bytes | None = None
) -> Submission:
    """Decrypt what the DMP needs from a ``DeliveryRequest``; ``content`` is the document's
    bytes the sink fetched from the store (None: the request carries them inline)."""
    event_id = request["event_id"]
    document = request["document"]
    if content is None:
        content = inline_content(keyring, document, event_id=event_id)
    return Submission(
        unique_id=document["unique_id"],
        patient_id=patient_id_of(request, keyring),
        type_code=document["type_code"],
        content=content,
        metadata=document_entry(
            content, visibility_flags(request.get("release"), now or datetime.now(UTC))
        ),
        parent_unique_id=document["parent_unique_id"] if document["action"] == "REPLACE" else None,
    )


def patient_id_of(request: Record, keyring: Keyring) -> str:
    """The patient's XDS id (INS CX ^NH), from the request's sealed identity."""
    traits = open_traits(request, keyring)
    return patient_cx(str(traits["ins"]), str(traits["ins_oid"]))


def xds_ids(unique_id: str) -> tuple[str, ...]:
    """The XDS uniqueIds a document id may be filed under: itself, and ``root^extension``."""
    root, extension = split_id(unique_id)
    return (unique_id,) if extension is None else (unique_id, f"{root}^{extension}")
