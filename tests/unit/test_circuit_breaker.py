"""The circuit breaker: one transition table, the clock passed in, never open-and-allowing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.identity.circuit_breaker import (
    TRANSITIONS,
    CircuitBreaker,
    CircuitEvent,
    CircuitOpen,
    CircuitState,
    IllegalTransition,
    transition,
)

CLOSED, HALF_OPEN, OPEN = CircuitState.CLOSED, CircuitState.HALF_OPEN, CircuitState.OPEN


def tripped(now: float = 100.0, threshold: int = 3, reset: float = 10.0) -> CircuitBreaker:
    breaker = CircuitBreaker(threshold, reset)
    for _ in range(threshold):
        breaker.record_failure(now)
    assert breaker.state is OPEN
    return breaker


def test_table_is_the_documented_machine() -> None:
    assert TRANSITIONS == {
        (CLOSED, CircuitEvent.SUCCESS): CLOSED,
        (CLOSED, CircuitEvent.FAILURE): CLOSED,
        (CLOSED, CircuitEvent.TRIP): OPEN,
        (OPEN, CircuitEvent.SUCCESS): OPEN,
        (OPEN, CircuitEvent.FAILURE): OPEN,
        (OPEN, CircuitEvent.COOLED): HALF_OPEN,
        (HALF_OPEN, CircuitEvent.RETRIAL): HALF_OPEN,
        (HALF_OPEN, CircuitEvent.SUCCESS): CLOSED,
        (HALF_OPEN, CircuitEvent.FAILURE): OPEN,
    }


@pytest.mark.parametrize(
    ("state", "event"),
    [pair for pair in itertools.product(CircuitState, CircuitEvent) if pair not in TRANSITIONS],
)
def test_unlisted_transitions_raise(state: CircuitState, event: CircuitEvent) -> None:
    with pytest.raises(IllegalTransition) as caught:
        transition(state, event)
    assert (caught.value.state, caught.value.event) == (state, event)


def test_opens_after_n_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10)
    breaker.record_failure(0)
    breaker.record_failure(1)
    assert (breaker.state, breaker.consecutive_failures, breaker.retry_at) == (CLOSED, 2, None)
    breaker.record_failure(2)
    assert breaker.state is OPEN
    assert breaker.retry_at == 12


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=10)
    breaker.record_failure(0)
    breaker.record_success(1)
    breaker.record_failure(2)
    assert breaker.state is CLOSED


def test_open_refuses_until_reset_then_lets_one_trial() -> None:
    breaker = tripped(now=100, reset=10)
    assert not breaker.allow(100)
    assert not breaker.allow(109.999)
    assert breaker.state is OPEN
    assert breaker.allow(110)
    assert breaker.state is HALF_OPEN
    assert breaker.retry_at is None
    assert not breaker.allow(110.5)  # the trial is in flight


def test_trial_success_closes() -> None:
    breaker = tripped(now=0, reset=5)
    assert breaker.allow(5)
    breaker.record_success(6)
    assert (breaker.state, breaker.consecutive_failures) == (CLOSED, 0)
    assert breaker.allow(6)


def test_trial_failure_reopens_for_a_new_period() -> None:
    breaker = tripped(now=0, reset=5)
    assert breaker.allow(7)
    breaker.record_failure(8)
    assert breaker.state is OPEN
    assert breaker.retry_at == 13
    assert not breaker.allow(12)
    assert breaker.allow(13)


def test_a_silent_trial_expires() -> None:
    breaker = tripped(now=0, reset=5)
    assert breaker.allow(5)
    assert not breaker.allow(9)
    assert breaker.allow(10)  # the first trial never reported: another goes
    assert breaker.state is HALF_OPEN


def test_late_results_while_open_change_nothing() -> None:
    breaker = tripped(now=0, reset=5)
    breaker.record_success(1)
    breaker.record_failure(2)
    assert (breaker.state, breaker.retry_at) == (OPEN, 5)


def test_ready_asks_without_taking_the_trial() -> None:
    breaker = tripped(now=0, reset=5)
    assert not breaker.ready(4)
    assert breaker.ready(5)
    assert breaker.ready(5)
    assert breaker.state is OPEN
    assert breaker.allow(5)
    assert not breaker.ready(6)
    assert breaker.ready(10)  # the silent trial has expired


def test_guard_raises_with_retry_time() -> None:
    breaker = tripped(now=0, reset=5)
    with pytest.raises(CircuitOpen) as caught:
        breaker.guard(1)
    assert caught.value.retry_at == 5
    assert caught.value.retriable
    breaker.guard(5)  # the trial
    with pytest.raises(CircuitOpen) as caught:
        breaker.guard(6)
    assert caught.value.retry_at == 10


@pytest.mark.parametrize(("threshold", "reset"), [(0, 1.0), (1, 0.0), (2, -1.0)])
def test_parameters_are_checked(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError, match="required"):
        CircuitBreaker(threshold, reset)


steps = st.lists(
    st.tuples(
        st.sampled_from(["allow", "success", "failure"]),
        st.floats(min_value=0, max_value=7, allow_nan=False),
    ),
    max_size=80,
)


@given(
    threshold=st.integers(min_value=1, max_value=4),
    reset=st.floats(min_value=0.5, max_value=20, allow_nan=False),
    sequence=steps,
)
def test_never_allows_while_open_before_reset(
    threshold: int, reset: float, sequence: list[tuple[str, float]]
) -> None:
    breaker = CircuitBreaker(threshold, reset)
    now = 0.0
    trial_granted_at: float | None = None
    for action, elapsed in sequence:
        now += elapsed
        before, retry_at = breaker.state, breaker.retry_at
        assert (retry_at is not None) == (before is OPEN)
        if action == "allow":
            predicted = breaker.ready(now)
            assert (breaker.state, breaker.retry_at) == (before, retry_at)  # ready() only asks
            allowed = breaker.allow(now)
            assert allowed == predicted
            if before is OPEN and retry_at is not None and now < retry_at:
                assert not allowed
                assert breaker.state is OPEN
            if (
                before is HALF_OPEN
                and trial_granted_at is not None
                and now - trial_granted_at < reset
            ):
                assert not allowed  # one trial at a time
            if allowed and breaker.state is HALF_OPEN:
                trial_granted_at = now
            assert not allowed or breaker.state in {CLOSED, HALF_OPEN}
        elif action == "success":
            breaker.record_success(now)
            assert breaker.state is (OPEN if before is OPEN else CLOSED)
        else:
            breaker.record_failure(now)
            assert breaker.state is not HALF_OPEN
        if breaker.state is CLOSED:
            assert breaker.consecutive_failures < threshold
