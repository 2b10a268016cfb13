"""The RNIV life cycle as one table: every path to QUAL needs INSi and an ID document."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.identity.status import (
    TRANSITIONS,
    Event,
    IllegalTransition,
    Status,
    apply,
    parse_status,
    transition,
    with_declared,
)


def test_table_is_total() -> None:
    assert set(TRANSITIONS) == set(itertools.product(Status, Event))


@pytest.mark.parametrize(
    ("start", "events", "end"),
    [
        (Status.PROV, [Event.INSI_CONFIRMED], Status.RECUP),
        (Status.PROV, [Event.DOCUMENT_CHECKED], Status.VALI),
        (Status.RECUP, [Event.DOCUMENT_CHECKED], Status.QUAL),
        (Status.VALI, [Event.INSI_CONFIRMED], Status.QUAL),
        (Status.QUAL, [Event.TRAITS_CHANGED], Status.PROV),
        (Status.PROV, [Event.INSI_CONFIRMED, Event.INSI_CONFIRMED], Status.RECUP),
    ],
)
def test_paths(start: Status, events: list[Event], end: Status) -> None:
    assert apply(start, events) == end


@given(st.lists(st.sampled_from(list(Event)), max_size=12))
def test_qual_only_after_both_insi_and_document_since_the_last_traits_change(
    events: list[Event],
) -> None:
    status = apply(Status.PROV, events)
    tail = (
        events[len(events) - events[::-1].index(Event.TRAITS_CHANGED) :]
        if Event.TRAITS_CHANGED in events
        else events
    )
    qualified = Event.INSI_CONFIRMED in tail and Event.DOCUMENT_CHECKED in tail
    assert (status is Status.QUAL) == qualified


def test_declared_status_is_read_as_events() -> None:
    assert with_declared(Status.PROV, "QUAL") is Status.QUAL
    assert with_declared(Status.PROV, "VALI") is Status.VALI
    assert with_declared(Status.RECUP, "VALI") is Status.QUAL  # INSi earlier + ID document now
    assert with_declared(Status.PROV, "whatever") is Status.PROV
    assert parse_status(None) is Status.PROV


def test_an_unknown_event_is_illegal() -> None:
    with pytest.raises(IllegalTransition):
        transition(Status.PROV, "teleport")  # type: ignore[arg-type]
