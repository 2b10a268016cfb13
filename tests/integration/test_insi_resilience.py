"""The INSi client's outages over real mutual TLS: 503, timeouts, refused connections,
bounded retries, the circuit breaker with an injected clock, and the metrics they move."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from relais.metrics import REGISTRY
from sandboxes.insi import DOMINIQUE, IDENTITIES, PATH, InsiSandbox
from streams.identity.circuit_breaker import CircuitBreaker, CircuitState
from streams.identity.insi_client import (
    HttpInsiClient,
    InsiAnswer,
    InsiCircuitOpen,
    InsiIdentity,
    InsiTraits,
    InsiUnavailable,
)
from streams.identity.insi_metrics import PrometheusInsiObserver
from tests.integration.test_insi import insi, make_client, pki, server  # noqa: F401

TRAITS = InsiTraits(**vars(DOMINIQUE.traits))
HOMONYMS = InsiTraits("MARTIN", "CLAIRE", "19850612", "F")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def calls(operation: str, outcome: str) -> float:
    labels = {"operation": operation, "outcome": outcome}
    return REGISTRY.get_sample_value("relais_insi_calls_total", labels) or 0.0


def call_count(operation: str = "search") -> float:
    labels = {"operation": operation}
    return REGISTRY.get_sample_value("relais_insi_call_seconds_count", labels) or 0.0


def circuit_gauge() -> float | None:
    return REGISTRY.get_sample_value("relais_insi_circuit_state")


def state_of(breaker: CircuitBreaker) -> CircuitState:
    return breaker.state


async def test_503_is_retried_a_bounded_number_of_times(
    server: tuple[InsiSandbox, str],  # noqa: F811
    make_client: Callable[..., HttpInsiClient],  # noqa: F811
) -> None:
    sandbox, url = server
    sandbox.unavailable = True
    client = make_client(
        url, attempts=4, breaker=CircuitBreaker(10, 30), observer=PrometheusInsiObserver()
    )
    before = calls("verify", "unavailable")
    with pytest.raises(InsiUnavailable) as caught:
        await client.retrieve(TRAITS, operation="verify")
    assert caught.value.code == "HTTP503"
    assert caught.value.retriable
    assert sandbox.requests == 4
    assert calls("verify", "unavailable") == before + 4


async def test_a_slow_insi_times_out(
    server: tuple[InsiSandbox, str],  # noqa: F811
    make_client: Callable[..., HttpInsiClient],  # noqa: F811
) -> None:
    sandbox, url = server
    sandbox.delay_s = 1.0
    client = make_client(url, timeout_s=0.2, attempts=2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(InsiUnavailable) as caught:
        await client.retrieve(TRAITS)
    assert caught.value.code == "Timeout"
    assert sandbox.requests == 2
    assert loop.time() - start < 0.95


async def test_a_refused_connection_is_unavailable(
    make_client: Callable[..., HttpInsiClient],  # noqa: F811
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(f"https://127.0.0.1:{port}{PATH}", attempts=2)
    with pytest.raises(InsiUnavailable) as caught:
        await client.retrieve(TRAITS)
    assert caught.value.code == "ConnectionError"


async def test_breaker_opens_stops_calling_and_recovers(
    server: tuple[InsiSandbox, str],  # noqa: F811
    make_client: Callable[..., HttpInsiClient],  # noqa: F811
) -> None:
    sandbox, url = server
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=30)
    client = make_client(
        url, attempts=2, breaker=breaker, clock=clock, observer=PrometheusInsiObserver()
    )
    refused, seconds = calls("search", "circuit-open"), call_count()
    sandbox.unavailable = True
    with pytest.raises(InsiUnavailable):
        await client.retrieve(TRAITS)  # 2 failures
    with pytest.raises(InsiUnavailable) as caught:
        await client.retrieve(TRAITS)  # the 3rd opens it; no 4th attempt
    assert not isinstance(caught.value, InsiCircuitOpen)
    assert breaker.state is CircuitState.OPEN
    assert circuit_gauge() == 2
    assert sandbox.requests == 3
    assert call_count() == seconds + 3

    sandbox.unavailable = False  # INSi is back, but the breaker does not know yet
    for _ in range(3):
        with pytest.raises(InsiCircuitOpen) as refused_call:
            await client.retrieve(TRAITS)
        assert refused_call.value.retry_at == 1030
    clock.now = 1029.9
    with pytest.raises(InsiCircuitOpen):
        await client.retrieve(TRAITS, operation="verify")
    assert sandbox.requests == 3  # nothing reached INSi while open
    assert calls("search", "circuit-open") == refused + 3

    clock.now = 1030.0
    assert breaker.ready(clock.now)  # a question only: the trial is not taken
    assert state_of(breaker) is CircuitState.OPEN
    answer = await client.retrieve(TRAITS)  # the trial
    assert answer == InsiAnswer("00", (InsiIdentity(**vars(DOMINIQUE)),))
    assert state_of(breaker) is CircuitState.CLOSED
    assert circuit_gauge() == 0
    assert sandbox.requests == 4


async def test_a_failed_trial_reopens(
    server: tuple[InsiSandbox, str],  # noqa: F811
    make_client: Callable[..., HttpInsiClient],  # noqa: F811
) -> None:
    sandbox, url = server
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5)
    client = make_client(
        url, attempts=3, breaker=breaker, clock=clock, observer=PrometheusInsiObserver()
    )
    sandbox.unavailable = True
    with pytest.raises(InsiUnavailable):
        await client.retrieve(HOMONYMS)
    clock.now += 5
    with pytest.raises(InsiUnavailable) as caught:
        await client.retrieve(HOMONYMS)  # the trial fails: open again, no retry
    assert not isinstance(caught.value, InsiCircuitOpen)
    assert sandbox.requests == 2
    assert (breaker.state, breaker.retry_at) == (CircuitState.OPEN, 1010)
    assert circuit_gauge() == 2
    with pytest.raises(InsiCircuitOpen):
        await client.retrieve(HOMONYMS)


async def test_concurrent_calls_share_one_session(insi: HttpInsiClient) -> None:  # noqa: F811
    answers = await asyncio.gather(
        *(insi.retrieve(InsiTraits(**vars(i.traits))) for i in IDENTITIES)
    )
    assert answers == [InsiAnswer("00", (InsiIdentity(**vars(i)),)) for i in IDENTITIES]


async def test_answer_times_are_observed(
    server: tuple[InsiSandbox, str],  # noqa: F811
    make_client: Callable[..., HttpInsiClient],  # noqa: F811
) -> None:
    _sandbox, url = server
    client = make_client(url, observer=PrometheusInsiObserver())
    ok, none, seconds = calls("verify", "ok"), calls("verify", "none"), call_count("verify")
    await client.retrieve(TRAITS, operation="verify")
    await client.retrieve(InsiTraits("NOBODY", "NOONE", "20000101", "M"), operation="verify")
    assert calls("verify", "ok") == ok + 1
    assert calls("verify", "none") == none + 1
    assert call_count("verify") == seconds + 2
