"""The entryUUID the DMP assigned is kept in the delivery ledger beside the request's entry."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.dmp.entries import entry_key, kept, learnt
from consumers.dmp.reuse import content_key
from relais.delivery_ledger import DONE, Entry, Step, next_step

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
DOC = "1.2.250.1.213.1.1.9.4242.11502000001"
ISSUED = "urn:uuid:0d5f2f7e-5c8a-4d8e-9b7a-3f3f1c2e9a11"


def test_the_kept_entry_uuid_travels_on_the_ledger_and_reads_back() -> None:
    entry = learnt(DOC, ISSUED, now=NOW)
    assert (entry.request_id, entry.state) == (entry_key(DOC), DONE)
    back = Entry.decode(entry.encode())  # as the ledger topic restores it
    assert kept(back) == ISSUED
    assert kept(None) is None
    # its own key: never a request id, nor the content digest's key
    assert entry_key(DOC) not in {DOC, content_key(DOC)}
    assert next_step(back) is Step.ALREADY_DONE  # a DONE entry: nothing is ever sent for it
