"""The notification ledger (embargo, once per document, cancellations) and the rate limit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.notify.errors import IllegalTransition, LedgerError, NotifyInputError
from consumers.notify.ledger_entry import Entry, State
from consumers.notify.message import Kind
from consumers.notify.rate import RateLimit
from consumers.notify.schedule import Incoming, Ledger, incoming_of
from relais.deadletter import failure_of

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
IDENTITY = {"key_id": "k1", "nonce": b"\x01" * 12, "ciphertext": b"\x02" * 40}
ALICE, BOB = "a" * 64, "b" * 64
NO_LIMIT = RateLimit(1000, 1.0)


def request(
    n: int,
    *,
    patient: str = ALICE,
    visible_from: datetime | None = T0,
    action: str = "SUBMIT",
    parent: str | None = None,
    unique_id: str | None = None,
) -> Incoming:
    return Incoming(
        request_id=f"req-{n}",
        event_id=f"evt-{n}",
        patient_key=patient,
        document_unique_id=unique_id or f"1.2.250.1.999.{n}",
        parent_unique_id=parent,
        action=action,
        visible_from=visible_from,
        submitted_at=T0,
        identity=IDENTITY,
    )


def admit(ledger: Ledger, incoming: Incoming, now: datetime = T0) -> list[Entry]:
    admission = ledger.admit(incoming, now)
    for entry in admission.writes:
        ledger.apply(entry)
    return list(admission.writes)


def send_due(ledger: Ledger, now: datetime, rate: RateLimit = NO_LIMIT) -> list[list[str]]:
    """Send everything due (as the shell does); the request ids of each message."""
    sent = []
    for batch in ledger.due(now, rate).batches:
        for entry in batch.entries:
            ledger.apply(entry.moved(State.SENT, now, channel="mssante", code="250"))
        sent.append(batch.request_ids)
    return sent


# Admission -------------------------------------------------------------------------


def test_a_visible_document_is_scheduled_then_told_once() -> None:
    ledger = Ledger()
    [entry] = admit(ledger, request(1))
    assert entry.state is State.SCHEDULED
    assert entry.identity == IDENTITY  # kept sealed until it is sent
    assert send_due(ledger, T0) == [["req-1"]]
    assert ledger.entries["req-1"].identity is None  # dropped once told
    again = ledger.admit(request(1), T0 + HOUR)
    assert again.writes == ()
    [(_, note)] = again.notes
    assert (note.outcome, note.code) == ("DUPLICATE", "ALREADY_NOTIFIED")
    assert send_due(ledger, T0 + HOUR) == []


def test_a_redelivered_request_still_pending_changes_nothing() -> None:
    ledger = Ledger()
    admit(ledger, request(1, visible_from=T0 + 24 * HOUR))
    assert ledger.admit(request(1, visible_from=T0 + 24 * HOUR), T0 + HOUR).writes == ()
    assert ledger.admit(request(1), T0 + HOUR).notes == ()


def test_an_embargo_waits_without_holding_other_patients() -> None:
    ledger = Ledger()
    admit(ledger, request(1, visible_from=T0 + 15 * 24 * HOUR))  # imaging: 15 days
    admit(ledger, request(2, patient=BOB))
    assert send_due(ledger, T0) == [["req-2"]]
    assert send_due(ledger, T0 + 15 * 24 * HOUR - timedelta(seconds=1)) == []
    assert ledger.next_due() == T0 + 15 * 24 * HOUR
    assert send_due(ledger, T0 + 15 * 24 * HOUR) == [["req-1"]]
    assert ledger.next_due() is None


def test_never_visible_is_never_told() -> None:
    ledger = Ledger()
    [entry] = admit(ledger, request(1, visible_from=None))
    assert entry.state is State.SKIPPED
    [(_, note)] = ledger.admit(request(2, visible_from=None), T0).notes
    assert (note.outcome, note.code) == ("REJECTED", "NOT_VISIBLE_TO_PATIENT")
    assert send_due(ledger, T0 + 1000 * HOUR) == []


def test_documents_due_together_make_one_message() -> None:
    ledger = Ledger()
    for n in (1, 2, 3):
        admit(ledger, request(n))
    admit(ledger, request(4, patient=BOB))
    assert sorted(send_due(ledger, T0)) == [["req-1", "req-2", "req-3"], ["req-4"]]


def test_a_replacement_before_the_embargo_lifts_cancels_the_original() -> None:
    ledger = Ledger()
    admit(ledger, request(1, visible_from=T0 + 48 * HOUR, unique_id="doc-v1"))
    admission = ledger.admit(
        request(2, visible_from=T0 + 48 * HOUR, action="REPLACE", parent="doc-v1"), T0 + HOUR
    )
    cancelled, replacement = admission.writes
    assert (cancelled.request_id, cancelled.state) == ("req-1", State.CANCELLED)
    assert replacement.kind is Kind.NEW  # the patient never heard of version 1
    (entry, note), (waiting, embargo) = admission.notes
    assert (entry.request_id, note.outcome, note.code) == ("req-1", "REJECTED", "CANCELLED")
    # the replacement is under embargo: its status says until when
    assert (waiting.request_id, embargo.outcome, embargo.code) == ("req-2", "RETRYING", "EMBARGOED")
    assert "2026-11-24 09:00 UTC" in embargo.detail
    for entry in admission.writes:
        ledger.apply(entry)
    assert send_due(ledger, T0 + 48 * HOUR) == [["req-2"]]


def test_a_replacement_after_the_original_was_told_says_updated() -> None:
    ledger = Ledger()
    admit(ledger, request(1, unique_id="doc-v1"))
    send_due(ledger, T0)
    [replacement] = admit(ledger, request(2, action="REPLACE", parent="doc-v1"), T0 + HOUR)
    assert replacement.kind is Kind.UPDATED


def test_a_deletion_cancels_what_is_pending_and_is_never_told() -> None:
    ledger = Ledger()
    admit(ledger, request(1, visible_from=T0 + 48 * HOUR, unique_id="doc-v1"))
    admission = ledger.admit(request(2, action="DELETE", unique_id="doc-v1"), T0 + HOUR)
    states = {e.request_id: e.state for e in admission.writes}
    assert states == {"req-1": State.CANCELLED, "req-2": State.SKIPPED}
    codes = {e.request_id: (n.outcome, n.code) for e, n in admission.notes}
    assert codes == {
        "req-1": ("REJECTED", "CANCELLED"),
        "req-2": ("DELIVERED", "CANCELLED_PENDING"),
    }
    for entry in admission.writes:
        ledger.apply(entry)
    assert send_due(ledger, T0 + 1000 * HOUR) == []
    [(_, note)] = ledger.admit(request(3, action="DELETE", unique_id="other"), T0).notes
    assert note.code == "NOTHING_PENDING"


def test_illegal_transitions_raise() -> None:
    ledger = Ledger()
    admit(ledger, request(1))
    send_due(ledger, T0)
    sent = ledger.entries["req-1"]
    with pytest.raises(IllegalTransition, match="SENT -> CANCELLED"):
        sent.moved(State.CANCELLED, T0)
    with pytest.raises(IllegalTransition, match="SENT -> SCHEDULED"):
        ledger.apply(replace(sent, state=State.SCHEDULED))
    with pytest.raises(IllegalTransition, match=r"\(new\) -> SENT"):
        Ledger().apply(sent)


def test_incoming_of_a_request_record() -> None:
    record = {
        "event_id": "e",
        "request_id": "r",
        "destination": "NOTIFY",
        "submitted_at": T0,
        "patient": {"patient_key": ALICE, "identity": IDENTITY},
        "document": {"unique_id": "u", "parent_unique_id": None, "action": "SUBMIT"},
        "release": {"patient_visible_from": T0 + HOUR},
    }
    assert incoming_of(record).visible_from == T0 + HOUR
    assert incoming_of({**record, "release": None}).visible_from is None
    with pytest.raises(NotifyInputError, match="DMP request on the notification topic") as caught:
        incoming_of({**record, "destination": "DMP"})
    assert failure_of(caught.value).reason_code == "notify-wrong-destination"


# Ledger records --------------------------------------------------------------------


def test_entries_round_trip_through_the_topic_format() -> None:
    ledger = Ledger()
    [entry] = admit(ledger, request(1, visible_from=T0 + HOUR))
    assert Entry.from_bytes(entry.to_bytes()) == entry
    sent = entry.moved(State.SENT, T0 + HOUR, channel="sms", code="202", attempt=2)
    assert Entry.from_bytes(sent.to_bytes()) == sent
    assert b'identity":null' in sent.to_bytes()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "does not read back"),
        (b'{"v": 2}', "version 2"),
        (b'{"v": 1, "request_id": "r"}', "does not read back"),
        (b"[]", "does not read back"),
    ],
)
def test_a_bad_ledger_record_is_a_ledger_error(raw: bytes, message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        Entry.from_bytes(raw)


def test_restoring_the_latest_entry_per_request_rebuilds_the_state() -> None:
    first = Ledger()
    log = admit(first, request(1))
    log += admit(first, request(2, visible_from=T0 + 24 * HOUR))
    for batch in first.due(T0, NO_LIMIT).batches:
        for entry in batch.entries:
            moved = entry.moved(State.SENT, T0)
            first.apply(moved)
            log.append(moved)
    second = Ledger()
    for raw in (e.to_bytes() for e in log):
        second.restore(Entry.from_bytes(raw))
    assert second.entries == first.entries
    assert second.admit(request(1), T0).notes[0][1].outcome == "DUPLICATE"
    assert send_due(second, T0 + 24 * HOUR) == [["req-2"]]


def test_pending_counts_and_the_oldest_due_age() -> None:
    ledger = Ledger()
    admit(ledger, request(1, visible_from=T0 + HOUR))
    admit(ledger, request(2, visible_from=T0 - HOUR))
    admit(ledger, request(3, patient=BOB))
    assert ledger.pending(T0) == (1, 2, 3600.0)
    send_due(ledger, T0)
    assert ledger.pending(T0) == (1, 0, 0.0)


# Rate limit ------------------------------------------------------------------------


def test_the_rate_limit_holds_and_then_merges() -> None:
    rate = RateLimit(limit=2, window_s=3600)
    ledger = Ledger()
    admit(ledger, request(1))
    assert send_due(ledger, T0, rate) == [["req-1"]]
    admit(ledger, request(2), T0 + timedelta(minutes=10))
    assert send_due(ledger, T0 + timedelta(minutes=10), rate) == [["req-2"]]
    for n, minute in ((3, 20), (4, 30), (5, 40)):
        admit(ledger, request(n), T0 + timedelta(minutes=minute))
        due = ledger.due(T0 + timedelta(minutes=minute), rate)
        assert (due.batches, due.rate_limited) == ((), 1)
    assert ledger.next_due() == T0 + HOUR  # when the first notification leaves the window
    assert send_due(ledger, T0 + HOUR - timedelta(seconds=1), rate) == []
    assert send_due(ledger, T0 + HOUR, rate) == [["req-3", "req-4", "req-5"]]
    assert ledger.pending(T0 + HOUR) == (0, 0, 0.0)


def test_the_rate_limit_survives_a_restart() -> None:
    rate = RateLimit(limit=1, window_s=3600)
    first = Ledger()
    admit(first, request(1))
    send_due(first, T0, rate)
    second = Ledger()
    for entry in first.entries.values():
        second.restore(Entry.from_bytes(entry.to_bytes()))
    admit(second, request(2), T0 + timedelta(minutes=5))
    assert send_due(second, T0 + timedelta(minutes=5), rate) == []
    assert send_due(second, T0 + HOUR, rate) == [["req-2"]]


def test_a_rate_limit_needs_sense() -> None:
    with pytest.raises(ValueError, match="RELAIS_NOTIFY_RATE_LIMIT"):
        RateLimit(0, 60)
    with pytest.raises(ValueError, match="RELAIS_NOTIFY_RATE_WINDOW_S"):
        RateLimit(1, 0)


def test_times_ahead_of_the_clock_count() -> None:
    rate = RateLimit(limit=1, window_s=60)
    assert rate.next_allowed([T0 + timedelta(seconds=5)], T0) == T0 + timedelta(seconds=65)


@given(
    limit=st.integers(min_value=1, max_value=5),
    window=st.integers(min_value=1, max_value=40),
    arrivals=st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=40),
)
def test_no_window_ever_holds_more_than_the_limit_and_nothing_is_lost(
    limit: int, window: int, arrivals: list[int]
) -> None:
    rate = RateLimit(limit, float(window))
    ledger = Ledger()
    pending = sorted(arrivals)
    told: list[str] = []
    messages: list[datetime] = []
    for second in range(max(pending) + limit * window + 2):
        now = T0 + timedelta(seconds=second)
        for n, at in enumerate(pending):
            if at == second:
                admit(ledger, request(n), now)
        for ids in send_due(ledger, now, rate):
            told += ids
            messages.append(now)
    assert sorted(told) == sorted(f"req-{n}" for n in range(len(pending)))
    for start in messages:
        inside = [m for m in messages if start <= m < start + timedelta(seconds=window)]
        assert len(inside) <= limit
