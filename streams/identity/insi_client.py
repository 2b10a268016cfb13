"""The INSi client: récupération by traits over SOAP 1.2, HTTPS and mutual TLS.

:class:`Insi` is the seam the identity stage depends on; :class:`HttpInsiClient`
speaks to the téléservice (or the local sandbox, :mod:`sandboxes.insi`) with the
structure's certificate and the ``ContexteLPS`` / ``ContexteBAM`` headers. The one
operation serves two purposes, the ``operation`` label of calls and metrics:
``search`` (find an INS) and ``verify`` (check a held one, :mod:`streams.identity.insi`).
Each HTTP exchange has its own timeout; retriable failures (:class:`InsiUnavailable`:
timeout, connection error, 5xx, garbled answer) are tried again a bounded
number of times with exponential backoff; a circuit breaker stops calling
INSi while it is down and raises :class:`InsiCircuitOpen` at once, so callers
hold their documents and try later instead of failing them. A
:class:`InsiRejected` (SOAP ``Sender`` fault) is never retried; it still shows INSi
is up, so the breaker counts it as a success. No message, log or metric label
carries patient data.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Final, Literal, Protocol

import aiohttp

from domain.ins_traits import parse_birth_date
from relais.backoff import exponential_backoff
from relais.settings import Settings
from streams.identity.circuit_breaker import CircuitBreaker, CircuitOpen, CircuitState
from streams.identity.insi_config import InsiConfig
from streams.identity.insi_messages import (
    CONTENT_TYPE,
    MAX_ANSWER_BYTES,
    InsiAnswer,
    InsiCircuitOpen,
    InsiError,
    InsiIdentity,
    InsiRejected,
    InsiTraits,
    InsiUnavailable,
    LpsIdentity,
    build_request,
    normalised,
    parse_answer,
)

__all__ = [
    "OPERATIONS",
    "OUTCOMES",
    "HttpInsiClient",
    "Insi",
    "InsiAnswer",
    "InsiCircuitOpen",
    "InsiError",
    "InsiIdentity",
    "InsiObserver",
    "InsiRejected",
    "InsiTraits",
    "InsiUnavailable",
    "LpsIdentity",
    "Operation",
]

log = logging.getLogger(__name__)

Operation = Literal["search", "verify"]
OPERATIONS: Final = ("search", "verify")
OUTCOMES: Final = ("ok", "none", "several", "unavailable", "rejected", "circuit-open")
ANSWER_OUTCOMES: Final = {"00": "ok", "01": "none", "02": "several"}


class Insi(Protocol):
    async def retrieve(self, traits: InsiTraits, *, operation: Operation = "search") -> InsiAnswer:
        """Récupération by traits: ``00`` one identity, ``01`` none, ``02`` several."""
        ...


class InsiObserver(Protocol):
    def call(self, operation: str, outcome: str, seconds: float | None) -> None: ...

    def circuit(self, state: CircuitState) -> None: ...


class _Unobserved:
    def call(self, operation: str, outcome: str, seconds: float | None) -> None:
        return None

    def circuit(self, state: CircuitState) -> None:
        return None


class HttpInsiClient(Insi):
    """INSi at ``url`` (https://, mutual TLS); create and use it inside the running loop."""

    def __init__(
        self,
        url: str,
        *,
        lps: LpsIdentity,
        tls: ssl.SSLContext,
        timeout_s: float = 5.0,
        attempts: int = 3,
        breaker: CircuitBreaker | None = None,
        observer: InsiObserver | None = None,
        backoff: Callable[[], Iterator[float]] = exponential_backoff,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if attempts < 1 or timeout_s <= 0:
            raise ValueError("attempts >= 1 and timeout_s > 0 are required")
        if not url.startswith("https://"):
            raise ValueError("INSi is reached by https:// (mutual TLS)")
        self.url, self.lps, self._tls = url, lps, tls
        self.timeout_s, self.attempts = timeout_s, attempts
        self.breaker = breaker or CircuitBreaker()
        self._observer: InsiObserver = observer or _Unobserved()
        self._backoff, self._clock, self._sleep = backoff, clock, sleep
        self._session: aiohttp.ClientSession | None = None
        self._reported = self.breaker.state
        self._observer.circuit(self._reported)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, breaker: CircuitBreaker, observer: InsiObserver
    ) -> HttpInsiClient:
        """The identity stage's client, or a :class:`SettingsError` naming what is missing."""
        config = InsiConfig.from_settings(settings)
        return cls(
            config.url,
            lps=config.lps,
            tls=config.tls_context(),
            timeout_s=config.timeout_s,
            breaker=breaker,
            observer=observer,
        )

    async def retrieve(self, traits: InsiTraits, *, operation: Operation = "search") -> InsiAnswer:
        """Récupération by traits: ``00`` one identity, ``01`` none, ``02`` several.

        The traits are sent normalised by the national rules (:func:`normalised`); traits
        that cannot be (a name outside the rules, a birth date that is not a date) are an
        :class:`InsiRejected` at once: INSi is not called.
        """
        traits = normalised(traits)
        if parse_birth_date(traits.birth_date) is None:
            raise InsiRejected(
                "the birth date cannot be sent to INSi (InvalidTraits)", code="InvalidTraits"
            )
        return await self._call(operation, traits)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, operation: Operation, traits: InsiTraits) -> InsiAnswer:
        delays = self._backoff()
        for attempt in range(1, self.attempts + 1):
            self._admit(operation)
            try:
                return await self._attempt(operation, traits)
            except InsiUnavailable as exc:
                log.warning(
                    "INSi %s attempt %d/%d failed: %s", operation, attempt, self.attempts, exc.code
                )
                if attempt == self.attempts or self.breaker.state is CircuitState.OPEN:
                    raise
            await self._sleep(next(delays))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _admit(self, operation: Operation) -> None:
        try:
            self.breaker.guard(self._clock())
        except CircuitOpen as exc:
            self._observer.call(operation, "circuit-open", None)
            raise InsiCircuitOpen(exc.retry_at) from None
        finally:
            self._report_state()

    async def _attempt(self, operation: Operation, traits: InsiTraits) -> InsiAnswer:
        start = time.perf_counter()
        body = build_request(traits, self.lps, message_id=str(uuid.uuid4()), now=datetime.now(UTC))
        try:
            status, payload = await self._post(body)
            answer = parse_answer(status, payload)
        except InsiError as exc:
            self._settle(failed=exc.retriable)
            outcome = "unavailable" if exc.retriable else "rejected"
            self._observer.call(operation, outcome, time.perf_counter() - start)
            raise
        self._settle(failed=False)
        self._observer.call(operation, ANSWER_OUTCOMES[answer.code], time.perf_counter() - start)
        return answer

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            connector = aiohttp.TCPConnector(ssl=self._tls)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        headers = {"Content-Type": CONTENT_TYPE}
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                received = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    received += chunk
                    if len(received) > MAX_ANSWER_BYTES:
                        break
                return response.status, bytes(received)
        except TimeoutError:
            raise InsiUnavailable("INSi did not answer in time", code="Timeout") from None
        except aiohttp.ClientSSLError as exc:
            name = type(exc).__name__
            raise InsiUnavailable(f"INSi TLS handshake failed: {name}", code="TlsError") from None
        except (aiohttp.ClientError, OSError) as exc:
            name = type(exc).__name__
            raise InsiUnavailable(f"INSi unreachable: {name}", code="ConnectionError") from None

    def _settle(self, *, failed: bool) -> None:
        now = self._clock()
        if failed:
            self.breaker.record_failure(now)
        else:
            self.breaker.record_success(now)
        self._report_state()

    def _report_state(self) -> None:
        if self.breaker.state is not self._reported:
            self._reported = self.breaker.state
            self._observer.circuit(self._reported)
