"""Who is signed in (server-side, in memory) and who tried too often (pure).

A session is a random 32-byte token (the HttpOnly, SameSite=Strict cookie), the operator
and a CSRF token every form sends back; it ends at sign-out or ``session_s`` after it
began. Sessions live in the process: a restart signs everyone out.

Sign-in attempts are counted per name, before the password is checked: after
:data:`MAX_FAILURES` in :data:`WINDOW_S` seconds the name is refused until the oldest
leaves the window (a success forgets them); per client address and in all, too.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from time import monotonic
from typing import TypeVar

from ops.console.accounts import Operator

T = TypeVar("T")
COOKIE = "relais_console"
MAX_FAILURES = 5
WINDOW_S = 60.0
PER_CLIENT = 30  # attempts of one client address (all names) in the window
IN_ALL = 120  # attempts of everyone in the window
KEPT = 4096  # names and clients remembered at most


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

    def renew(self, session: Session, operator: Operator | None) -> Session | None:
        """The session with its account as it is now: ended (None) when the account is
        gone, with the account's current roles else."""
        if operator is None:
            self._sessions.pop(session.token, None)
            return None
        if operator != session.operator:
            session = replace(session, operator=operator)
            self._sessions[session.token] = session
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
    """Sign-in attempts in a sliding window, counted *before* the password is checked (a
    burst of parallel guesses counts whole): per name, per client address, and in all.

    A success forgets the name's attempts; empty windows are dropped, and the map keeps
    :data:`KEPT` names or clients at most (the global cap bounds it well below).
    """

    max_failures: int = MAX_FAILURES
    window_s: float = WINDOW_S
    per_client: int = PER_CLIENT
    in_all: int = IN_ALL
    clock: Callable[[], float] = monotonic
    _attempts: dict[str, deque[float]] = field(default_factory=dict)
    _swept: float = float("-inf")

    def __len__(self) -> int:
        """How many names and clients it remembers now."""
        return len(self._attempts)

    def _recent(self, key: str) -> deque[float]:
        attempts = self._attempts.get(key, deque())
        while attempts and attempts[0] <= self.clock() - self.window_s:
            attempts.popleft()
        if not attempts:
            self._attempts.pop(key, None)
        return attempts

    def refused_for_s(self, name: str, client: str = "") -> float | None:
        """None when ``name`` (from ``client``) may try; else the seconds until it may."""
        for key, most in ((f"n:{name}", self.max_failures), (f"c:{client}", self.per_client)):
            attempts = self._recent(key)
            if len(attempts) >= most:
                return max(attempts[-most] + self.window_s - self.clock(), 0.0)
        everyone = self._recent("*")
        if len(everyone) >= self.in_all:
            return max(everyone[-self.in_all] + self.window_s - self.clock(), 0.0)
        return None

    def attempt(self, name: str, client: str = "") -> float | None:
        """Count one attempt unless refused (then how many seconds until it may)."""
        wait_s = self.refused_for_s(name, client)
        if wait_s is None:
            for key in (f"n:{name}", f"c:{client}", "*"):
                self._attempts.setdefault(key, self._recent(key)).append(self.clock())
            self._bound()
        return wait_s

    def failed(self, name: str, client: str = "") -> None:
        """An attempt that was not counted before (:meth:`attempt` counts it already)."""
        for key in (f"n:{name}", f"c:{client}", "*"):
            self._attempts.setdefault(key, self._recent(key)).append(self.clock())
        self._bound()

    def succeeded(self, name: str, client: str = "") -> None:
        """A good password: the name's attempts are forgotten, this one not counted."""
        self._attempts.pop(f"n:{name}", None)
        for key in (f"c:{client}", "*"):
            attempts = self._recent(key)
            if attempts:
                attempts.pop()

    def _bound(self) -> None:
        """Sweep the windows gone by (once a window, or when the map is full)."""
        if len(self._attempts) <= KEPT and self.clock() - self._swept < self.window_s:
            return
        self._swept = self.clock()
        for key in list(self._attempts):
            self._recent(key)
        while len(self._attempts) > KEPT:  # still full: the oldest windows go first
            del self._attempts[next(iter(self._attempts))]


@dataclass
class PasswordChecks:
    """Password checks (scrypt: tens of milliseconds of CPU each) on their own small pool,
    so that the index's queries on the default pool are never starved; ``pending`` checks
    at most at once (running or waiting): beyond, :meth:`busy` says so."""

    workers: int = 2
    pending: int = 16
    _gate: asyncio.Semaphore | None = None
    _pool: ThreadPoolExecutor | None = None

    def _parts(self) -> tuple[asyncio.Semaphore, ThreadPoolExecutor]:
        if self._gate is None or self._pool is None:
            self._gate = asyncio.Semaphore(self.pending)
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="console-scrypt")
        return self._gate, self._pool

    def busy(self) -> bool:
        return self._parts()[0].locked()

    async def run(self, call: Callable[[], T]) -> T:
        gate, pool = self._parts()
        async with gate:
            return await asyncio.get_running_loop().run_in_executor(pool, call)
