"""Whether the patient's word lets a document be filed in their DMP (pure).

The identity stage stamps the patient's latest DMP status and word on feeding it
(PAM FR ZFA, :mod:`streams.identity.consent`) on each document it forwards, and
publishes each change on ``identity.consent``. Before filing (a replay too), the DMP
sink reads the patient's word as it is now there (:mod:`consumers.dmp.consent_table`;
the request's stamp when the topic has none) and asks :func:`consent_refusal`: a
document that waited in retries or in the dead letters is checked against the word
given since. A patient who objected to the feeding of their DMP (ZFA-9 ``IO``, CSP
L1111-15) or whose DMP is closed (ZFA-1 ``FERME`` or a closure date, ZFA-3) is not
filed. The refusal is the DMP's kind: REJECTED,
a dead letter (replayable once the status changed), and the producer's ZAM^Z01 N
whose ERR-5 is :func:`err5`:

* closed DMP: ``DMPClosed^DMP fermé^DMPERRORCODE`` — the DMP's own code (CI-SIS volet
  "Transmission de document(s) CDA en HL7v2", ZAM^Z01 example);
* objection: ``DMPPatientOpposition^Opposition du patient^DMPERRORCODE`` — **a name
  Relais gives it**: the DMP error codes (annex A7-1 of "Service DMP intégré aux LPS")
  are not public, and the objection is managed by the LPS, not by the DMP (PDSM4DMP-EEDS
  TD0.2: "le LPS gère en local ... la non-opposition du patient à l'alimentation").

A deletion is never stopped (removing a document agrees with an objection), nor a
document of a patient with no word at all (no ZFA was ever received: nothing said).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from consumers.dmp.error_codes import CODES
from producers.hl7.consent import DmpConsent

#: the DMP's code for a closed DMP (public: the volet's ZAM^Z01 example)
CLOSED: Final = "DMPClosed"
#: Relais's name for the patient's objection (no public DMP code; consumers.dmp.error_codes)
OPPOSITION: Final = "DMPPatientOpposition"
TABLE: Final = "DMPERRORCODE"
_FIELDS: Final = tuple(f.name for f in dataclasses.fields(DmpConsent))


@dataclass(frozen=True)
class ConsentRefusal:
    """Why the document is not filed: the DMP-style code, ERR-5.2 label, ERR-8 text, detail."""

    code: str
    label: str
    text: str
    detail: str


def consent_refusal(
    request: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> ConsentRefusal | None:
    """The refusal the patient's word calls for, or None (file it): ``current`` is the
    patient's word now (:mod:`consumers.dmp.consent_table`); the request's stamp decides
    only when there is none (a word kept before that table existed)."""
    if request["document"]["action"] == "DELETE":
        return None
    stamp = current or (request.get("patient") or {}).get("dmp_consent")
    if not stamp:
        return None
    consent = DmpConsent(**{name: stamp.get(name) for name in _FIELDS})
    if consent.closed:
        return _refusal(CLOSED, stamp, "the patient's DMP is closed (PAM FR ZFA-1/ZFA-3)")
    if consent.objected:
        detail = "the patient objected to the feeding of their DMP (PAM FR ZFA-9 IO)"
        return _refusal(OPPOSITION, stamp, detail)
    return None


@dataclass(frozen=True, slots=True)
class KeptWord:
    """What the sink keeps of a patient's word (:mod:`consumers.dmp.consent_table`, one per
    patient, national scale): only what may refuse a filing and says who said it."""

    dmp_status: str | None = None
    closed_date: str | None = None
    feeding: str | None = None
    feeding_facility: str | None = None
    source_event_id: str | None = None

    def as_record(self) -> dict[str, str | None]:
        """The word as :func:`consent_refusal` reads it (a ``DmpConsent`` record's fields)."""
        return dataclasses.asdict(self)


#: the one word kept for every patient whose word lets documents be filed (INO, NA, ACTIF)
FILE_IT: Final = KeptWord()


def kept_word(consent: Mapping[str, Any] | None) -> KeptWord | None:
    """A published ``DmpConsent`` record (``identity.consent``) as the sink keeps it: a word
    that refuses nothing is :data:`FILE_IT` (shared), codes are interned; None for none."""
    if not consent:
        return None
    word = DmpConsent(**{name: consent.get(name) for name in _FIELDS})
    if not (word.closed or word.objected):
        return FILE_IT
    return KeptWord(
        _interned(word.dmp_status),
        word.closed_date,
        _interned(word.feeding),
        _interned(consent.get("feeding_facility")),
        consent.get("source_event_id"),
    )


def _interned(code: str | None) -> str | None:
    return sys.intern(code) if code else None


def err5(refusal: ConsentRefusal) -> str:
    """ERR-5 of the producer's ZAM^Z01 N: ``code^label^DMPERRORCODE``."""
    return f"{refusal.code}^{refusal.label}^{TABLE}"


def _refusal(code: str, stamp: Mapping[str, Any], why: str) -> ConsentRefusal:
    row = CODES[code]
    source = stamp.get("source_event_id") or "unknown"
    detail = f"not filed: {why}; said by identity event {source}"
    return ConsentRefusal(code, row.label, row.text, detail)
