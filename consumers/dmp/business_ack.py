"""The BusinessAck record of a delivery outcome, when the producer asked for one (pure).

The producer asks with its MetaDMPMSS flags (STANDARDS.md §2): ACK_RECEPTION for
the DMP reception (ZAM^Z01), the MSSanté delivery (Z02); ACK_LECTURE_MSS for the
read receipt (Z03). The ZAM goes back to the sending application and facility of
the original message (MSH-3/4) and names its MSH-10; on a refusal it carries the
destination's error code. No patient data: the ZAM holds codes and ids only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from producers.hl7.business_ack import BusinessAck, build_business_ack
from relais.contracts import Record
from relais.deadletter import derived_id

#: The flag that asks for each kind of acknowledgement.
ASKED_BY: Final = {"Z01": "ACK_RECEPTION", "Z02": "ACK_RECEPTION", "Z03": "ACK_LECTURE_MSS"}
ERROR_LABELS: Final = {"Z01": "Refus du DMP", "Z02": "Echec de remise MSSanté", "Z03": "Erreur"}


def asked(request: Record, kind: str) -> bool:
    return bool((request.get("flags") or {}).get(ASKED_BY[kind], False))


def business_ack(
    request: Record,
    *,
    kind: str,
    accepted: bool,
    now: datetime,
    code: str | None = None,
    party_address: str | None = None,
    text: str | None = None,
    ack_key: str | None = None,
    label: str | None = None,
) -> Record:
    """The ``BusinessAck`` record (with its ZAM) of one request; ``text`` is ERR-8 (what to do),
    ``label`` ERR-5.2 (None: the kind's), ``ack_key`` gives a second ZAM of the request (another
    event refused) its own id."""
    source = request["source"]
    parts = (request["request_id"], "business-ack", kind)
    ack_id = derived_id(*parts, ack_key) if ack_key else derived_id(*parts)
    error = None if accepted else (code or "ERREUR", label or ERROR_LABELS[kind])
    ack = BusinessAck(
        kind=kind,
        accepted=accepted,
        original_control_id=source["message_control_id"],
        producer_application=source["application"],
        producer_facility=source["facility"],
        party_address=party_address,
        error=error,
        text=None if accepted else text,
    )
    message = build_business_ack(ack, control_id=ack_id.replace("-", "")[:20], now=now)
    return {
        "ack_id": ack_id,
        "event_id": request["event_id"],
        "request_id": request["request_id"],
        "kind": kind,
        "accepted": accepted,
        **_addressed(source),
        "message": message,
        "at": now,
    }


def _addressed(source: Record) -> Record:
    """Whom the ZAM goes to: the producer's MSH-4 and MSH-3, and its MSH-10."""
    return {
        "facility": source["facility"],
        "application": source["application"],
        "original_control_id": source["message_control_id"],
    }
