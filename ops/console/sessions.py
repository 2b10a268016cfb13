"""Who is signed in (server-side, in memory) and who tried too often (pure).

A session is a random 32-byte token (the HttpOnly, SameSite=Strict cookie), the operator
and a CSRF token every form sends back; it ends at sign-out or ``session_s`` after it
began. Sessions live in the process: a restart signs everyone out.

A session ends, too, when its account is no longer the one that signed in: removed, or
made again (a new password: another salt and hash, so another fingerprint).

Sign-in attempts are counted per name, before the password is checked: after
:data:`MAX_FAILURES` in :data:`WINDOW_S` seconds the name is refused until the oldest
leaves the window (a success forgets them). Per client address and in all, too, but those
shared limits refuse only a name that failed lately: nobody can lock everyone out.
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
        gone or is another one than signed in (its fingerprint changed: a password reset),
        with the account's current roles else."""
        if operator is None or operator.fingerprint != session.operator.fingerprint:
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


@dataclass(frozen=True)
class Refusal:
    """A sign-in refused: by which limit (``name``, ``client`` or ``all``), for how long."""

    limit: str
    wait_s: float

    def message(self, name: str) -> str:
        """What the sign-in page says: which limit, and when to try again."""
        wait = f"try again in {self.wait_s:.0f} s"
        if self.limit == "name":
            return f"too many failed sign-ins for {name}: {wait}"
        lately = f"and {name} failed lately: {wait}"
        if self.limit == "client":
            return (
                "too many failed sign-ins from this network address (every name together; "
                f"behind a proxy, all operators share it) {lately}"
            )
        return f"too many failed sign-ins on the console (everyone together) {lately}"


@dataclass
class SignInLimiter:
    """Sign-in attempts in a sliding window, counted *before* the password is checked (a
    burst of parallel guesses counts whole): per name, per client address, and in all.

    The per-name limit refuses the name; the per-client and global ones refuse only a name
    with recent attempts that did not succeed (so nobody, behind a shared proxy address or
    not, can lock out an operator who has not failed). A success forgets the name's
    attempts; empty windows are dropped, and the map keeps ``kept`` names or clients at
    most: beyond, those with the fewest attempts go first (a flood of new names cannot
    sweep a guessed name's window away).
    """

    max_failures: int = MAX_FAILURES
    window_s: float = WINDOW_S
    per_client: int = PER_CLIENT
    in_all: int = IN_ALL
    kept: int = KEPT
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

    def _wait_s(self, attempts: deque[float], most: int) -> float:
        return max(attempts[-most] + self.window_s - self.clock(), 0.0)

    def refused(self, name: str, client: str = "") -> Refusal | None:
        """None when ``name`` (from ``client``) may try; else which limit and how long."""
        own = self._recent(f"n:{name}")
        if len(own) >= self.max_failures:
            return Refusal("name", self._wait_s(own, self.max_failures))
        if not own:  # no recent failure: the shared limits never refuse it
            return None
        for limit, key, most in (
            ("client", f"c:{client}", self.per_client),
            ("all", "*", self.in_all),
        ):
            attempts = self._recent(key)
            if len(attempts) >= most:
                return Refusal(limit, self._wait_s(attempts, most))
        return None

    def attempt(self, name: str, client: str = "") -> Refusal | None:
        """Count one attempt unless refused (then which limit, and for how long)."""
        refusal = self.refused(name, client)
        if refusal is None:
            self.failed(name, client)  # counted now: a success takes it back
        return refusal

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
        """Sweep the windows gone by (once a window, or when the map is full); still full,
        keep the three quarters with the most attempts (everyone's always)."""
        if len(self._attempts) <= self.kept and self.clock() - self._swept < self.window_s:
            return
        self._swept = self.clock()
        for key in list(self._attempts):
            self._recent(key)
        if len(self._attempts) <= self.kept:
            return
        fewest = sorted(
            (k for k in self._attempts if k != "*"), key=lambda k: len(self._attempts[k])
        )
        for key in fewest[: len(self._attempts) - self.kept * 3 // 4]:
            del self._attempts[key]


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
