"""Who is signed in (server-side, in memory) and who tried too often (pure).

A session is a random 32-byte token (the HttpOnly, SameSite=Strict cookie), the operator
and a CSRF token every form sends back; it ends at sign-out or ``session_s`` after it
began. Sessions live in the process: a restart signs everyone out.

Failed sign-ins are counted per name: after :data:`MAX_FAILURES` in :data:`WINDOW_S`
seconds the name is refused until the oldest failure leaves the window.
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic

from ops.console.accounts import Operator

COOKIE = "relais_console"
MAX_FAILURES = 5
WINDOW_S = 60.0


@dataclass(frozen=True)
class Session:
    token: str
    operator: Operator
    csrf: str
    expires_at: float

    def csrf_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(self.csrf.encode(), given.encode())


@dataclass
class SessionStore:
    """The live sessions, by token; expired ones are dropped when met."""

    session_s: float
    clock: Callable[[], float] = monotonic
    _sessions: dict[str, Session] = field(default_factory=dict)

    def begin(self, operator: Operator) -> Session:
        self._forget_expired()
        session = Session(
            token=secrets.token_urlsafe(32),
            operator=operator,
            csrf=secrets.token_urlsafe(32),
            expires_at=self.clock() + self.session_s,
        )
        self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if session.expires_at <= self.clock():
            del self._sessions[token]
            return None
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def _forget_expired(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[token]


@dataclass
class SignInLimiter:
    """Failed sign-ins per name in a sliding window."""

    max_failures: int = MAX_FAILURES
    window_s: float = WINDOW_S
    clock: Callable[[], float] = monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, name: str) -> deque[float]:
        failures = self._failures.setdefault(name, deque())
        while failures and failures[0] <= self.clock() - self.window_s:
            failures.popleft()
        return failures

    def refused_for_s(self, name: str) -> float | None:
        """None when ``name`` may try; else how many seconds until it may again."""
        failures = self._recent(name)
        if len(failures) < self.max_failures:
            return None
        return max(failures[0] + self.window_s - self.clock(), 0.0)

    def failed(self, name: str) -> None:
        self._recent(name).append(self.clock())

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
