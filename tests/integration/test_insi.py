"""The INSi client against the real sandbox over HTTPS and mutual TLS on 127.0.0.1.

The sandbox as an oracle (a request without ContexteLPS, without ContexteBAM, with a
wrong action or body is refused, the right one accepted), answers 00/01/02, the
narrowing after a 02 (every first name, then the birthplace), verification of a held
INS, and the TLS handshake without a certificate. Outages and the circuit breaker:
test_insi_resilience.py.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree

from domain.ins import INS_NIR, INS_NIR_TEST, ins_key_valid
from domain.ins_traits import Traits
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
    LUCIE_ANNE,
    NDIAYE,
    PATH,
    SANTONI,
    SARAH_LOU,
    Identity,
    InsiSandbox,
    sandbox_pki,
    start_sandbox,
)
from sandboxes.pki import SandboxPki
from streams.identity.insi import insi_verifier, retrieve
from streams.identity.insi_client import (
    HttpInsiClient,
    InsiAnswer,
    InsiIdentity,
    InsiRejected,
    InsiTraits,
    InsiUnavailable,
    LpsIdentity,
)
from streams.identity.insi_config import client_tls
from streams.identity.insi_messages import CONTENT_TYPE, NS_CTXBAM, NS_CTXLPS, build_request
from streams.identity.insi_metrics import PrometheusInsiObserver
from streams.identity.rules import InsiOutcome

LPS = LpsIdentity("TEST-IDAM-0001", "Relais", "0.1.0", "relais-test", "1120459876")
HOMONYMS = InsiTraits("Martin", "Claire", "19850612", "F")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return sandbox_pki(Path(tmp_path_factory.mktemp("insi-pki")))


@pytest.fixture
async def server(pki: SandboxPki) -> AsyncIterator[tuple[InsiSandbox, str]]:
    runner, sandbox, port = await start_sandbox(pki=pki)
    try:
        yield sandbox, f"https://127.0.0.1:{port}{PATH}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def make_client(pki: SandboxPki) -> AsyncIterator[Callable[..., HttpInsiClient]]:
    made: list[HttpInsiClient] = []

    def make(url: str, **options: Any) -> HttpInsiClient:
        options.setdefault("backoff", lambda: exponential_backoff(0.001, 0.01))
        options.setdefault("timeout_s", 2.0)
        options.setdefault("lps", LPS)
        options.setdefault("tls", client_tls(pki.client_cert, pki.client_key, pki.ca_cert))
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


def found(identity: Identity) -> InsiAnswer:
    """The answer the client reads for the sandbox's ``identity``."""
    return InsiAnswer("00", (InsiIdentity(**vars(identity)),))


def held(identity: Identity | Traits) -> dict[str, Any]:
    """A record's traits dict (what the identity stage verifies)."""
    ins = getattr(identity, "ins", "")
    return {**vars(identity if isinstance(identity, Traits) else identity.traits), "ins": ins}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


DOMINIQUE_TRAITS = InsiTraits(**vars(DOMINIQUE.traits))


def request_body(traits: InsiTraits = DOMINIQUE_TRAITS) -> bytes:
    return build_request(traits, LPS, message_id=str(uuid.uuid4()), now=datetime.now(UTC))


def without(body: bytes, namespace: str, name: str) -> bytes:
    root = etree.fromstring(body)
    for element in root.iter(f"{{{namespace}}}{name}"):
        element.getparent().remove(element)  # type: ignore[union-attr]
    return bytes(etree.tostring(root))


async def post(pki: SandboxPki, url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    tls = client_tls(pki.client_cert, pki.client_key, pki.ca_cert)
    headers = {"Content-Type": content_type}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.read()


def test_identity_set_is_consistent() -> None:
    assert len({i.ins for i in IDENTITIES}) == len(IDENTITIES)
    for identity in IDENTITIES:
        assert ins_key_valid(identity.ins), identity.ins
        assert identity.oid == INS_NIR_TEST
        assert identity.ins[0] == {"M": "1", "F": "2"}[identity.sex]
        assert identity.ins[1:5] == identity.birth_date[2:6]  # year and month
        assert identity.ins[5:10] == identity.birthplace_code  # COG, or 99 + country
    assert (DOMINIQUE.ins, SARAH_LOU.ins) == (samples.DOMINIQUE.ins, samples.SARAH_LOU.ins)


WRONG = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"


@pytest.mark.parametrize(
    ("spoil", "code"),
    [
        (lambda b, t: (without(b, NS_CTXLPS, "ContexteLPS"), t), "MissingContexteLPS"),
        (lambda b, t: (without(b, NS_CTXBAM, "ContexteBAM"), t), "MissingContexteBAM"),
        (lambda b, t: (without(b, NS_CTXLPS, "IDAM"), t), "InvalidContexteLPS"),
        (lambda b, t: (b, t.replace(t.split('"')[1], WRONG)), "ActionMismatch"),
        (lambda b, t: (b[:-40], t), "MalformedXml"),
        (lambda b, t: (b.replace(b"Sexe>F<", b"Sexe>X<"), t), "InvalidField"),
        (lambda b, t: (b, "text/xml; charset=utf-8"), "UnsupportedMediaType"),
    ],
)
async def test_the_sandbox_refuses_a_wrong_request_and_accepts_the_right_one(
    server: tuple[InsiSandbox, str], pki: SandboxPki, spoil: Any, code: str
) -> None:
    sandbox, url = server
    wrong_body, wrong_type = spoil(request_body(), CONTENT_TYPE)
    status, answer = await post(pki, url, wrong_body, wrong_type)
    assert status in {415, 500}
    assert f'code="{code}"'.encode() in answer
    assert sandbox.faults == {code: 1}
    assert sandbox.asked == []
    status, answer = await post(pki, url, request_body(), CONTENT_TYPE)
    assert status == 200
    assert b"<res:CodeCR>00</res:CodeCR>" in answer
    assert sandbox.answers == {"00": 1}


async def test_retrieve_finds_one_identity(insi: HttpInsiClient) -> None:
    p = samples.DOMINIQUE
    answer = await insi.retrieve(InsiTraits(p.family, p.given, p.birth_date, p.sex))
    assert answer == found(DOMINIQUE)
    assert answer.identities[0].oid == INS_NIR_TEST


@pytest.mark.parametrize(
    ("traits", "identity"),
    [
        (InsiTraits("Garcia-Hammadi", "Sarah-Lou", "19770121", "F"), SARAH_LOU),
        (InsiTraits("GARCIA-HAMMADI", "SARAH-LOU ANNA", "19770121", "F", "01154"), SARAH_LOU),
        (InsiTraits("Lefèvre", "Jérôme", "19620917", "M"), LEFEVRE),
        (InsiTraits("N’Diaye", "Mamadou", "19881102", "M", "99341"), NDIAYE),  # noqa: RUF001
        (InsiTraits("Santoni", "Antoine", "19550215", "M", "2A004"), SANTONI),
    ],
)
async def test_retrieve_normalises_traits(
    insi: HttpInsiClient, traits: InsiTraits, identity: Identity
) -> None:
    assert await insi.retrieve(traits) == found(identity)


async def test_retrieve_finds_none(insi: HttpInsiClient) -> None:
    assert await insi.retrieve(InsiTraits("PAT-TROIS", "DOMINIQUE", "19790329", "F")) == (
        InsiAnswer("01")
    )
    assert await insi.retrieve(InsiTraits("GARCIA-HAMMADI", "LOU", "19770121", "F")) == (
        InsiAnswer("01")
    )


async def test_02_then_found_with_every_first_name(
    server: tuple[InsiSandbox, str], insi: HttpInsiClient
) -> None:
    sandbox, _url = server
    observer = PrometheusInsiObserver()
    before = sample("relais_insi_narrowings_total", operation="search", narrowing="first-names")
    traits = InsiTraits("Bernard", "Lucie Anne", "19900315", "F", "75056")
    assert await retrieve(insi, traits, observer=observer) == found(LUCIE_ANNE)
    assert [t.given_names for t in sandbox.asked] == ["LUCIE", "LUCIE ANNE"]
    assert [t.birthplace_code for t in sandbox.asked] == [None, None]
    assert sandbox.answers == {"02": 1, "00": 1}
    after = sample("relais_insi_narrowings_total", operation="search", narrowing="first-names")
    assert after == before + 1


async def test_02_then_found_with_the_birthplace(
    server: tuple[InsiSandbox, str], insi: HttpInsiClient
) -> None:
    sandbox, _url = server
    observer = PrometheusInsiObserver()
    before = sample("relais_insi_narrowings_total", operation="search", narrowing="birthplace")
    for identity in (HOMONYM_BORDEAUX, HOMONYM_TOULOUSE):
        traits = InsiTraits(**vars(identity.traits))
        assert await retrieve(insi, traits, observer=observer) == found(identity)
    assert sandbox.answers == {"02": 4, "00": 2}
    assert [t.birthplace_code for t in sandbox.asked[:3]] == [None, None, "33063"]
    after = sample("relais_insi_narrowings_total", operation="search", narrowing="birthplace")
    assert after == before + 2
    # without a birthplace to add, INSi's 02 stands: no identity is guessed
    assert await retrieve(insi, replace(HOMONYMS, given_names="CLAIRE MARIE")) == InsiAnswer("02")


@pytest.mark.parametrize(
    ("record", "outcome", "label"),
    [
        (held(DOMINIQUE), "00", "agree"),
        (held(SANTONI), "00", "agree"),
        (held(HOMONYM_TOULOUSE), "00", "agree"),  # after narrowing to the birthplace
        ({**held(CONFLICT_SENDER_TRAITS), "ins": CONFLICT.ins}, "mismatch", "disagree"),
        ({**held(DOMINIQUE), "ins": SARAH_LOU.ins}, "mismatch", "disagree"),
        ({**held(DOMINIQUE), "ins_oid": INS_NIR}, "mismatch", "disagree"),
        ({**held(DOMINIQUE), "birthplace_code": "51454"}, "mismatch", "disagree"),
        ({**held(LEFEVRE), "birth_date": "19620918"}, "01", "unknown"),
    ],
)
async def test_verification_is_a_retrieval_and_a_comparison(
    insi: HttpInsiClient, record: dict[str, Any], outcome: str, label: str
) -> None:
    observer = PrometheusInsiObserver()
    record = {"ins_oid": INS_NIR_TEST, **record}
    before = sample("relais_insi_verifications_total", outcome=label)
    assert await insi_verifier(insi, observer=observer)(record) == InsiOutcome(outcome)
    assert sample("relais_insi_verifications_total", outcome=label) == before + 1


async def test_a_client_without_certificate_is_refused_at_the_handshake(
    server: tuple[InsiSandbox, str], make_client: Callable[..., HttpInsiClient], pki: SandboxPki
) -> None:
    sandbox, url = server
    bare = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca_cert))
    client = make_client(url, tls=bare, attempts=1)
    with pytest.raises(InsiUnavailable) as caught:
        await client.retrieve(DOMINIQUE_TRAITS)
    assert caught.value.code in {"TlsError", "ConnectionError"}
    assert sandbox.requests == 0  # no HTTP request got through
    stranger = sandbox_pki(pki.ca_cert.parent.parent / "stranger-pki")
    other = make_client(
        url,
        tls=client_tls(stranger.client_cert, stranger.client_key, pki.ca_cert),
        attempts=1,
    )
    with pytest.raises(InsiUnavailable):
        await other.retrieve(DOMINIQUE_TRAITS)
    assert sandbox.requests == 0


async def test_a_refused_request_is_not_retried_and_names_no_patient(
    server: tuple[InsiSandbox, str], insi: HttpInsiClient
) -> None:
    sandbox, _url = server
    before = sample("relais_insi_calls_total", operation="search", outcome="rejected")
    with pytest.raises(InsiRejected) as caught:
        await insi.retrieve(InsiTraits("PAT-TROIS", "DOMINIQUE", "19790328", "F", "5X215"))
    assert caught.value.code == "InvalidField"
    assert "5X215" not in str(caught.value)
    assert "PAT-TROIS" not in str(caught.value)
    assert sandbox.requests == 1
    after = sample("relais_insi_calls_total", operation="search", outcome="rejected")
    assert after == before + 1
    with pytest.raises(InsiRejected, match="InvalidTraits"):
        await insi.retrieve(InsiTraits("PAT-TROIS", "DOMINIQUE", "19791332", "F"))
    with pytest.raises(InsiRejected, match="A-Z") as caught:
        await insi.retrieve(InsiTraits("PAT-TROIS", "D0MINIQUE", "19790328", "F"))
    assert "D0MINIQUE" not in str(caught.value)
    assert sandbox.requests == 1  # neither sent


async def test_sandbox_health(server: tuple[InsiSandbox, str], pki: SandboxPki) -> None:
    _sandbox, url = server
    tls = client_tls(pki.client_cert, pki.client_key, pki.ca_cert)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session,
        session.get(url.replace(PATH, "/health")) as response,
    ):
        assert await response.json() == {"status": "ok"}


def test_http_is_refused() -> None:
    tls = ssl.create_default_context()
    with pytest.raises(ValueError, match="https://"):
        HttpInsiClient("http://127.0.0.1:39181/lps", lps=LPS, tls=tls)
