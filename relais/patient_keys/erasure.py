"""Erase a patient: their stored bodies, then their data key, and the audit event saying so.

Bodies go first: a run cut short between the two is simply run again (both steps are
idempotent; bodies are found by the patient's key name, whatever its version). Once the
data key is gone, everything sealed under it — sealed fields on the topics, dead letters,
the route's remembered recipients, any copy of a body — is ciphertext no one can open.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from relais.audit import audit_event
from relais.contracts import Record
from relais.document_store.stores import DocumentStore
from relais.envelope import PATIENT_KEY_PREFIX
from relais.patient_keys.vault import PatientVault

__all__ = ["Erased", "erase_patient", "erasure_audit", "erasure_requested_audit"]


@dataclass(frozen=True)
class Erased:
    """What one erasure did: the patient (pseudonym), the key destroyed, bodies removed."""

    patient_key: str
    key_id: str | None  # None: the patient had no data key (never seen, or erased before)
    bodies: int


async def erase_patient(vault: PatientVault, store: DocumentStore, patient_key: str) -> Erased:
    """Remove the patient's bodies from ``store``, then destroy their data key."""
    name = vault.name_of(patient_key)
    bodies = await store.erase_sealed_with(f"{PATIENT_KEY_PREFIX}{name}.")
    return Erased(patient_key, vault.erase(patient_key), bodies)


def erasure_requested_audit(
    patient_key: str, key_id: str | None, *, operator: str, now: datetime
) -> Record:
    """The ``AuditEvent`` written *before* an erasure: who asked, which patient, and the key
    about to be destroyed (a run cut short after the erasure still has it on record)."""
    key = f"data key {key_id}" if key_id else "no data key (none left)"
    detail = f"operator {operator} erases patient {patient_key[:16]}: {key}"
    return _patient_audit("patient-erasure-requested", detail, now)


def erasure_audit(erased: Erased, *, operator: str, now: datetime) -> Record:
    """The ``AuditEvent`` of an erasure: who, which patient (pseudonym prefix), what went."""
    key = f"data key {erased.key_id} destroyed" if erased.key_id else "no data key (none left)"
    detail = (
        f"operator {operator} erased patient {erased.patient_key[:16]}: {key}, "
        f"{erased.bodies} stored bodies removed"
    )
    return _patient_audit("patient-erased", detail, now)


def _patient_audit(outcome: str, detail: str, now: datetime) -> Record:
    return audit_event(
        event_id=str(uuid.uuid4()),
        component="patient-cli",
        action="OTHER",
        outcome=outcome,
        now=now,
        detail=detail,
    )
