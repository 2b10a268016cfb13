"""What the notification core refuses (drawn with the other consumers' errors in :mod:`consumers`).

None of them is retried: a request the notifier cannot use is dead-lettered, a ledger
record that does not read back is counted and skipped, an illegal transition is a bug.
"""

from __future__ import annotations

from relais.deadletter import StageFailure


class NotifyError(Exception):
    """Anything the notification core refuses."""


class NotifyInputError(StageFailure, NotifyError):
    """A delivery request the notifier cannot use."""

    reason_code = "notify-request-invalid"


class LedgerError(NotifyError):
    """A ledger record that does not read back."""


class IllegalTransition(NotifyError):
    """A ledger state change the life-cycle table does not allow."""
