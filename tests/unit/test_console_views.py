"""What the console's pages compute (ops.console.views) and the audit events of operators'
actions: the console's own, a replay's and an identity reveal's all name the operator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest

from ops.console.accounts import Operator
from ops.console.app import templates
from ops.console.bus import console_audit
from ops.console.sessions import Session
from ops.console.views import (
    checked_text,
    letter_search_of,
    next_page,
    operator_of,
    search_of,
    timeline,
    window_of,
)
from ops.dlq.replay import Sent, replay_audit
from ops.identity.bus import reveal_audit
from ops.identity.views import TRAITS, PatientView
from ops.index.model import DocumentRow
from ops.trace.journey import Journey, Step
from streams.identity.state import Held, PatientState
from tests.unit.index_samples import letter

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_a_search_form_becomes_the_index_query_or_says_what_is_wrong() -> None:
    search, errors = search_of(
        {"msh10": " M1 ", "status": "held", "since": "2h", "patient": "abcdef012"}, NOW
    )
    assert errors == []
    assert search.message_control_id == "M1"
    assert search.status == "held"
    assert search.patient_key == "abcdef012"
    assert search.since == NOW - timedelta(hours=2)
    assert search.sender is None
    _, errors = search_of({"patient": "abc", "status": "lost", "destination": "FAX"}, NOW)
    assert len(errors) == 3
    _, errors = search_of({"after": "not-a-cursor"}, NOW)
    assert errors == ["after: not a page cursor (follow the 'next page' link)"]


def _row(event_id: str, received_at: datetime | None) -> DocumentRow:
    return DocumentRow(event_id, None, "LABO", None, "M1", None, None, received_at, NOW, "held")


def test_the_next_page_link_carries_the_filters_and_the_last_hits_cursor() -> None:
    rows = [_row("ev-1", NOW), _row("ev-2", NOW + timedelta(seconds=1))]
    assert next_page({"sender": "LABO"}, rows, limit=3) is None  # not full: the last page
    query = next_page({"sender": "LABO", "after": "old"}, rows, limit=2)
    assert query is not None
    params = {k: v[0] for k, v in parse_qs(query).items()}
    search, errors = search_of(params, NOW)
    assert errors == []
    assert search.sender == "LABO"
    assert search.after == (NOW + timedelta(seconds=1), "ev-2")


def test_letter_filters_and_stats_windows() -> None:
    search, errors = letter_search_of({"stage": "dmp", "unreplayed": "on", "since": "1d"}, NOW)
    assert errors == []
    assert search.stage == "dmp"
    assert search.unreplayed
    assert search.since == NOW - timedelta(days=1)
    assert window_of({}, NOW) == (NOW - timedelta(hours=24), [])
    assert window_of({"since": "7d"}, NOW)[0] == NOW - timedelta(days=7)
    assert window_of({"since": "last tuesday"}, NOW)[1] != []


def _step(component: str, action: str, detail: str | None, branch: str = "document") -> Step:
    return Step(NOW, branch, component, action, "x", "ev-1", "audit", detail)


def test_operators_steps_show_who_and_dead_letters_their_id() -> None:
    replayed = _step(
        "dlq", "REPLAYED", "dead-letter dl-1\nsent back to t partition 0 offset 1\nby bob"
    )
    decided = _step("identity", "OTHER", "operator dr.vigilance: RELEASE (command c-1)")
    received = _step("producer", "RECEIVED", "by the gateway")  # not an operator's action
    dead = Step(NOW, "DMP", "dmp-sink", "DEAD_LETTERED", "dmp-down", "ev-1", "dead-letter",
                "reason\ndead letter 5d1f-aa (relais dlq show 5d1f-aa)")  # fmt: skip
    assert operator_of(replayed) == "bob"
    assert operator_of(decided) == "dr.vigilance"
    assert operator_of(received) is None
    rows = timeline(Journey("ev-1", ("ev-1",), (), (replayed, decided, received, dead)))
    assert [r.dead_letter for r in rows] == [None, None, None, "5d1f-aa"]
    assert rows[3].css == "branch-dmp"
    assert rows[0].detail == ("dead-letter dl-1", "sent back to t partition 0 offset 1", "by bob")


def test_reasons_and_comments_are_short_and_carry_no_patient_data() -> None:
    assert checked_text("  ticket 4411 ", "reason", required=True) == "ticket 4411"
    assert checked_text("", "comment", required=False) is None
    with pytest.raises(ValueError, match="say why"):
        checked_text(" ", "reason", required=True)
    bad = (
        "INS 1850775123456",
        "born 12/03/1985",
        "x" * 201,
        "NIR 1 85 03 75 123 456 78",  # spaces between the digits
        "nir 1.85.03.75.123.456",
        "né le 12 mars 1985",  # a date in words
        "born March 12, 1985",
        "call 06 12 34 56 78",  # a phone number
        "call +33 6 12 34 56 78",
    )
    for text in bad:
        with pytest.raises(ValueError, match="no patient data"):
            checked_text(text, "comment", required=False)
    for fine in ("ticket 4411", "wrong sender: see ticket 4411", "retry in 2 min, lot 12"):
        assert checked_text(fine, "comment", required=False) == fine


def test_every_operators_audit_event_names_the_operator() -> None:
    one = console_audit(operator="alice", event_id="ev-1", outcome="revealed:dead-letter",
                        detail="dead-letter dl-1 revealed", now=NOW)  # fmt: skip
    two = console_audit(operator="alice", event_id="ev-1", outcome="revealed:dead-letter",
                        detail="dead-letter dl-1 revealed", now=NOW)  # fmt: skip
    assert one["operator"] == "alice"
    assert one["component"] == "console"
    assert one["audit_id"] != two["audit_id"]  # two reveals are two events
    view = letter("dl-1", "ev-1", "1.2.3", NOW)
    sent = Sent("dl-1", "ev-1", "t.documents.qualified.v1", 3, 40)
    assert replay_audit(view, sent, by="bob", nth=1, now=NOW)["operator"] == "bob"
    assert reveal_audit("carol", ["k" * 64], 2)["operator"] == "carol"


def test_the_holds_page_shows_keys_documents_and_decisions_never_traits_unasked() -> None:
    key = "ab" * 32
    state = PatientState(
        held=(Held(b"", "ev-h1", "ins-unqualified", 1_772_438_400_000, "LABO"),),
        blocked="traits-mismatch",
        blocked_at_ms=1_772_438_400_000,
    )
    session = Session("t", Operator("ivy", ("identitovigilance",)), "csrf-token", 0.0)
    page = templates().get_template("holds.html").render(
        session=session, path="/holds", title="Held", views=[PatientView(key, state)],
        traits={}, trait_names=TRAITS, may_decide=True, notice=None, keyring_problem=None,
    )  # fmt: skip
    assert f'data-patient-key="{key}"' in page
    assert 'data-event-id="ev-h1"' in page
    assert 'name="event" value="ev-h1"' in page
    assert f'formaction="/holds/{key}/unblock"' in page
    assert 'data-testid="trait"' not in page
    assert page.count('name="csrf" value="csrf-token"') == 3  # sign-out, decisions, reveal
