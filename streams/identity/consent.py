"""The patient's DMP consent in the identity stage: kept, audited, stamped (pure).

An ADT (A01/A04/A08) whose ZFA the door read carries a ``DmpConsent`` record on
its patient (:func:`producers.hl7.consent.consent_record`). The stage keeps the
patient's latest word in its state, writes a ``CONSENT_CHANGED`` audit event
when the DMP status or the patient's word changes, publishes it then on
``identity.consent`` (``PatientConsent``, compacted, by patient key: the DMP sink
checks it when it files, :mod:`consumers.dmp.consent_table`), and stamps the latest
on every document it forwards (``patient.dmp_consent`` of ``IdentityQualified``, carried
as is to the DMP delivery request, where :mod:`consumers.dmp.consent` reads it).

Order: ADTs reach the stage in the order of their partition (one patient, one
partition); within it, an ADT whose MSH-7 is older than the word kept does not
override it (a sender's late replay of an old ADT never lifts a newer objection);
an MSH-7 without its offset is Europe/Paris time, and a word without a readable MSH-7
never wins over one that has one. Each part of ZFA stands alone: a
ZFA without a DMP status keeps the kept status, and "NA" (not asked) never erases
a word the patient gave (IO, INO, IC, INC): only a new word replaces it. An
objection is lifted only by the structure (MSH-4) that collected it; a closed DMP
is the DMP's state, told by any. When an identity is merged into another (first
INS, A40), its word is handed to the survivor once (:mod:`streams.identity.handover`)
and combined by ``as_of`` (:func:`combined`), keeping the structure that collected it
(only an ADT's own ZFA gets its sender, :func:`adt_word`). The audit names the patient's
pseudonymous key and the event ids, never the INS or names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Final

from domain.hl7_time import Hl7TimeError, paris_instant
from producers.hl7.consent import OBJECTED
from relais.audit_records import consent_changed
from relais.contracts import Record
from relais.topics import AUDIT, IDENTITY_CONSENT
from streams.identity.state import PatientState
from streams.stage import Output

Consent = Mapping[str, str | None]

#: the fields whose change is a change of the patient's status (dates alone are not)
MEANING: Final = ("dmp_status", "closed_date", "feeding", "consultation")
_NOT_ASKED: Final = "NA"


def consented(
    state: PatientState, record: Record, now: datetime
) -> tuple[PatientState, list[Output]]:
    """The state after an identity event, and the audit event when the consent changed."""
    said = adt_word(record)
    if not said:
        return state, []
    return _kept(state, record, said, now)


def adt_word(record: Record) -> Consent | None:
    """The word an ADT's ZFA gives (None without one), with the structure that collected it
    (MSH-4): only a word read from an ADT gets its sender as ``feeding_facility``; a word
    handed over (:func:`moved`) keeps its own, whoever carried it."""
    said: Consent | None = record["patient"].get("dmp_consent")
    if said and said.get("feeding") and not said.get("feeding_facility"):
        said = {**said, "feeding_facility": record["source"]["facility"]}
    return said or None


def _kept(
    state: PatientState, record: Record, said: Consent, now: datetime
) -> tuple[PatientState, list[Output]]:
    """The state with ``said`` combined into its word, and the audit and publication."""
    kept = state.dmp_consent
    merged = combined(kept, said)
    state = replace(state, dmp_consent=merged)
    if kept is not None and summary(kept) == summary(merged):
        return state, []
    key = record["patient"]["patient_key"]
    audit = consent_changed(
        event_id=record["event_id"],
        patient_key=key,
        before=summary(kept),
        after=summary(merged),
        source=record["source"],
        trigger=record["trigger"],
        now=now,
    )
    word = {"patient_key": key, "at": now, "event_id": record["event_id"]}
    word["consent"] = absorbed_consent(state)
    return state, [
        Output(AUDIT, "AuditEvent", audit, key.encode()),
        Output(IDENTITY_CONSENT, "PatientConsent", word, key.encode()),  # the DMP sink's
    ]


def applied(kept: Consent | None, said: Consent) -> dict[str, str | None] | None:
    """``kept`` updated by what an ADT ``said``; None when the ADT is older than ``kept``."""
    if kept is not None and _older(said.get("as_of"), kept.get("as_of")):
        return None
    merged: dict[str, str | None] = dict(kept or _empty())
    if said.get("dmp_status") or said.get("closed_date"):
        _take(merged, said, "dmp_status", "status_date", "closed_date")
    if _a_word(said.get("feeding"), merged.get("feeding")) and _may_lift(merged, said):
        _take(merged, said, "feeding", "feeding_date", "feeding_facility")
    if _a_word(said.get("consultation"), merged.get("consultation")):
        _take(merged, said, "consultation", "consultation_date")
    _take(merged, said, "as_of", "source_event_id")
    return merged


def moved(state: PatientState, record: Record, now: datetime) -> tuple[PatientState, list[Output]]:
    """The state after a document or RETRY event that carries the consent of a patient
    merged into this one (:meth:`IdentityProcessor._redirected`), with its audit."""
    said = record["patient"].get("dmp_consent")
    if not said:
        return state, []
    return _kept(state, {"trigger": "REDIRECT", **record}, said, now)


def absorbed_consent(state: PatientState) -> dict[str, str | None] | None:
    """The patient's kept consent as a ``DmpConsent`` record (None when it has none): the
    stamp on its documents, and what an absorbed patient hands to its survivor."""
    if state.dmp_consent is None:
        return None
    return {**_empty(), **state.dmp_consent}  # a state kept before a field was added


def combined(kept: Consent | None, said: Consent) -> dict[str, str | None]:
    """Two words on one patient combined in the order of their ADTs (``as_of``): the newer
    one applied over the older, so a missing or "not asked" word never erases IO or FERME
    (a late ADT, or the consent of an identity merged into this one)."""
    if kept is not None and _older(said.get("as_of"), kept.get("as_of")):
        return applied(said, kept) or dict(kept)
    return applied(kept, said) or dict(said)


def stamped(record: Record, state: PatientState) -> Record:
    """``record`` (a document) with the patient's latest DMP consent on its patient."""
    return {**record, "patient": {**record["patient"], "dmp_consent": absorbed_consent(state)}}


def summary(consent: Consent | None) -> str:
    """The status in a few codes, for the audit: ``status=ACTIF feeding=IO ...``."""
    if consent is None:
        return "none"
    return " ".join(f"{name}={consent.get(name) or '-'}" for name in MEANING)


def _a_word(said: str | None, kept: str | None) -> bool:
    """Whether ``said`` replaces ``kept``: a word does; "not asked" only fills a blank."""
    if not said:
        return False
    return said != _NOT_ASKED or not kept


def _may_lift(kept: Consent, said: Consent) -> bool:
    """Whether ``said`` may replace an objection: only the structure (MSH-4) that collected
    it may lift it (PDSM4DMP TD0.2: each LPS manages the non-objection locally); an
    objection kept without its structure (before Relais recorded it) by any."""
    if kept.get("feeding") != OBJECTED or said.get("feeding") == OBJECTED:
        return True
    facility = kept.get("feeding_facility")
    return facility is None or facility == said.get("feeding_facility")


def _take(merged: dict[str, str | None], said: Consent, *names: str) -> None:
    for name in names:
        merged[name] = said.get(name)


def _empty() -> dict[str, str | None]:
    names = (*MEANING, "status_date", "feeding_date", "consultation_date", "feeding_facility")
    return dict.fromkeys((*names, "as_of", "source_event_id"))


def _older(said: str | None, kept: str | None) -> bool:
    """Whether the word of ``said`` (its ADT's MSH-7) comes before the one of ``kept``: a
    word with no readable time never wins over one that has one; two words without one are
    taken in their order of arrival."""
    first, second = _instant(said), _instant(kept)
    if first is None or second is None:
        return first is None and second is not None
    return first < second


def _instant(ts: str | None) -> datetime | None:
    """An HL7 TS as a UTC instant (Europe/Paris when it gives no offset); None if unreadable."""
    try:
        return paris_instant(ts).at if ts else None
    except Hl7TimeError:
        return None
