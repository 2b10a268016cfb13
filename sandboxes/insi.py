"""A local INSi sandbox: the récupération by traits over HTTPS and mutual TLS.

``POST /lps`` takes ``rechercherInsAvecTraitsIdentite`` in the teleservice's SOAP 1.2
shape (:mod:`sandboxes.insi_soap`, docs/insi.md) from a client presenting a
certificate of the test PKI (the TLS handshake fails without one). It refuses, with
a SOAP 1.2 ``Sender`` fault (HTTP 500, as INSi answers) whose ``siram:Erreur`` code
names the problem, a request without ``ContexteLPS`` or ``ContexteBAM``, with a wrong
action, or with a body out of the schema (``MalformedXml``, ``NotSoap12Envelope``,
``MissingContexteLPS``, ``InvalidContexteLPS``, ``MissingContexteBAM``,
``InvalidContexteBAM``, ``MissingAction``, ``ActionMismatch``, ``MissingMessageID``,
``EmptyBody``, ``UnknownOperation``, ``UnexpectedField``, ``InvalidField``,
``UnsupportedMediaType``).

It answers ``CR`` ``00`` (one identity: matricule, OID and the five traits), ``01``
(none) or ``02`` (several; none disclosed) over fictitious identities on the test
OID. Matching (an assumption, docs/insi.md): birth name, birth date and sex equal;
every first name asked among the identity's birth first names; the birthplace,
when asked, equal. It imports nothing from Relais's client: only the domain's
vocabulary (:mod:`domain.ins`, :mod:`domain.ins_traits`).

For tests: ``unavailable`` answers HTTP 503, ``delay_s`` delays every answer;
``requests`` counts the requests that reached it, ``asked`` lists the traits of each
valid one, ``answers`` and ``faults`` count the codes given.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from aiohttp import web

from domain.ins import INS_NIR_TEST
from domain.ins_traits import Traits
from relais.signals import stop_on_signals
from sandboxes.insi_soap import BadRequest, read_request, write_answer, write_fault
from sandboxes.pki import SandboxPki, write_test_pki

MAX_BODY: Final = 64 << 10
PATH: Final = "/lps"
TEST: Final = INS_NIR_TEST
#: What the sandbox's clients put in ContexteLPS (any IDAM is accepted here).
SANDBOX_IDAM: Final = "RELAIS-SANDBOX-IDAM"
SANDBOX_EMITTER: Final = "1120459876"


@dataclass(frozen=True)
class Identity:
    """An identity as the sandbox's INSi holds it (birth date ``YYYYMMDD``)."""

    ins: str
    oid: str
    birth_name: str
    given_names: str
    birth_date: str
    sex: str
    birthplace_code: str | None

    @property
    def traits(self) -> Traits:
        return Traits(
            self.birth_name, self.given_names, self.birth_date, self.sex, self.birthplace_code
        )


# Fictitious identities on the test OID; each matricule agrees with its sex, birth
# year and month and birthplace, and has a correct key (tests/integration/test_insi.py).
DOMINIQUE: Final = Identity(
    "279035121518989", TEST, "PAT-TROIS", "DOMINIQUE", "19790328", "F", "51215"
)
SARAH_LOU: Final = Identity(
    "277010115400329", TEST, "GARCIA-HAMMADI", "SARAH-LOU ANNA", "19770121", "F", "01154"
)
HOMONYM_BORDEAUX: Final = Identity(
    "285063306301222", TEST, "MARTIN", "CLAIRE MARIE", "19850612", "F", "33063"
)
HOMONYM_TOULOUSE: Final = Identity(
    "285063155504725", TEST, "MARTIN", "CLAIRE MARIE", "19850612", "F", "31555"
)
# Namesakes born the same day in the same town, told apart by their second first name.
LUCIE_ANNE: Final = Identity(
    "290037505612352", TEST, "BERNARD", "LUCIE ANNE", "19900315", "F", "75056"
)
LUCIE_MARIE: Final = Identity(
    "290037505612451", TEST, "BERNARD", "LUCIE MARIE", "19900315", "F", "75056"
)
CONFLICT: Final = Identity(
    "291045935008808", TEST, "DURAND", "HELENE MARIE", "19910405", "F", "59350"
)
# What a sender holds for CONFLICT's INS: the first given names swapped.
CONFLICT_SENDER_TRAITS: Final = Traits("DURAND", "MARIE HELENE", "19910405", "F", "59350")
LEFEVRE: Final = Identity(
    "162094410907193", TEST, "LEFEVRE", "JEROME FRANCOIS", "19620917", "M", "44109"
)
NDIAYE: Final = Identity(
    "188119934112354", TEST, "N'DIAYE", "MAMADOU ABDOULAYE", "19881102", "M", "99341"
)
SANTONI: Final = Identity(
    "155022A00403316", TEST, "SANTONI", "PAUL ANTOINE", "19550215", "M", "2A004"
)
IDENTITIES: Final = (
    DOMINIQUE,
    SARAH_LOU,
    HOMONYM_BORDEAUX,
    HOMONYM_TOULOUSE,
    LUCIE_ANNE,
    LUCIE_MARIE,
    CONFLICT,
    LEFEVRE,
    NDIAYE,
    SANTONI,
)


def matches(identity: Identity, asked: Traits) -> bool:
    """Do the asked traits designate ``identity``? See the module's rules."""
    held = identity.given_names.split()
    given = asked.given_names.split()
    return (
        identity.birth_name == asked.birth_name
        and identity.birth_date == asked.birth_date
        and identity.sex == asked.sex
        and bool(given)
        and all(given.count(name) <= held.count(name) for name in given)
        and asked.birthplace_code in {None, identity.birthplace_code}
    )


def media_action(content_type: str) -> tuple[str, str | None]:
    """The media type and its ``action`` parameter (SOAP 1.2 over HTTP)."""
    kind, *parameters = (part.strip() for part in content_type.split(";"))
    action = None
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "action":
            action = value.strip().strip('"')
    return kind.lower(), action


class InsiSandbox:
    """The identities INSi knows, the récupération, and fault injection for tests."""

    def __init__(self, identities: tuple[Identity, ...] = IDENTITIES) -> None:
        self.identities = identities
        self.unavailable = False
        self.delay_s = 0.0
        self.requests = 0
        self.asked: list[Traits] = []
        self.answers: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()

    def search(self, asked: Traits) -> tuple[str, Identity | None]:
        """``00`` and the one identity, ``01`` none, ``02`` several."""
        found = [i for i in self.identities if matches(i, asked)]
        if len(found) == 1:
            return "00", found[0]
        return ("02" if found else "01"), None

    def respond(self, body: bytes, content_type: str) -> web.Response:
        """The answer to one request body (a SOAP answer or fault)."""
        try:
            kind, action = media_action(content_type)
            if kind != "application/soap+xml":
                raise BadRequest("UnsupportedMediaType", "SOAP 1.2 needs application/soap+xml", 415)
            asked = read_request(body, action)
        except BadRequest as exc:
            self.faults[exc.code] += 1
            fault = write_fault(exc.code, exc.detail)
            return web.Response(body=fault, status=exc.status, content_type="application/soap+xml")
        self.asked.append(asked)
        code, identity = self.search(asked)
        self.answers[code] += 1
        found = None if identity is None else (identity.ins, identity.oid, identity.traits)
        return web.Response(
            body=write_answer(code, found), content_type="application/soap+xml", charset="utf-8"
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes([web.post(PATH, self._post), web.get("/health", self._health)])
        return app

    async def _post(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        if self.unavailable:
            return web.Response(status=503, text="INSi sandbox unavailable")
        body = await request.read()
        return self.respond(body, request.headers.get("Content-Type", ""))

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "unavailable" if self.unavailable else "ok"})


def sandbox_pki(directory: Path, server_names: tuple[str, ...] = ()) -> SandboxPki:
    """The test PKI under ``directory``: the one there if complete, else a new one."""
    pki = SandboxPki.under(directory)
    if pki.usable(datetime.now(UTC), server_names):
        return pki
    return write_test_pki(
        directory,
        structure_id=SANDBOX_EMITTER,
        ca_name="RELAIS TEST INSI CA",
        server_names=server_names,
    )


def client_environment(pki: SandboxPki, url: str) -> dict[str, str]:
    """The RELAIS_INSI_* variables of an identity stage that asks this sandbox at ``url``."""
    return {
        "RELAIS_INSI_URL": url,
        "RELAIS_INSI_CA_FILE": str(pki.ca_cert),
        "RELAIS_INSI_CLIENT_CERT": str(pki.client_cert),
        "RELAIS_INSI_CLIENT_KEY": str(pki.client_key),
        "RELAIS_INSI_IDAM": SANDBOX_IDAM,
        "RELAIS_INSI_EMITTER": SANDBOX_EMITTER,
    }


async def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    identities: tuple[Identity, ...] = IDENTITIES,
    *,
    pki: SandboxPki,
) -> tuple[web.AppRunner, InsiSandbox, int]:
    """Start the sandbox (HTTPS, mutual TLS) in the running loop; return (runner, sandbox, port)."""
    sandbox = InsiSandbox(identities)
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=pki.server_context())
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    return runner, sandbox, bound


async def serve_forever(host: str, port: int, pki: SandboxPki) -> None:
    """Run the sandbox until SIGINT/SIGTERM."""
    runner, _sandbox, _port = await start_sandbox(host, port, pki=pki)
    stop = stop_on_signals()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
