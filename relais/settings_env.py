"""Reading RELAIS_* variables: one typed, validated value per call.

:class:`Env` is what :meth:`relais.settings.Settings.from_env` and its components read
from. Each method takes the variable's name and its default; a blank value reads as
the default, and a value Relais cannot use raises
:class:`SettingsError` with the variable's name, what it holds
and what it should hold (``RELAIS_INSI_TIMEOUT_S=-5: must be a number of seconds > 0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable holds a value Relais cannot use (the message names it)."""


_YES = frozenset({"yes", "true", "1"})
_NO = frozenset({"no", "false", "0"})


class Env:
    """The environment, read one variable at a time."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self._variables = variables

    def raw(self, name: str) -> str:
        """The stripped value, ``""`` when unset."""
        return self._variables.get(name, "").strip()

    def text(self, name: str, default: str = "") -> str:
        return self.raw(name) or default

    def lower(self, name: str, default: str) -> str:
        """Case-insensitive words (log levels, TLS modes): read in lower case."""
        return self.text(name, default).lower()

    def path(self, name: str) -> Path | None:
        value = self.raw(name)
        return Path(value) if value else None

    def choice(
        self, name: str, default: str, allowed: tuple[str, ...], fold_case: bool = False
    ) -> str:
        """One of ``allowed``; with ``fold_case``, read in lower case first."""
        value = self.lower(name, default) if fold_case else self.text(name, default)
        if value not in allowed:
            expected = " or ".join(repr(a) for a in allowed)
            raise SettingsError(f"{name}={value!r}: expected {expected}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name).lower()
        if not value:
            return default
        if value not in _YES | _NO:
            raise SettingsError(f"{name}={value!r}: expected yes or no")
        return value in _YES

    def names(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Comma-separated names, blanks dropped."""
        found = tuple(p.strip() for p in self.raw(name).split(",") if p.strip())
        return found or default

    def whole(self, name: str, default: int) -> int:
        """A whole number, any sign (the callers bound it)."""
        value = self.raw(name)
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r} is not a whole number") from None

    def port(self, name: str, default: int) -> int:
        """A TCP port, 0 meaning any free one."""
        port = self.whole(name, default)
        if not 0 <= port <= 65535:
            raise SettingsError(f"{name}={port}: a port is 0 (any free one) to 65535")
        return port

    def count(self, name: str, default: int, what: str = "a whole number") -> int:
        """A count or a size: a whole number above 0 (``what`` says its unit)."""
        value = self.whole(name, default)
        if value <= 0:
            raise SettingsError(f"{name}={value}: must be {what} > 0")
        return value

    def seconds(self, name: str, default: float) -> float:
        """A duration: a finite number of seconds above 0 (nan and inf refused)."""
        value = self.raw(name)
        if not value:
            return default
        try:
            seconds = float(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r} is not a number") from None
        if not (math.isfinite(seconds) and seconds > 0):
            raise SettingsError(f"{name}={value}: must be a number of seconds > 0")
        return seconds
