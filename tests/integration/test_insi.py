"""The INSi client against the real sandbox server on a free port of 127.0.0.1.

Answers (00/01/02, homonyms, verification), malformed requests, outages
(503, timeouts, refused connections), bounded retries, the circuit breaker
with an injected clock, and the metrics they move.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from domain.ins import INS_NIR, INS_NIR_TEST, ins_key_valid
from ops.demo import samples
from relais.backoff import exponential_backoff
from relais.metrics import REGISTRY
from sandboxes.insi import (
    CONFLICT,
    CONFLICT_SENDER_TRAITS,
    DOMINIQUE,
    HOMONYM_BORDEAUX,
    HOMONYM_TOULOUSE,
    IDENTITIES,
    LEFEVRE,
    NDIAYE,
    SANTONI,
    SARAH_LOU,
    InsiSandbox,
    start_sandbox,
)
from streams.identity.circuit_breaker import CircuitBreaker, CircuitState
from streams.identity.insi_client import (
    HttpInsiClient,
    InsiAnswer,
    InsiCircuitOpen,
    InsiIdentity,
    InsiRejected,
    InsiTraits,
    InsiUnavailable,
)
from streams.identity.insi_metrics import PrometheusInsiObserver

HOMONYMS = InsiTraits("Martin", "Claire", "19850612", "F")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def server() -> AsyncIterator[tuple[InsiSandbox, str]]:
    runner, sandbox, port = await start_sandbox()
    try:
        yield sandbox, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., HttpInsiClient]]:
    made: list[HttpInsiClient] = []

    def make(url: str, **options: Any) -> HttpInsiClient:
        options.setdefault("backoff", lambda: exponential_backoff(0.001, 0.01))
        options.setdefault("timeout_s", 2.0)
        client = HttpInsiClient(url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def insi(
    server: tuple[InsiSandbox, str], make_client: Callable[..., HttpInsiClient]
) -> HttpInsiClient:
    return make_client(server[1], observer=PrometheusInsiObserver())


def calls(operation: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "relais_insi_calls_total", {"operation": operation, "outcome": outcome}
        )
        or 0.0
    )


def state_of(breaker: CircuitBreaker) -> CircuitState:
    return breaker.state


def circuit_gauge() -> float | None:
    return REGISTRY.get_sample_value("relais_insi_circuit_state")


def test_identity_set_is_consistent() -> None:
    assert len({i.ins for i in IDENTITIES}) == len(IDENTITIES)
    for identity in IDENTITIES:
        assert ins_key_valid(identity.ins), identity.ins
        assert identity.oid == INS_NIR_TEST
        assert identity.ins[0] == {"M": "1", "F": "2"}[identity.sex]
        assert identity.ins[1:5] == identity.birth_date[2:6]  # year and month
        assert identity.ins[5:10] == identity.birthplace_code  # COG, or 99 + country
    assert (DOMINIQUE.ins, SARAH_LOU.ins) == (samples.DOMINIQUE.ins, samples.SARAH_LOU.ins)
    assert SARAH_LOU.traits == InsiTraits(
        samples.SARAH_LOU.family,
        samples.SARAH_LOU.given,
        samples.SARAH_LOU.birth_date,
        samples.SARAH_LOU.sex,
        samples.SARAH_LOU.birthplace,
    )


async def test_search_finds_one_identity(insi: HttpInsiClient) -> None:
    p = samples.DOMINIQUE
    answer = await insi.search(InsiTraits(p.family, p.given, p.birth_date, p.sex))
    assert answer == InsiAnswer("00", (DOMINIQUE,))
    assert answer.identities[0].oid == INS_NIR_TEST


@pytest.mark.parametrize(
    ("traits", "identity"),
    [
        (InsiTraits("Garcia-Hammadi", "Sarah-Lou", "19770121", "F"), SARAH_LOU),
        (InsiTraits("GARCIA-HAMMADI", "SARAH-LOU ANNA", "19770121", "F", "01154"), SARAH_LOU),
        (InsiTraits("Lefèvre", "Jérôme", "19620917", "M"), LEFEVRE),
        (InsiTraits("N’Diaye", "Mamadou", "19881102", "M", "99341"), NDIAYE),  # noqa: RUF001
        (InsiTraits("Santoni", "Paul Antoine", "19550215", "M", "2A004"), SANTONI),
    ],
)
async def test_search_normalises_traits(
    insi: HttpInsiClient, traits: InsiTraits, identity: InsiIdentity
) -> None:
    assert await insi.search(traits) == InsiAnswer("00", (identity,))


async def test_search_finds_none(insi: HttpInsiClient) -> None:
    assert await insi.search(InsiTraits("PAT-TROIS", "DOMINIQUE", "19790329", "F")) == InsiAnswer(
        "01"
    )
    assert await insi.search(InsiTraits("GARCIA-HAMMADI", "ANNA", "19770121", "F")) == InsiAnswer(
        "01"
    )


async def test_homonyms_need_the_birthplace(insi: HttpInsiClient) -> None:
    assert await insi.search(HOMONYMS) == InsiAnswer("02")
    assert await insi.search(InsiTraits("MARTIN", "CLAIRE MARIE", "19850612", "F")) == InsiAnswer(
        "02"
    )
    for identity in (HOMONYM_BORDEAUX, HOMONYM_TOULOUSE):
        located = replace(HOMONYMS, birthplace_code=identity.birthplace_code)
        assert await insi.search(located) == InsiAnswer("00", (identity,))
    elsewhere = InsiTraits("MARTIN", "CLAIRE", "19850612", "F", "75056")
    assert await insi.search(elsewhere) == InsiAnswer("01")


async def test_verify(insi: HttpInsiClient) -> None:
    assert await insi.verify(DOMINIQUE.ins, INS_NIR_TEST, DOMINIQUE.traits) == InsiAnswer(
        "00", (DOMINIQUE,)
    )
    mismatch = await insi.verify(CONFLICT.ins, CONFLICT.oid, CONFLICT_SENDER_TRAITS)
    assert mismatch == InsiAnswer("03", (CONFLICT,))
    assert mismatch.identities[0].given_names != CONFLICT_SENDER_TRAITS.given_names
    unknown = "1" + "99019912312" + "34"
    unknown = unknown[:13] + f"{97 - int(unknown[:13]) % 97:02d}"
    assert await insi.verify(unknown, INS_NIR_TEST, DOMINIQUE.traits) == InsiAnswer("01")
    assert await insi.verify(DOMINIQUE.ins, INS_NIR, DOMINIQUE.traits) == InsiAnswer("01")


async def test_malformed_request_is_rejected_once_without_patient_data(
    server: tuple[InsiSandbox, str], insi: HttpInsiClient, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, _url = server
    before = calls("verify", "rejected")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InsiRejected) as caught:
        await insi.verify("279035121518988", INS_NIR_TEST, DOMINIQUE.traits)
    assert caught.value.code == "InvalidInsKey"
    with pytest.raises(InsiRejected, match="NotAnInsOid"):
        await insi.verify(DOMINIQUE.ins, "1.2.250.1.213.1.4.2", DOMINIQUE.traits)
    with pytest.raises(InsiRejected, match="InvalidField"):
        await insi.search(InsiTraits("PAT-TROIS", "DOMINIQUE", "1979-03-28", "F"))
    assert sandbox.calls == {"verify": 2, "search": 1}  # never retried
    assert sandbox.faults == 3
    assert insi.breaker.state is CircuitState.CLOSED  # INSi answered: it is up
    assert "279035121518988" not in str(caught.value)
    assert "PAT-TROIS" not in caplog.text
    assert calls("verify", "rejected") == before + 2


async def test_503_is_retried_a_bounded_number_of_times(
    server: tuple[InsiSandbox, str], make_client: Callable[..., HttpInsiClient]
) -> None:
    sandbox, url = server
    sandbox.unavailable = True
    client = make_client(
        url, attempts=4, breaker=CircuitBreaker(10, 30), observer=PrometheusInsiObserver()
    )
    before = calls("search", "unavailable")
    with pytest.raises(InsiUnavailable) as caught:
        await client.search(DOMINIQUE.traits)
    assert caught.value.code == "HTTP503"
    assert caught.value.retriable
    assert sandbox.calls["search"] == 4
    assert calls("search", "unavailable") == before + 4


async def test_a_slow_insi_times_out(
    server: tuple[InsiSandbox, str], make_client: Callable[..., HttpInsiClient]
) -> None:
    sandbox, url = server
    sandbox.delay_s = 1.0
    client = make_client(url, timeout_s=0.1, attempts=2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(InsiUnavailable) as caught:
        await client.search(DOMINIQUE.traits)
    assert caught.value.code == "Timeout"
    assert sandbox.calls["search"] == 2
    assert loop.time() - start < 0.9


async def test_a_refused_connection_is_unavailable(
    make_client: Callable[..., HttpInsiClient],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}", attempts=2)
    with pytest.raises(InsiUnavailable) as caught:
        await client.verify(DOMINIQUE.ins, INS_NIR_TEST, DOMINIQUE.traits)
    assert caught.value.code == "ConnectionError"


async def test_breaker_opens_stops_calling_and_recovers(
    server: tuple[InsiSandbox, str], make_client: Callable[..., HttpInsiClient]
) -> None:
    sandbox, url = server
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=30)
    client = make_client(
        url, attempts=2, breaker=breaker, clock=clock, observer=PrometheusInsiObserver()
    )
    refused, seconds = calls("search", "circuit-open"), _call_count()
    sandbox.unavailable = True
    with pytest.raises(InsiUnavailable):
        await client.search(DOMINIQUE.traits)  # 2 failures
    with pytest.raises(InsiUnavailable) as caught:
        await client.search(DOMINIQUE.traits)  # the 3rd opens it; no 4th attempt
    assert not isinstance(caught.value, InsiCircuitOpen)
    assert breaker.state is CircuitState.OPEN
    assert circuit_gauge() == 2
    assert sandbox.calls["search"] == 3
    assert _call_count() == seconds + 3

    sandbox.unavailable = False  # INSi is back, but the breaker does not know yet
    for _ in range(3):
        with pytest.raises(InsiCircuitOpen) as refused_call:
            await client.search(DOMINIQUE.traits)
        assert refused_call.value.retry_at == 1030
    clock.now = 1029.9
    with pytest.raises(InsiCircuitOpen):
        await client.verify(DOMINIQUE.ins, INS_NIR_TEST, DOMINIQUE.traits)
    assert sandbox.calls == {"search": 3}  # nothing reached INSi while open
    assert calls("search", "circuit-open") == refused + 3

    clock.now = 1030.0
    assert breaker.ready(clock.now)  # a question only: the trial is not taken
    assert state_of(breaker) is CircuitState.OPEN
    assert await client.search(DOMINIQUE.traits) == InsiAnswer("00", (DOMINIQUE,))  # the trial
    assert state_of(breaker) is CircuitState.CLOSED
    assert circuit_gauge() == 0
    assert sandbox.calls["search"] == 4


async def test_a_failed_trial_reopens(
    server: tuple[InsiSandbox, str], make_client: Callable[..., HttpInsiClient]
) -> None:
    sandbox, url = server
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5)
    client = make_client(
        url, attempts=3, breaker=breaker, clock=clock, observer=PrometheusInsiObserver()
    )
    sandbox.unavailable = True
    with pytest.raises(InsiUnavailable):
        await client.search(HOMONYMS)
    clock.now += 5
    with pytest.raises(InsiUnavailable) as caught:
        await client.search(HOMONYMS)  # the trial fails: open again, no retry
    assert not isinstance(caught.value, InsiCircuitOpen)
    assert sandbox.calls["search"] == 2
    assert (breaker.state, breaker.retry_at) == (CircuitState.OPEN, 1010)
    assert circuit_gauge() == 2
    with pytest.raises(InsiCircuitOpen):
        await client.search(HOMONYMS)


async def test_concurrent_calls_share_one_session(insi: HttpInsiClient) -> None:
    answers = await asyncio.gather(*(insi.search(i.traits) for i in IDENTITIES))
    assert answers == [InsiAnswer("00", (i,)) for i in IDENTITIES]


async def test_answer_times_are_observed(
    server: tuple[InsiSandbox, str], make_client: Callable[..., HttpInsiClient]
) -> None:
    _sandbox, url = server
    client = make_client(url, observer=PrometheusInsiObserver())
    ok, seconds = calls("verify", "ok"), _call_count("verify")
    mismatch = calls("verify", "mismatch")
    await client.verify(SARAH_LOU.ins, INS_NIR_TEST, SARAH_LOU.traits)
    await client.verify(CONFLICT.ins, INS_NIR_TEST, CONFLICT_SENDER_TRAITS)
    assert calls("verify", "ok") == ok + 1
    assert calls("verify", "mismatch") == mismatch + 1
    assert _call_count("verify") == seconds + 2


def _call_count(operation: str = "search") -> float:
    return (
        REGISTRY.get_sample_value("relais_insi_call_seconds_count", {"operation": operation}) or 0.0
    )


async def test_sandbox_health_and_media_type(server: tuple[InsiSandbox, str]) -> None:
    _sandbox, url = server
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/health") as response:
            assert await response.json() == {"status": "ok"}
        async with session.post(
            f"{url}/insi", data=b"{}", headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 415
            assert b"UnsupportedMediaType" in await response.read()
