"""A local INSi sandbox: an HTTP server speaking the SOAP 1.1 exchange of
:mod:`streams.identity.insi_messages` over a set of fictitious test identities.

``POST /insi`` (``Content-Type: text/xml``, ``SOAPAction`` naming the
operation) takes ``rechercherInsAvecTraitsIdentite`` (birth name, birth first
names, birth date, sex, optional birthplace COG) or ``verifierIns`` (matricule,
OID and the same traits). It checks the request as a strict service would and
answers a SOAP Fault (``soap:Client``, HTTP 500 per SOAP 1.1, or 415 for a
wrong media type) whose detail code names the problem: ``MalformedXml``,
``NotSoapEnvelope``, ``EmptyBody``, ``UnknownOperation``, ``SoapActionMismatch``,
``UnexpectedField``, ``MissingField``, ``InvalidField``, ``InvalidInsKey``,
``NotAnInsOid``, ``UnsupportedMediaType``.

Matching compares traits after normalisation (upper case, no diacritics):
birth name, birth date and sex must be equal; the given first names must be
the leading names of INSi's list (the first at least, more to narrow); the
birthplace, when given, must be equal. Search answers ``00`` (one identity),
``01`` (none) or ``02`` (several; none disclosed). Verification answers ``00``
(known, traits agree), ``01`` (matricule unknown to that OID) or ``03`` (known,
traits disagree; INSi's identity is returned).

For tests: ``unavailable`` makes it answer HTTP 503, ``delay_s`` delays every
answer, ``calls`` counts requests per operation (by ``SOAPAction``).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from lxml import etree

from domain.document_id import safe_parser
from domain.ins import INS_NIR_TEST, INS_OIDS, ins_key_valid
from relais.signals import stop_on_signals
from sandboxes import Refusal
from streams.identity.insi_messages import (
    ACTIONS,
    BODIES,
    NAMESPACES,
    SOAP_ENV,
    TRAIT_FIELDS,
    InsiAnswer,
    InsiIdentity,
    InsiTraits,
    Operation,
    build_answer,
    build_fault,
    normalise_trait,
)

MAX_BODY: Final = 64 << 10
TEST: Final = INS_NIR_TEST
# Fictitious identities on the test OID; each matricule agrees with its sex, birth
# year and month and birthplace, and has a correct key (tests/integration/test_insi.py).
DOMINIQUE: Final = InsiIdentity(
    "279035121518989", TEST, "PAT-TROIS", "DOMINIQUE", "19790328", "F", "51215"
)
SARAH_LOU: Final = InsiIdentity(
    "277010115400329", TEST, "GARCIA-HAMMADI", "SARAH-LOU ANNA", "19770121", "F", "01154"
)
HOMONYM_BORDEAUX: Final = InsiIdentity(
    "285063306301222", TEST, "MARTIN", "CLAIRE MARIE", "19850612", "F", "33063"
)
HOMONYM_TOULOUSE: Final = InsiIdentity(
    "285063155504725", TEST, "MARTIN", "CLAIRE MARIE", "19850612", "F", "31555"
)
CONFLICT: Final = InsiIdentity(
    "291045935008808", TEST, "DURAND", "HELENE MARIE", "19910405", "F", "59350"
)
# What a sender holds for CONFLICT's INS: the first given names swapped.
CONFLICT_SENDER_TRAITS: Final = InsiTraits("DURAND", "MARIE HELENE", "19910405", "F", "59350")
LEFEVRE: Final = InsiIdentity(
    "162094410907193", TEST, "LEFEVRE", "JEROME FRANCOIS", "19620917", "M", "44109"
)
NDIAYE: Final = InsiIdentity(
    "188119934112354", TEST, "N'DIAYE", "MAMADOU ABDOULAYE", "19881102", "M", "99341"
)
SANTONI: Final = InsiIdentity(
    "155022A00403316", TEST, "SANTONI", "PAUL ANTOINE", "19550215", "M", "2A004"
)
IDENTITIES: Final = (
    DOMINIQUE,
    SARAH_LOU,
    HOMONYM_BORDEAUX,
    HOMONYM_TOULOUSE,
    CONFLICT,
    LEFEVRE,
    NDIAYE,
    SANTONI,
)

NAME = re.compile(r"^[A-Z](?:[A-Z' -]{0,98}[A-Z])?$")
DATE = re.compile(r"^[0-9]{4}(?:0[0-9]|1[0-2])(?:[0-2][0-9]|3[01])$")
SEX = re.compile(r"^[MF]$")
COG = re.compile(r"^(?:[0-9]{5}|2[AB][0-9]{3})$")
MATRICULE = re.compile(r"^[1-478][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{8}$")


class MalformedRequest(Refusal):
    """A request INSi cannot read: a SOAP Client fault (HTTP 500 by default, as SOAP 1.1 says)."""

    default_status = 500


@dataclass(frozen=True)
class InsiRequest:
    operation: Operation
    traits: InsiTraits
    ins: str | None = None
    oid: str | None = None


def _operation(payload: etree._Element) -> Operation:
    for operation in ACTIONS:
        if payload.tag == f"{{{NAMESPACES[operation]}}}{BODIES[operation]}":
            return operation
    raise MalformedRequest("UnknownOperation", "the SOAP Body holds no known operation")


def _payload(body: bytes) -> etree._Element:
    try:
        tree = etree.fromstring(body, safe_parser()).getroottree()
    except etree.XMLSyntaxError:
        raise MalformedRequest("MalformedXml", "the request is not well-formed XML") from None
    if tree.docinfo.internalDTD is not None:  # any DOCTYPE, internal subset or not
        raise MalformedRequest("MalformedXml", "a SOAP message must not have a DTD")
    root = tree.getroot()
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise MalformedRequest("NotSoapEnvelope", "the root is not a SOAP 1.1 Envelope")
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None or len(soap_body) != 1:
        raise MalformedRequest("EmptyBody", "the SOAP Body must hold exactly one operation")
    return soap_body[0]


def _fields(payload: etree._Element, ns: str, allowed: set[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for child in payload:
        name = etree.QName(child).localname
        if etree.QName(child).namespace != ns or name not in allowed or name in fields:
            raise MalformedRequest("UnexpectedField", f"unexpected or repeated element {name}")
        fields[name] = (child.text or "").strip()
    return fields


def _required(fields: dict[str, str], name: str) -> str:
    if not fields.get(name):
        raise MalformedRequest("MissingField", f"{name} is required")
    return fields[name]


def _checked(name: str, value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.match(value):
        raise MalformedRequest("InvalidField", f"{name} has an invalid format")
    return value


def _traits(fields: dict[str, str]) -> InsiTraits:
    birthplace = fields.get("LieuNaissance") or None
    return InsiTraits(
        birth_name=_checked(
            "NomNaissance", normalise_trait(_required(fields, "NomNaissance")), NAME
        ),
        given_names=" ".join(
            _checked("Prenoms", given, NAME)
            for given in normalise_trait(_required(fields, "Prenoms")).split()
        ),
        birth_date=_checked("DateNaissance", _required(fields, "DateNaissance"), DATE),
        sex=_checked("Sexe", _required(fields, "Sexe"), SEX),
        birthplace_code=None if birthplace is None else _checked("LieuNaissance", birthplace, COG),
    )


def parse_request(body: bytes, soap_action: str | None) -> InsiRequest:
    """Validate one request; raise :class:`MalformedRequest` naming the problem."""
    payload = _payload(body)
    operation = _operation(payload)
    if (soap_action or "").strip().strip('"') != ACTIONS[operation]:
        raise MalformedRequest("SoapActionMismatch", "SOAPAction does not name the operation")
    ns = NAMESPACES[operation]
    allowed = {name for _attribute, name in TRAIT_FIELDS}
    if operation == "search":
        return InsiRequest("search", _traits(_fields(payload, ns, allowed)))
    fields = _fields(payload, ns, allowed | {"Matricule", "OID"})
    ins = _checked("Matricule", _required(fields, "Matricule").upper(), MATRICULE)
    if not ins_key_valid(ins):
        raise MalformedRequest("InvalidInsKey", "the matricule fails its key check")
    oid = _required(fields, "OID")
    if oid not in INS_OIDS:
        raise MalformedRequest("NotAnInsOid", "the OID is not an INS assigning authority")
    return InsiRequest("verify", _traits(fields), ins, oid)


def traits_agree(identity: InsiIdentity, traits: InsiTraits) -> bool:
    """Do the (normalised) traits designate ``identity``? See the module's rules."""
    held = normalise_trait(identity.given_names).split()
    given = normalise_trait(traits.given_names).split()
    return (
        normalise_trait(identity.birth_name) == normalise_trait(traits.birth_name)
        and identity.birth_date == traits.birth_date
        and identity.sex == traits.sex
        and bool(given)
        and held[: len(given)] == given
        and traits.birthplace_code in {None, identity.birthplace_code}
    )


class InsiSandbox:
    """The identities INSi knows, the two operations, and fault injection for tests."""

    def __init__(self, identities: tuple[InsiIdentity, ...] = IDENTITIES) -> None:
        self.identities = identities
        self.unavailable = False
        self.delay_s = 0.0
        self.calls: Counter[str] = Counter()
        self.faults = 0

    def search(self, traits: InsiTraits) -> InsiAnswer:
        found = tuple(i for i in self.identities if traits_agree(i, traits))
        if not found:
            return InsiAnswer("01")
        return InsiAnswer("00", found) if len(found) == 1 else InsiAnswer("02")

    def verify(self, ins: str, oid: str, traits: InsiTraits) -> InsiAnswer:
        held = next((i for i in self.identities if (i.ins, i.oid) == (ins, oid)), None)
        if held is None:
            return InsiAnswer("01")
        return InsiAnswer("00" if traits_agree(held, traits) else "03", (held,))

    def answer(self, request: InsiRequest) -> InsiAnswer:
        if request.operation == "search":
            return self.search(request.traits)
        return self.verify(str(request.ins), str(request.oid), request.traits)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes([web.post("/insi", self._post), web.get("/health", self._health)])
        return app

    def _count(self, soap_action: str | None) -> None:
        action = (soap_action or "").strip().strip('"')
        self.calls[next((op for op, a in ACTIONS.items() if a == action), "unknown")] += 1

    async def _post(self, request: web.Request) -> web.Response:
        self._count(request.headers.get("SOAPAction"))
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        if self.unavailable:
            return web.Response(status=503, text="INSi sandbox unavailable")
        body = await request.read()
        try:
            if request.content_type != "text/xml":
                raise MalformedRequest("UnsupportedMediaType", "SOAP 1.1 needs text/xml", 415)
            parsed = parse_request(body, request.headers.get("SOAPAction"))
        except MalformedRequest as exc:
            self.faults += 1
            fault = build_fault(exc.code, exc.detail)
            return web.Response(body=fault, status=exc.status, content_type="text/xml")
        answer = build_answer(parsed.operation, self.answer(parsed))
        return web.Response(body=answer, content_type="text/xml", charset="utf-8")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "unavailable" if self.unavailable else "ok"})


async def start_sandbox(
    host: str = "127.0.0.1", port: int = 0, identities: tuple[InsiIdentity, ...] = IDENTITIES
) -> tuple[web.AppRunner, InsiSandbox, int]:
    """Start the sandbox in the running loop; return (runner, sandbox, port)."""
    sandbox = InsiSandbox(identities)
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    return runner, sandbox, bound


async def serve_forever(host: str = "127.0.0.1", port: int = 0) -> None:
    """Run the sandbox until SIGINT/SIGTERM."""
    runner, _sandbox, _port = await start_sandbox(host, port)
    stop = stop_on_signals()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
