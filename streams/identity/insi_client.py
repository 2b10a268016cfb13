"""The INSi client: traits search and verification of a held INS, over SOAP/HTTP.

:class:`Insi` is the seam the identity stage depends on; :class:`HttpInsiClient`
speaks to the téléservice (or the local sandbox, :mod:`sandboxes.insi`). Each
HTTP exchange has its own timeout; retriable failures (:class:`InsiUnavailable`:
timeout, connection error, 5xx, garbled answer) are tried again a bounded
number of times with exponential backoff; a circuit breaker stops calling
INSi while it is down and raises :class:`InsiCircuitOpen` at once, so callers
hold their documents and try later instead of failing them. A
:class:`InsiRejected` (SOAP Client fault) is never retried; it still shows INSi
is up, so the breaker counts it as a success. No message, log or metric label
carries patient data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Final, Protocol

import aiohttp

from relais.backoff import exponential_backoff
from streams.identity.circuit_breaker import CircuitBreaker, CircuitOpen, CircuitState
from streams.identity.insi_messages import (
    ACTIONS,
    MAX_ANSWER_BYTES,
    InsiAnswer,
    InsiCircuitOpen,
    InsiError,
    InsiIdentity,
    InsiRejected,
    InsiTraits,
    InsiUnavailable,
    Operation,
    build_search_request,
    build_verify_request,
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
]

log = logging.getLogger(__name__)

OPERATIONS: Final = ("search", "verify")
OUTCOMES: Final = ("ok", "none", "several", "mismatch", "unavailable", "rejected", "circuit-open")
ANSWER_OUTCOMES: Final = {"00": "ok", "01": "none", "02": "several", "03": "mismatch"}


class Insi(Protocol):
    async def search(self, traits: InsiTraits) -> InsiAnswer: ...

    async def verify(self, ins: str, oid: str, traits: InsiTraits) -> InsiAnswer: ...


class InsiObserver(Protocol):
    def call(self, operation: str, outcome: str, seconds: float | None) -> None: ...

    def circuit(self, state: CircuitState) -> None: ...


class _Unobserved:
    def call(self, operation: str, outcome: str, seconds: float | None) -> None:
        return None

    def circuit(self, state: CircuitState) -> None:
        return None


class HttpInsiClient(Insi):
    """INSi over HTTP at ``{base_url}/insi``; create and use it inside the running loop."""

    def __init__(
        self,
        base_url: str,
        *,
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
        self.url = base_url.rstrip("/") + "/insi"
        self.timeout_s, self.attempts = timeout_s, attempts
        self.breaker = breaker or CircuitBreaker()
        self._observer: InsiObserver = observer or _Unobserved()
        self._backoff, self._clock, self._sleep = backoff, clock, sleep
        self._session: aiohttp.ClientSession | None = None
        self._reported = self.breaker.state
        self._observer.circuit(self._reported)

    async def search(self, traits: InsiTraits) -> InsiAnswer:
        """Récupération by traits: ``00`` one identity, ``01`` none, ``02`` several."""
        return await self._call("search", build_search_request(traits))

    async def verify(self, ins: str, oid: str, traits: InsiTraits) -> InsiAnswer:
        """Vérification of a held INS: ``00`` agrees, ``01`` unknown, ``03`` traits differ."""
        return await self._call("verify", build_verify_request(ins, oid, traits))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, operation: Operation, body: bytes) -> InsiAnswer:
        delays = self._backoff()
        for attempt in range(1, self.attempts + 1):
            self._admit(operation)
            try:
                return await self._attempt(operation, body)
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

    async def _attempt(self, operation: Operation, body: bytes) -> InsiAnswer:
        start = time.perf_counter()
        try:
            status, payload = await self._post(operation, body)
            answer = parse_answer(operation, status, payload)
        except InsiError as exc:
            self._settle(failed=exc.retriable)
            outcome = "unavailable" if exc.retriable else "rejected"
            self._observer.call(operation, outcome, time.perf_counter() - start)
            raise
        self._settle(failed=False)
        self._observer.call(operation, ANSWER_OUTCOMES[answer.code], time.perf_counter() - start)
        return answer

    async def _post(self, operation: Operation, body: bytes) -> tuple[int, bytes]:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{ACTIONS[operation]}"',
        }
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
