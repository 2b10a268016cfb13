"""The patient's INS and traits, opened from a record's identity envelope.

Later stages and sinks use :func:`open_traits` when they need the INS; the identity
stage itself is :mod:`streams.identity`.
"""

from __future__ import annotations

import json
from typing import Any

from relais.contracts import Record
from relais.deadletter import StageFailure
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring


def open_traits(record: Record, keyring: Keyring) -> dict[str, Any]:
    """The patient's INS and traits, decrypted from the record's identity envelope."""
    patient = record["patient"]
    plain = open_envelope(
        keyring,
        Envelope.from_record(patient["identity"]),
        event_id=record["event_id"],
        purpose="identity",
    )
    try:
        traits = json.loads(plain)
    except ValueError:
        raise StageFailure(
            "identity envelope is not JSON", reason_code="identity-unreadable"
        ) from None
    if not isinstance(traits, dict):
        raise StageFailure("identity envelope is not an object", reason_code="identity-unreadable")
    return traits
