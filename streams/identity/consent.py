"""The patient's DMP consent in the identity stage: kept, audited, stamped (pure).

An ADT (A01/A04/A08) whose ZFA the door read carries a ``DmpConsent`` record on
its patient (:func:`producers.hl7.consent.consent_record`). The stage keeps the
patient's latest word in its state, writes a ``CONSENT_CHANGED`` audit event
when the DMP status or the patient's word changes, and stamps the latest on every
document it forwards (``patient.dmp_consent`` of ``IdentityQualified``, carried
as is to the DMP delivery request, where :mod:`consumers.dmp.consent` reads it).

Order: ADTs reach the stage in the order of their partition (one patient, one
partition); within it, an ADT whose MSH-7 is older than the word kept does not
override it (a sender's late replay of an old ADT never lifts a newer objection).
Each part of ZFA stands alone: a ZFA without a DMP status keeps the kept status,
and "NA" (not asked) never erases a word the patient gave (IO, INO, IC, INC):
only a new word replaces it. The audit names the patient's pseudonymous key and
the event ids, never the INS or names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

from relais.audit_records import consent_changed
from relais.contracts import Record
from relais.topics import AUDIT
from streams.identity.state import PatientState
from streams.stage import Output

Consent = Mapping[str, str | None]

#: the fields whose change is a change of the patient's status (dates alone are not)
MEANING: Final = ("dmp_status", "closed_date", "feeding", "consultation")
_NOT_ASKED: Final = "NA"
_TS: Final = re.compile(r"([0-9]{4,14})(?:\.[0-9]+)?([+-][0-9]{4})?")
_PAD: Final = "0101000000"  # month, day, hours, minutes, seconds of a shortened TS


def consented(
    state: PatientState, record: Record, now: datetime
) -> tuple[PatientState, list[Output]]:
    """The state after an identity event, and the audit event when the consent changed."""
    said = record["patient"].get("dmp_consent")
    if not said:
        return state, []
    kept = state.dmp_consent
    merged = applied(kept, said)
    if merged is None:  # an older ADT: the newer word stands
        return state, []
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
    return state, [Output(AUDIT, "AuditEvent", audit, key.encode())]


def applied(kept: Consent | None, said: Consent) -> dict[str, str | None] | None:
    """``kept`` updated by what an ADT ``said``; None when the ADT is older than ``kept``."""
    if kept is not None and _older(said.get("as_of"), kept.get("as_of")):
        return None
    merged: dict[str, str | None] = dict(kept or _empty())
    if said.get("dmp_status") or said.get("closed_date"):
        _take(merged, said, "dmp_status", "status_date", "closed_date")
    if _a_word(said.get("feeding"), merged.get("feeding")):
        _take(merged, said, "feeding", "feeding_date")
    if _a_word(said.get("consultation"), merged.get("consultation")):
        _take(merged, said, "consultation", "consultation_date")
    _take(merged, said, "as_of", "source_event_id")
    return merged


def stamped(record: Record, state: PatientState) -> Record:
    """``record`` (a document) with the patient's latest DMP consent on its patient."""
    consent = dict(state.dmp_consent) if state.dmp_consent is not None else None
    return {**record, "patient": {**record["patient"], "dmp_consent": consent}}


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


def _take(merged: dict[str, str | None], said: Consent, *names: str) -> None:
    for name in names:
        merged[name] = said.get(name)


def _empty() -> dict[str, str | None]:
    names = (*MEANING, "status_date", "feeding_date", "consultation_date")
    return dict.fromkeys((*names, "as_of", "source_event_id"))


def _older(said: str | None, kept: str | None) -> bool:
    first, second = _instant(said), _instant(kept)
    return first is not None and second is not None and first < second


def _instant(ts: str | None) -> datetime | None:
    """An HL7 TS as a naive instant (UTC when it gives its offset); None if unreadable."""
    found = _TS.fullmatch(ts or "")
    if found is None:
        return None
    digits, offset = found.group(1), found.group(2)
    try:
        when = datetime.strptime(digits + _PAD[len(digits) - 4 :], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        when -= sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:]))
    return when
