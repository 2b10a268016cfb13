"""An absorbed patient's DMP consent, sent to the patient it was merged into (pure).

When an identity is merged into another (the first ADT with the INS of a patient known by
its IPP, an A40), the absorbed key's state says so (``merged_into``, ``redirect``: the
REDIRECT record carrying the survivor). Its word reaches the survivor as a RETRY identity
event on the survivor's key carrying it (``patient.dmp_consent``), which
:func:`streams.identity.consent.moved` combines there by ``as_of``:

* :func:`hand_over`: the word kept under the absorbed key, **once** (the state is marked
  ``consent_handed``): a later A08 naming the IPP again does not send the frozen word
  back after the survivor's word changed;
* :func:`forwarded`: a word an ADT gives later under the absorbed key (an ADT naming only
  the old IPP): the survivor's word, not the merged-away record's.

The patient's identity stays sealed: it is re-sealed for the new event id, never opened
to the bus.
"""

from __future__ import annotations

from relais.contracts import Codec, Record
from relais.deadletter import derived_id
from relais.envelope import Envelope, open_envelope, seal
from relais.keyring import Keyring
from relais.topics import IDENTITY_EVENTS
from streams.identity.consent import Consent, absorbed_consent, adt_word
from streams.identity.state import PatientState
from streams.stage import Output


def hand_over(keyring: Keyring, redirect: Record, state: PatientState) -> list[Output]:
    """The absorbed patient's kept word sent to the survivor that ``redirect`` names (a RETRY
    carrying it); nothing when it has none or already handed it over."""
    consent = absorbed_consent(state)
    if consent is None or state.consent_handed:
        return []
    event_id = derived_id(redirect["event_id"], "consent", redirect["target_key"])
    return [_carrying(keyring, redirect, event_id, consent)]


def forwarded(keyring: Keyring, codec: Codec, record: Record, state: PatientState) -> list[Output]:
    """The word an ADT (``record``) gives under a key merged into another (``state``), sent to
    the survivor, with the ADT's sender and trigger for its audit; nothing without a ZFA."""
    said = adt_word(record)
    if said is None or state.redirect is None:
        return []
    _, redirect = codec.decode(state.redirect, expected="IdentityUpdate")
    event_id = derived_id(record["event_id"], "consent-forward", redirect["target_key"])
    origin = {"source": record["source"], "trigger": record["trigger"]}
    return [_carrying(keyring, {**redirect, **origin}, event_id, said)]


def resealed(keyring: Keyring, patient: Record, from_event: str, to_event: str) -> Record:
    """``patient`` with its identity sealed again for another event id (same patient key)."""
    plain = open_envelope(
        keyring,
        Envelope.from_record(patient["identity"]),
        event_id=from_event,
        purpose="identity",
    )
    sealing = keyring.for_patient(patient["patient_key"])
    sealed = seal(sealing, plain, event_id=to_event, purpose="identity")
    return {**patient, "identity": sealed.to_record()}


def _carrying(keyring: Keyring, redirect: Record, event_id: str, consent: Consent) -> Output:
    """A RETRY on the survivor's key (``redirect``'s patient) carrying ``consent``."""
    patient = resealed(keyring, redirect["patient"], redirect["event_id"], event_id)
    carry = {**redirect, "event_id": event_id, "kind": "RETRY", "target_key": None}
    carry["merged"] = None
    carry["patient"] = {**patient, "dmp_consent": dict(consent)}
    return Output(IDENTITY_EVENTS, "IdentityUpdate", carry, str(patient["patient_key"]).encode())
