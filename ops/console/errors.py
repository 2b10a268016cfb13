"""The console's exception tree (drawn in :mod:`ops.console`)."""

from __future__ import annotations


class ConsoleError(Exception):
    """Something the console cannot do; the message says what to fix."""


class AccountError(ConsoleError):
    """The accounts file or one account: missing, unreadable, duplicated, unknown."""


class Refused(ConsoleError):
    """An action the console refuses (a safeguard, a missing keyring, a bad form)."""
