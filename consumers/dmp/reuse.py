"""Same document id, other content: a refusal, never "already done" (pure).

A document's unique id names one content. The delivery ledger says a request
(document id + action + destination) is DONE; beside that entry the sink keeps
the SHA-256 of the content it filed (an entry keyed ``<request id>|content``
whose ``code`` is the digest). When the same request comes back with another
content — the sender reused the id for another document, or corrected a
document without a replacement (ORC RO / MDM^T10) — it is refused: a
``document-id-reused`` dead letter naming the id, the REJECTED status and a
ZAM^Z01 N. The DMP says the same when it sees it first: ``XDSNonIdenticalHash``
(the registry holds this uniqueId with another hash), which is the ERR-5 code
the sink uses in both cases. A re-send of the *same* content stays an
idempotent success. Ledgers written before the digest was kept have no such
entry: those requests are "already done", as before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from consumers.dmp.error_codes import decide
from relais.contracts import Record
from relais.deadletter import Failure
from relais.delivery_ledger import Entry, Outcome, done

#: the DMP's own code for "this uniqueId is held with another hash" (XDS registry error)
NON_IDENTICAL: Final = "XDSNonIdenticalHash"
REASON: Final = "document-id-reused"


def content_key(request_id: str) -> str:
    """The ledger key of the digest of what was filed for ``request_id``."""
    return f"{request_id}|content"


def filed_digest(request: Record, *, now: datetime) -> Entry | None:
    """The entry recording the content filed for ``request`` (None for a deletion)."""
    document = request["document"]
    if document["action"] == "DELETE":
        return None
    key = content_key(request["request_id"])
    return done(key, Outcome.DELIVERED, document["content_sha256"], 1, now=now)


def reused(filed: Entry | None, request: Record) -> bool:
    """Whether ``request`` carries other content than what was filed under its id."""
    document = request["document"]
    if filed is None or document["action"] == "DELETE":
        return False
    return filed.code != str(document["content_sha256"])


def refusal(code: str | None, unique_id: str) -> Failure:
    """The dead-letter reason of a DMP refusal: its code and what it means
    (:mod:`consumers.dmp.error_codes`); the DMP's free text never travels."""
    if code == NON_IDENTICAL:
        return Failure(REASON, zam_text(unique_id))
    meaning = decide(code).operator
    return Failure("dmp-rejected", f"the DMP refused the document with code {code}: {meaning}")


def zam_text(unique_id: str) -> str:
    """ERR-8 of a reused id: what the sender must do."""
    return (
        f"document id {unique_id} was already filed in the DMP with another content: "
        "give the new document its own id, or send it as a replacement (ORC-1 RO / "
        "MDM^T10 with the parent id)"
    )
