"""Issue 15, point 2: notifications to the patient follow the DMP's success, not the routing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from consumers.notify.dmp_gate import DmpOutcome, dmp_outcome_of, is_gate_key, waits_for_dmp
from consumers.notify.errors import LedgerError
from consumers.notify.ledger_entry import Entry, State
from consumers.notify.rate import RateLimit
from consumers.notify.schedule import Incoming, Ledger

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
IDENTITY = {"key_id": "k1", "nonce": b"\x01" * 12, "ciphertext": b"\x02" * 40}
NO_LIMIT = RateLimit(1000, 1.0)


def request(n: int, *, visible_from: datetime = T0, action: str = "SUBMIT") -> Incoming:
    return Incoming(
        request_id=f"req-{n}",
        event_id=f"evt-{n}",
        patient_key="a" * 64,
        document_unique_id=f"1.2.250.1.999.{n}",
        parent_unique_id=None,
        action=action,
        visible_from=visible_from,
        submitted_at=T0,
        identity=IDENTITY,
        after_dmp=action != "DELETE",
    )


def outcome(n: int, *, filed: bool) -> DmpOutcome:
    return DmpOutcome(f"evt-{n}", filed, None if filed else "DMPClosed", T0)


def applied(ledger: Ledger, writes: tuple[Entry, ...]) -> list[Entry]:
    for entry in writes:
        ledger.apply(entry)
    return list(writes)


def due_ids(ledger: Ledger, now: datetime) -> list[str]:
    return [e.request_id for b in ledger.due(now, NO_LIMIT).batches for e in b.entries]


def test_a_document_going_to_the_dmp_waits_for_its_filing_then_is_told() -> None:
    ledger = Ledger()
    admission = ledger.admit(request(1), T0)
    [waiting] = applied(ledger, admission.writes)
    assert waiting.state is State.WAITING
    assert waiting.identity == IDENTITY  # kept: it may still be sent
    assert [(n.outcome, n.code) for _, n in admission.notes] == [("RETRYING", "WAITING_FOR_DMP")]
    assert due_ids(ledger, T0 + timedelta(days=1)) == []  # routed is not filed: nobody told
    released, keep = ledger.dmp_outcome(outcome(1, filed=True), T0)
    assert not keep
    [scheduled] = applied(ledger, released.writes)
    assert scheduled.state is State.SCHEDULED
    assert scheduled.identity == IDENTITY
    assert due_ids(ledger, T0) == ["req-1"]


def test_a_dmp_refusal_cancels_the_notification_for_good() -> None:
    ledger = Ledger()
    applied(ledger, ledger.admit(request(1), T0).writes)
    refused, keep = ledger.dmp_outcome(outcome(1, filed=False), T0)
    assert not keep
    [cancelled] = applied(ledger, refused.writes)
    assert cancelled.state is State.CANCELLED
    assert cancelled.identity is None
    assert [(n.outcome, n.code) for _, n in refused.notes] == [("REJECTED", "DMP_REFUSED")]
    assert due_ids(ledger, T0 + timedelta(days=30)) == []
    # a later success (a replay of an old status) changes nothing
    assert ledger.dmp_outcome(outcome(1, filed=True), T0)[0].writes == ()


def test_an_outcome_before_its_request_is_kept_and_decides_the_admission() -> None:
    ledger = Ledger()
    nothing_waits, keep = ledger.dmp_outcome(outcome(1, filed=True), T0)
    assert nothing_waits.writes == ()
    assert keep  # kept for the request to come
    assert ledger.dmp_outcome(outcome(2, filed=False), T0)[1]
    [scheduled] = applied(ledger, ledger.admit(request(1), T0).writes)
    assert scheduled.state is State.SCHEDULED
    refusal = ledger.admit(request(2), T0)
    [skipped] = applied(ledger, refusal.writes)
    assert skipped.state is State.SKIPPED
    assert [n.code for _, n in refusal.notes] == ["DMP_REFUSED"]


def test_an_embargo_still_applies_after_the_filing() -> None:
    ledger = Ledger()
    later = T0 + timedelta(days=15)
    applied(ledger, ledger.admit(request(1, visible_from=later), T0).writes)
    released, _ = ledger.dmp_outcome(outcome(1, filed=True), T0)
    assert released.writes == ()  # filed invisible: it waits for the visibility update
    # ... and says so, so that nobody reads "waiting for the DMP" after the DMP filed it
    assert [(n.outcome, n.code) for _, n in released.notes] == [
        ("RETRYING", "WAITING_FOR_DMP_VISIBILITY")
    ]
    assert due_ids(ledger, later) == []
    visible = replace(outcome(1, filed=True), step="visibility", at=T0 + timedelta(days=1))
    released, _ = ledger.dmp_outcome(visible, T0 + timedelta(days=1))
    applied(ledger, released.writes)
    assert [n.code for _, n in released.notes] == ["EMBARGOED"]
    assert due_ids(ledger, T0 + timedelta(days=1)) == []
    assert due_ids(ledger, later) == ["req-1"]


def test_a_deletion_cancels_a_notification_still_waiting_for_the_dmp() -> None:
    ledger = Ledger()
    applied(ledger, ledger.admit(request(1), T0).writes)
    deletion = replace(request(2, action="DELETE"), document_unique_id="1.2.250.1.999.1")
    writes = applied(ledger, ledger.admit(deletion, T0).writes)
    assert [(e.request_id, e.state) for e in writes] == [
        ("req-1", State.CANCELLED),
        ("req-2", State.SKIPPED),
    ]


def test_a_waiting_entry_and_a_kept_outcome_read_back_after_a_restart() -> None:
    ledger = Ledger()
    [waiting] = applied(ledger, ledger.admit(request(1), T0).writes)
    kept = outcome(2, filed=False)
    restored = Ledger()
    restored.restore(Entry.from_bytes(waiting.to_bytes()))
    restored.restore_outcome(DmpOutcome.from_bytes(kept.to_bytes()))
    assert restored.waiting == {"req-1": waiting}
    assert restored.dmp == {"evt-2": kept}
    assert is_gate_key(kept.key)
    assert not is_gate_key(b"req-1")
    with pytest.raises(LedgerError):
        DmpOutcome.from_bytes(b'{"v": 2}')
    with pytest.raises(LedgerError):
        DmpOutcome.from_bytes(b"not json")


def test_only_the_dmps_final_outcomes_count() -> None:
    status = {"event_id": "evt-1", "destination": "DMP", "outcome": "DELIVERED", "code": None}
    status["at"] = T0
    assert dmp_outcome_of(status) == DmpOutcome("evt-1", True, None, T0)
    assert dmp_outcome_of({**status, "outcome": "DUPLICATE"}).filed  # type: ignore[union-attr]
    assert not dmp_outcome_of({**status, "outcome": "REJECTED"}).filed  # type: ignore[union-attr]
    assert dmp_outcome_of({**status, "outcome": "RETRYING"}) is None
    assert dmp_outcome_of({**status, "destination": "MSSANTE"}) is None
    assert dmp_outcome_of({**status, "destination": "NOTIFY"}) is None


@pytest.mark.parametrize(
    ("flags", "action", "waits"),
    [
        ({}, "SUBMIT", True),  # DESTDMP is Y when the producer left it out (the volet's default)
        ({"DESTDMP": True}, "REPLACE", True),
        ({"DESTDMP": False, "DESTMSSANTEPAT": True}, "SUBMIT", False),  # patient's mailbox only
        ({"DESTDMP": True}, "DELETE", False),  # a deletion only cancels
    ],
)
def test_which_notifications_wait_for_the_dmp(
    flags: dict[str, bool], action: str, waits: bool
) -> None:
    assert waits_for_dmp(flags, action) is waits
