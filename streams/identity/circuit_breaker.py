"""A circuit breaker as one transition table, with the clock passed in (pure).

Closed: calls go through; ``failure_threshold`` consecutive failures trip it
open. Open: every call is refused at once until ``reset_after_s`` has passed
since it opened. Half-open: one trial call goes through; its success closes
the breaker, its failure opens it again for another ``reset_after_s``. A trial
whose caller never reports (cancelled) expires after ``reset_after_s`` and
another trial is let through, so the breaker cannot stay stuck half-open.

Every change of state goes through :data:`TRANSITIONS`; an event the table does
not list for the current state raises :class:`IllegalTransition`. Results that
arrive while open belong to calls begun before it opened: they change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class CircuitState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half-open"
    OPEN = "open"


class CircuitEvent(StrEnum):
    SUCCESS = "success"  # a call answered
    FAILURE = "failure"  # a call failed, below the threshold
    TRIP = "trip"  # a call failed and the consecutive failures reach the threshold
    COOLED = "cooled"  # reset_after_s passed while open: let a trial through
    RETRIAL = "retrial"  # the half-open trial went silent: let another through


TRANSITIONS: Final[Mapping[tuple[CircuitState, CircuitEvent], CircuitState]] = {
    (CircuitState.CLOSED, CircuitEvent.SUCCESS): CircuitState.CLOSED,
    (CircuitState.CLOSED, CircuitEvent.FAILURE): CircuitState.CLOSED,
    (CircuitState.CLOSED, CircuitEvent.TRIP): CircuitState.OPEN,
    (CircuitState.OPEN, CircuitEvent.SUCCESS): CircuitState.OPEN,
    (CircuitState.OPEN, CircuitEvent.FAILURE): CircuitState.OPEN,
    (CircuitState.OPEN, CircuitEvent.COOLED): CircuitState.HALF_OPEN,
    (CircuitState.HALF_OPEN, CircuitEvent.RETRIAL): CircuitState.HALF_OPEN,
    (CircuitState.HALF_OPEN, CircuitEvent.SUCCESS): CircuitState.CLOSED,
    (CircuitState.HALF_OPEN, CircuitEvent.FAILURE): CircuitState.OPEN,
}


class IllegalTransition(Exception):
    def __init__(self, state: CircuitState, event: CircuitEvent) -> None:
        super().__init__(f"no transition from {state} on {event}")
        self.state, self.event = state, event


class CircuitOpen(Exception):
    """A call refused by an open breaker; ``retry_at`` is when a trial may go."""

    retriable = True

    def __init__(self, retry_at: float) -> None:
        super().__init__("circuit is open")
        self.retry_at = retry_at


def transition(state: CircuitState, event: CircuitEvent) -> CircuitState:
    """The table's answer, or :class:`IllegalTransition`."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


class CircuitBreaker:
    """State plus the counters the table's guards need; times are the caller's clock."""

    def __init__(self, failure_threshold: int = 5, reset_after_s: float = 30.0) -> None:
        if failure_threshold < 1 or reset_after_s <= 0:
            raise ValueError("failure_threshold >= 1 and reset_after_s > 0 are required")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_at: float | None = None

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def retry_at(self) -> float | None:
        """When an open breaker lets a trial through; None unless open."""
        if self._state is not CircuitState.OPEN or self._opened_at is None:
            return None
        return self._opened_at + self.reset_after_s

    def _fire(self, event: CircuitEvent, now: float) -> None:
        before, after = self._state, transition(self._state, event)
        self._state = after
        if after is CircuitState.OPEN and before is not CircuitState.OPEN:
            self._opened_at, self._trial_at = now, None
        elif after is CircuitState.CLOSED and before is not CircuitState.CLOSED:
            self._failures, self._opened_at, self._trial_at = 0, None, None
        elif after is CircuitState.HALF_OPEN:  # a trial goes now
            self._trial_at = now

    def ready(self, now: float) -> bool:
        """Would :meth:`allow` let a call go now? Changes nothing (no trial is taken)."""
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.OPEN:
            retry_at = self.retry_at
            return retry_at is not None and now >= retry_at
        return self._trial_at is None or now - self._trial_at >= self.reset_after_s

    def allow(self, now: float) -> bool:
        """May a call go now? Half-open answers yes once per trial (this takes the trial)."""
        if not self.ready(now):
            return False
        if self._state is CircuitState.OPEN:
            self._fire(CircuitEvent.COOLED, now)
        elif self._state is CircuitState.HALF_OPEN:
            self._fire(CircuitEvent.RETRIAL, now)
        return True

    def guard(self, now: float) -> None:
        """:meth:`allow`, raising :class:`CircuitOpen` instead of answering no."""
        if not self.allow(now):
            retry_at = self.retry_at
            if retry_at is None:  # half-open with its trial in flight
                retry_at = (self._trial_at or now) + self.reset_after_s
            raise CircuitOpen(retry_at)

    def record_success(self, now: float) -> None:
        if self._state is CircuitState.CLOSED:
            self._failures = 0
        self._fire(CircuitEvent.SUCCESS, now)

    def record_failure(self, now: float) -> None:
        if self._state is CircuitState.CLOSED:
            self._failures += 1
            trip = self._failures >= self.failure_threshold
            self._fire(CircuitEvent.TRIP if trip else CircuitEvent.FAILURE, now)
        else:
            self._fire(CircuitEvent.FAILURE, now)
