"""ITI-18 GetDocuments, ITI-62 Delete Document Set, and the delivery ledger's decisions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.dmp.request import xds_ids
from consumers.ihe import iti18, iti62
from relais.delivery_ledger import TRANSITIONS, Entry, Met, Outcome, Step, done, next_step, sending


def test_a_query_reads_back_with_its_ids_and_message_id() -> None:
    body = iti18.get_documents(("1.2.3", "2.25.9"), to="https://dmp/registry", message_id="urn:x")
    query = iti18.read_query(body)
    assert query == iti18.Query("urn:x", ("1.2.3", "2.25.9"))


@given(
    st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
            lambda s: s.strip() == s and "," not in s and "(" not in s and ")" not in s
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_unique_id_survives_the_quoting(ids: list[str]) -> None:
    body = iti18.get_documents(tuple(ids), to="x")
    assert iti18.read_query(body).unique_ids == tuple(ids)


def test_the_answer_lists_what_the_registry_holds() -> None:
    answer = iti18.read_answer(iti18.query_response(("urn:uuid:a",), relates_to="urn:x"))
    assert answer == iti18.Answer("Success", ("urn:uuid:a",))
    assert iti18.read_answer(iti18.query_response(())).entry_uuids == ()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<not-xml", "not XML"),
        (b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"/>', "Action"),
    ],
)
def test_what_is_not_a_query_is_refused_with_the_reason(body: bytes, message: str) -> None:
    with pytest.raises(iti18.Iti18Error, match=message):
        iti18.read_query(body)


def test_no_id_no_query() -> None:
    with pytest.raises(iti18.Iti18Error, match="at least one"):
        iti18.get_documents((), to="x")


NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_the_ledger_says_send_reconcile_or_skip() -> None:
    assert next_step(None) is Step.SEND
    assert next_step(sending("r1", 1, now=NOW)) is Step.RECONCILE
    assert next_step(done("r1", Outcome.DELIVERED, None, 1, now=NOW)) is Step.ALREADY_DONE


def test_a_refusal_is_sent_again_only_when_an_operator_replays_it() -> None:
    refused = done("r1", Outcome.REJECTED, "XDSPatientIdDoesNotMatch", 1, now=NOW)
    delivered = done("r1", Outcome.DELIVERED, None, 1, now=NOW)
    assert next_step(refused) is Step.ALREADY_DONE
    assert next_step(refused, Met.REPLAYED) is Step.SEND
    assert next_step(delivered, Met.REPLAYED) is Step.ALREADY_DONE
    assert next_step(sending("r1", 2, now=NOW), Met.REPLAYED) is Step.RECONCILE


def test_every_state_and_outcome_a_sink_can_write_has_a_step() -> None:
    written = [None, sending("r", 1, now=NOW)] + [
        done("r", outcome, None, 1, now=NOW) for outcome in Outcome
    ]
    for entry in written:
        for met in Met:
            assert next_step(entry, met) in set(Step)
    assert len(TRANSITIONS) == len(written) * len(Met)


def test_ledger_entries_round_trip_and_foreign_values_are_refused() -> None:
    entry = done("r1", Outcome.REJECTED, "XDSPatientIdDoesNotMatch", 3, now=NOW)
    assert Entry.decode(entry.encode()) == entry
    with pytest.raises(ValueError, match="ledger"):
        Entry.decode(b'{"state": "MAYBE"}')


def test_the_entry_bytes_are_those_existing_ledgers_hold() -> None:
    """Sorted JSON keys, plain strings: a ledger written before still reads, and the same."""
    entry = done("r1", Outcome.REJECTED, "X", 3, now=NOW)
    written = (
        b'{"at_ms": 1740830400000, "attempt": 3, "code": "X", "outcome": "REJECTED", '
        b'"request_id": "r1", "state": "DONE"}'
    )
    assert entry.encode() == written
    assert Entry.decode(written) == entry
    sent = b'{"at_ms": 5, "attempt": 2, "code": null, "outcome": null, "request_id": "r2", '
    sent += b'"state": "SENDING"}'
    assert Entry.decode(sent).encode() == sent


def test_a_deletion_names_the_entries_and_reads_back() -> None:
    body = iti62.delete_document_set(["urn:uuid:a", "urn:uuid:b"], to="x", message_id="urn:m")
    assert iti62.action_of(body) == iti62.ACTION
    assert iti62.read_removal(body) == iti62.Removal("urn:m", ("urn:uuid:a", "urn:uuid:b"))
    with pytest.raises(iti62.Iti62Error, match="at least one"):
        iti62.delete_document_set([], to="x")
    query = iti18.get_documents(("1.2",), to="x")
    assert iti62.action_of(query) == iti18.ACTION
    with pytest.raises(iti62.Iti62Error, match="Action"):
        iti62.read_removal(query)


@pytest.mark.parametrize(
    ("unique_id", "candidates"),
    [
        ("2.25.1234", ("2.25.1234",)),
        ("1.2.250.1.213.1.1.9.4242.115022000001", ("1.2.250.1.213.1.1.9.4242.115022000001",)),
        ("1.2.250.1.9.DOC-7", ("1.2.250.1.9.DOC-7", "1.2.250.1.9^DOC-7")),
        ("LAB000001.1", ("LAB000001.1", "LAB000001^1")),
    ],
)
def test_a_document_id_is_looked_up_under_its_xds_forms(
    unique_id: str, candidates: tuple[str, ...]
) -> None:
    assert xds_ids(unique_id) == candidates
