"""Recognise a document sent twice, so that it is delivered once (pure).

A document is the same when it comes again in the same message (sending
facility + MSH-10, e.g. an MLLP sender that resent after a lost ACK) or with
the same document unique id, life-cycle action and content (a CDA id names one
version; a second, different correction of a PDF is not a duplicate). The
first event that used a key owns it; a later event with another event id is a
duplicate and only leaves an audit trace. A redelivery of the
*same* event (at-least-once replay) is not a duplicate: it is processed again
and the idempotent sinks absorb it.

The store is injected: the identity shell passes its Faust table.
"""

from __future__ import annotations

from typing import Protocol

from relais.audit import audit_event
from relais.contracts import Record
from relais.topics import AUDIT
from streams.stage import Output, StageContext


class SeenStore(Protocol):
    def get(self, key: str) -> str | None: ...
    def __setitem__(self, key: str, event_id: str) -> None: ...


def dedupe_keys(record: Record) -> list[str]:
    source, document = record["source"], record["document"]
    return [
        f"msg|{source['facility']}|{source['message_control_id']}|{document['unique_id']}",
        f"doc|{document['unique_id']}|{document['action']}|{document['content_sha256']}",
    ]


def first_owner(seen: SeenStore, record: Record) -> str | None:
    """Event id that already owns one of this record's keys, if it is another event."""
    for key in dedupe_keys(record):
        owner = seen.get(key)
        if owner and owner != record["event_id"]:
            return owner
    return None


def duplicate_audit(record: Record, owner: str, ctx: StageContext) -> Output:
    audit = audit_event(
        event_id=record["event_id"],
        component="dedupe",
        action="DUPLICATE_IGNORED",
        outcome=f"duplicate-of:{owner}",
        now=ctx.now,
        document_unique_id=record["document"]["unique_id"],
        detail="same message (facility + MSH-10) or same document id and action seen before",
    )
    return Output(AUDIT, "AuditEvent", audit, record["patient"]["patient_key"].encode())
