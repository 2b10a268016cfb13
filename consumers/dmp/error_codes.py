"""What each DMP error code means for a delivery: try again later, or refuse (pure).

One table, :data:`CODES`, decides for the DMP sink. A code is what the DMP answered: an
XDS ``errorCode`` of a RegistryResponse (IHE ITI TF-3 Table 4.2.4.1-2), an ebRS 3.0
exception, a SOAP Fault subcode, a DMP code of the "Service DMP intégré aux LPS" guide
(ZAM ERR-5 table ``DMPERRORCODE``), or one of Relais's own codes for the transport
(``Unreachable``, ``TLSFailure``, ``HTTP503``...). Each row says:

* ``decision``: :attr:`Decision.RETRY` (the DMP cannot take it *now*: the same request,
  later, can succeed) or :attr:`Decision.REFUSE` (the same request will fail again: dead
  letter, REJECTED, ZAM N; ``relais dlq replay`` once the cause is fixed);
* ``operator``: what happened, for the dead letter and the operator (no patient data);
* ``label``: ERR-5.2 of the producer's ZAM^Z01 N, ``text``: its ERR-8, what the sender can do;
* ``source``: where the code and its meaning come from. The list of DMP codes is annex
  A7-1 of "Service DMP intégré aux LPS" v2.10.0, which is not public here: only
  ``DMPClosed`` is seen in public material (the CI-SIS HL7v2 volet's ZAM^Z01 example); the
  other DMP codes are names Relais gives the TD0.2 answers (marked *assumed*) until that
  annex is in hand.

A code not in the table is refused, with the code quoted (:func:`decide`): retrying an
unknown answer forever would stall the patient's partition behind a request that may never
pass, whereas a refusal is visible (dead letter, metric, ZAM) and replayable. For the same
reason a TD0.2 answer Relais cannot read (``TD02Unreadable``) is refused at once: an outage
is an HTTP error or no answer (retried), an HTTP 2xx that is not a TD0.2 answer will not
read better on the next try. :func:`metric_label` keeps metric labels to the table's codes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


class Decision(enum.StrEnum):
    RETRY = "retry"
    REFUSE = "refuse"


@dataclass(frozen=True)
class DmpCode:
    """One row of the table (see the module docstring)."""

    code: str
    decision: Decision
    operator: str
    label: str
    text: str
    source: str


ITI_TF3: Final = "IHE ITI TF-3 Table 4.2.4.1-2 (XDS error codes)"
EBRS: Final = "OASIS ebRS 3.0 (registry exceptions), returned by the XDS registry"
VOLET: Final = (
    "CI-SIS volet Transmission de document(s) CDA en HL7v2, ZAM^Z01 example "
    "(ERR-5 DMPClosed^DMP fermé^DMPERRORCODE)"
)
TD02: Final = (
    "assumed: TD0.2 answer (PDSM4DMP-EEDS transaction_td02.md: DMP status, access); the code "
    "name is Relais's until annex A7-1 of 'Service DMP intégré aux LPS' is available"
)
RELAIS: Final = "Relais transport code (no answer from the DMP)"
RELAIS_UNREAD: Final = (
    "Relais: a DMP answer (HTTP 2xx) Relais cannot read; refused at once, not retried "
    "(docs/dmp-feeding.md, TD0.2)"
)
REFUSED_LABEL: Final = "Refus du DMP"
_RESEND: Final = "fix the document or its metadata, then send it again"
_LATER: Final = "nothing to do: Relais tries again until the DMP takes it"


def _retry(code: str, operator: str, source: str) -> DmpCode:
    return DmpCode(code, Decision.RETRY, operator, "DMP indisponible", _LATER, source)


def _refuse(code: str, operator: str, text: str, source: str, label: str = "") -> DmpCode:
    return DmpCode(code, Decision.REFUSE, operator, label or REFUSED_LABEL, text, source)


_ROWS: Final = (
    # the DMP's own codes: the TD0.2 answers, and what it says when it refuses to be fed
    _refuse(
        "DMPClosed",
        "the patient's DMP is closed",
        "the patient's DMP is closed: it cannot be fed; nothing to resend unless the patient "
        "has it reopened, then ask the Relais operator to replay the dead letter",
        VOLET,
        "DMP fermé",
    ),
    _refuse(
        "DMPNotFound",
        "the patient has no DMP (TD0.2: no record for this INS)",
        "the patient has no DMP: once it is created, ask the Relais operator to replay the "
        "dead letter",
        TD02,
        "DMP inexistant",
    ),
    _refuse(
        "DMPPatientOpposition",
        "the patient objected to the feeding of their DMP",
        "the patient objected to the feeding of their DMP (CSP L1111-15): do not resend; "
        "if the objection is withdrawn, ask the Relais operator to replay the dead letter",
        TD02,
        "Opposition du patient",
    ),
    _refuse(
        "DMPAccessDenied",
        "this structure or professional may not feed the patient's DMP",
        "this structure or professional may not feed the patient's DMP (access blocked by "
        "the patient or no right): check with the DMP, then ask for a replay",
        TD02,
        "Alimentation non autorisée",
    ),
    # IHE XDS: the registry or repository cannot take it now
    _retry("XDSRegistryBusy", "the DMP registry is busy", ITI_TF3),
    _retry("XDSRepositoryBusy", "the DMP repository is busy", ITI_TF3),
    _retry("XDSRegistryOutOfResources", "the DMP registry is out of resources", ITI_TF3),
    _retry("XDSRepositoryOutOfResources", "the DMP repository is out of resources", ITI_TF3),
    _retry("XDSRegistryNotAvailable", "the DMP repository could not reach its registry", ITI_TF3),
    _retry("XDSUnavailableCommunity", "a community the DMP needed was unavailable", ITI_TF3),
    # IHE XDS: the request itself is refused
    _refuse(
        "XDSRegistryError",
        "internal DMP registry error (no more detailed code)",
        "the DMP registry failed on this document: ask the Relais operator, who may replay it",
        ITI_TF3,
    ),
    _refuse(
        "XDSRepositoryError",
        "internal DMP repository error (no more detailed code)",
        "the DMP repository failed on this document: ask the Relais operator, who may replay it",
        ITI_TF3,
    ),
    _refuse(
        "XDSUnknownPatientId",
        "the DMP does not know the patient id",
        "the DMP does not know this INS: check the patient's qualified INS (PID-3), then resend",
        ITI_TF3,
    ),
    _refuse(
        "XDSPatientIdDoesNotMatch",
        "the patient ids of the submission disagree (or the replaced document is another "
        "patient's)",
        "the patient of the document and of the DMP entry differ: check PID-3 and the CDA "
        "recordTarget (and the replaced document's patient), then resend",
        ITI_TF3,
    ),
    _refuse(
        "XDSDuplicateUniqueIdInRegistry",
        "the DMP already holds this uniqueId (or the entryUUID is taken)",
        "the document id is already used in the DMP: give the new document its own id",
        ITI_TF3,
    ),
    _refuse(
        "XDSNonIdenticalHash",
        "the DMP holds this uniqueId with another content",
        "the document id was already filed with another content: give the new document its "
        "own id, or send it as a replacement (ORC-1 RO / MDM^T10 with the parent id)",
        ITI_TF3,
    ),
    _refuse(
        "XDSRegistryMetadataError",
        "the DMP registry refused the metadata",
        f"the DMP refused the document's metadata: {_RESEND}",
        ITI_TF3,
    ),
    _refuse(
        "XDSRepositoryMetadataError",
        "the DMP repository refused the metadata",
        f"the DMP refused the document's metadata: {_RESEND}",
        ITI_TF3,
    ),
    _refuse(
        "XDSMissingDocument",
        "a document entry had no document attached",
        f"the document was missing from the submission: {_RESEND}",
        ITI_TF3,
    ),
    _refuse(
        "XDSMissingDocumentMetadata",
        "a document was attached without its entry",
        f"the document's metadata was missing: {_RESEND}",
        ITI_TF3,
    ),
    _refuse(
        "XDSRegistryDuplicateUniqueIdInMessage",
        "one uniqueId twice in one submission",
        f"the submission named one id twice: {_RESEND}",
        ITI_TF3,
    ),
    _refuse(
        "XDSRepositoryDuplicateUniqueIdInMessage",
        "one uniqueId twice in one submission",
        f"the submission named one id twice: {_RESEND}",
        ITI_TF3,
    ),
    _refuse(
        "XDSDocumentUniqueIdError",
        "the document named is not available",
        "the document named is not in the DMP: check its id",
        ITI_TF3,
    ),
    _refuse(
        "XDSRegistryDeprecatedDocumentError",
        "the replaced document is no longer the current version",
        "the replaced document was already replaced or deleted: replace its latest version",
        ITI_TF3,
    ),
    _refuse(
        "UnresolvedReferenceException",
        "the DMP holds no document the request names (RPLC target or deletion)",
        "the document to replace or delete is not in the DMP: check the parent id "
        "(TXA-13 / CDA relatedDocument) or send it as a new document",
        EBRS,
    ),
    _refuse(
        "InvalidRequestException",
        "the DMP could not read the request",
        "the DMP could not read the request: ask the Relais operator",
        EBRS,
    ),
    # Relais's own transport codes: the DMP did not answer
    _retry("Unreachable", "the DMP could not be reached (connection, timeout)", RELAIS),
    _retry("TLSFailure", "TLS with the DMP failed (a certificate refused)", RELAIS),
    _retry("BadAnswer", "the DMP's answer could not be read", RELAIS),
    _retry("QueryFailed", "a DMP registry query failed", RELAIS),
    # Relais's own reading codes: the DMP answered, but not in a form Relais reads
    _refuse(
        "TD02Unreadable",
        "the DMP's TD0.2 answer could not be read (not the PRPA_IN201308UV02 Relais expects)",
        "Relais could not read the DMP's answer about the patient's DMP: nothing to resend; "
        "the Relais operator replays the dead letter once the answer is understood",
        RELAIS_UNREAD,
        "Réponse du DMP illisible",
    ),
)

#: the table, by code
CODES: Final = MappingProxyType({row.code: row for row in _ROWS})
#: HTTP statuses of a DMP that cannot answer now (any 5xx too)
TRANSIENT_HTTP: Final = frozenset({408, 429})


def decide(code: str | None) -> DmpCode:
    """The row of ``code``; an HTTP code by its status; anything else refused, code quoted."""
    text = code or "no code"
    known = CODES.get(text)
    if known is not None:
        return known
    if text.startswith("HTTP") and text[4:].isdigit():
        status = int(text[4:])
        if status >= 500 or status in TRANSIENT_HTTP:
            return _retry(text, f"the DMP answered HTTP {status}", RELAIS)
    return _refuse(
        text,
        f"the DMP refused the document with code {text} (not in Relais's table)",
        f"the DMP refused the document with code {text}: ask the Relais operator",
        "not in the table: refused, code quoted (docs/dmp-feeding.md)",
    )


def retriable(code: str | None) -> bool:
    return decide(code).decision is Decision.RETRY


def metric_label(code: str | None) -> str:
    """A metric label for a DMP answer: ``open`` (None), a code of :data:`CODES`, else
    ``other`` — the DMP's raw codes are unbounded, a label's values must not be."""
    if code is None:
        return "open"
    return code if code in CODES else "other"
