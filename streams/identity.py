"""The patient's INS and traits, opened from a record's identity envelope.

The identity stage itself is :mod:`streams.identity_worker` (shell),
:mod:`streams.identity_processor` (per-patient holds, releases, merges) and
:mod:`streams.identity_rules` (the decision); later stages and sinks use
:func:`open_traits` when they need the INS.
"""

from __future__ import annotations

import json
from typing import Any

from relais.contracts import Record
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from streams.stage import StageContext, StageFailure


def read_traits(record: Record, ctx: StageContext) -> dict[str, Any]:
    return open_traits(record, ctx.keyring)


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
