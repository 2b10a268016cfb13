"""A local DMP sandbox: ITI-41, ITI-18 and ITI-62 over mutual TLS, judged from the specs.

``POST /repository`` takes an IHE ITI-41 Provide and Register Document Set-b request,
``POST /registry`` an ITI-18 Registry Stored Query or an ITI-62 Delete Document Set. The
sandbox reads them with its own code (:mod:`sandboxes.dmp_checks` and the modules it
names; docs/dmp-sandbox.md lists each check and its source), never the client's, and
judges them with the independent schemas and the ANS value sets of a data folder
(``../shared/data`` from the project root by default):

* transport: HTTPS with a client certificate issued by the trusted CA (mutual TLS);
* envelope and VIHF problems: a SOAP 1.2 Fault (HTTP 400);
* metadata, documents, signature: a RegistryResponse Failure with an XDS errorCode;
* the registry (:mod:`sandboxes.dmp_registry`) issues its own entryUUIDs.

``GET /documents`` lists what it holds, ``GET /documents/{unique_id}`` returns one document.
Error contexts name what is wrong, never patient data.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from aiohttp import web
from cryptography import x509
from lxml import etree

from relais.signals import stop_on_signals
from sandboxes import SandboxSetupError, dmp_services
from sandboxes.dmp_answers import ITI62_RESPONSE, Error, fault, query_response, registry_response
from sandboxes.dmp_checks import (
    LOCAL_FILER,
    MAX_BODY,
    Oracle,
    check_envelope,
    check_submission,
)
from sandboxes.dmp_envelope import Envelope
from sandboxes.dmp_query import ITI18, ITI62, read_query, read_removal
from sandboxes.dmp_refusals import Faulted, Rejected
from sandboxes.dmp_registry import Registry, found_elements
from sandboxes.dmp_update import register_update
from sandboxes.dmp_valuesets import ValueSetMissing, ValueSets
from sandboxes.dmp_vihf import RESOURCE_ID, Vihf, verified
from sandboxes.dmp_xml import elements, parse
from sandboxes.pki import SandboxPki, write_test_pki

#: ../shared/data from the project root: the IHE schemas (ihe-xsd/) and ANS value sets
DEFAULT_DATA_DIR: Final = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOAP12: Final = {"Content-Type": "application/soap+xml"}


def oracle_of(ca_file: Path, data_dir: Path, require_signed_submission: bool) -> Oracle:
    """What the checks judge with; :class:`SandboxSetupError` names what is missing."""
    if not (data_dir / "ihe-xsd").is_dir():
        raise SandboxSetupError(
            f"DMP sandbox: no data folder with ihe-xsd/ at {data_dir}: give it with --data-dir"
        )
    try:
        value_sets = ValueSets.load(data_dir)
    except ValueSetMissing as exc:
        raise SandboxSetupError(
            f"DMP sandbox: {exc}: give the data folder with --data-dir"
        ) from None
    return Oracle(ca_file, data_dir, value_sets, require_signed_submission)


class DmpSandbox(Registry):
    """The DMP's services over the registry (:class:`Registry` holds the documents)."""

    def __init__(
        self,
        ca_file: Path,
        store_dir: Path | None = None,
        *,
        data_dir: Path | None = None,
        require_signed_submission: bool = True,
    ) -> None:
        super().__init__(store_dir)
        self.ca_file = ca_file
        self.oracle = oracle_of(ca_file, data_dir or DEFAULT_DATA_DIR, require_signed_submission)
        #: test levers: a DMP that is down (HTTP 503), and answers held after filing (set the
        #: event to let them go) to crash a sink between its send and its commit
        self.unavailable = False
        self.hold_answers: asyncio.Event | None = None
        #: refuse every submission with this XDS error code (a DMP that says no), None: check
        self.refuse_with: str | None = None

    def routes(self) -> list[web.RouteDef]:
        """Every route the sandbox serves; other DMP services add theirs here."""
        return [
            web.post("/repository", self._provide_and_register),
            web.post("/registry", self._registry),
            web.get("/documents", self._list),
            web.get("/documents/{unique_id}", self._get),
            web.get("/health", self._health),
        ]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes(self.routes())
        self.statuses = dmp_services.register(  # TD0.2, its VIHF checked as ITI-41's
            app, authenticate=self._authenticated, down=lambda: self.unavailable
        )
        self.updates = register_update(app, self)  # ITI-57 on /registry (TD3.3b)
        return app

    def _authenticated(self, body: bytes, client_cert: x509.Certificate | None) -> Vihf:
        """The verified VIHF of a plain SOAP 1.2 request (other services of the sandbox);
        :class:`Faulted` (a :class:`sandboxes.Refusal`) when it fails."""
        try:
            root = parse(body)
        except etree.XMLSyntaxError:
            raise Faulted("rim:InvalidRequestException", "the request is not XML") from None
        assertions = elements(root, "s:Header/wsse:Security/saml:Assertion")
        return verified(
            assertions[0] if assertions else None,
            ca_file=self.ca_file,
            schema_dir=self.oracle.schema_dir,
            now=datetime.now(UTC),
            client_cert=client_cert,
        )

    def file(
        self, content_type: str, body: bytes, *, client_cert: x509.Certificate | None = None
    ) -> tuple[int, bytes]:
        """Handle one ITI-41 request: (HTTP status, SOAP answer)."""
        now = datetime.now(UTC)
        envelope: Envelope | None = None
        try:
            envelope, vihf = check_envelope(
                self.oracle, content_type, body, now=now, client_cert=client_cert
            )
            if self.refuse_with is not None:
                raise Rejected(self.refuse_with, "refused by the sandbox operator (test lever)")
            warnings = self.register(check_submission(self.oracle, envelope, vihf, now=now))
        except Faulted as exc:
            self.rejections += 1
            return _fault(exc, envelope)
        except Rejected as exc:
            self.rejections += 1
            errors = [Error(exc.code, exc.detail)]
            return 200, registry_response(errors, relates_to=_relates(envelope))
        return 200, registry_response(warnings, relates_to=_relates(envelope))

    def registry(
        self,
        content_type: str,
        body: bytes,
        *,
        client_cert: x509.Certificate | None = None,
    ) -> tuple[int, bytes]:
        """Handle one ITI-18 or ITI-62 request: (HTTP status, SOAP answer)."""
        envelope: Envelope | None = None
        try:
            envelope, vihf = check_envelope(
                self.oracle,
                content_type,
                body,
                now=datetime.now(UTC),
                client_cert=client_cert,
                action=frozenset({ITI18, ITI62}),
            )
            if envelope.action == ITI62:
                removed = read_removal(envelope, self.oracle.schema_dir)
                errors = self.delete(removed, vihf.value(RESOURCE_ID))
                answer = registry_response(
                    errors, relates_to=envelope.message_id, action=ITI62_RESPONSE
                )
                return 200, answer
            return 200, self._query(envelope)
        except Faulted as exc:
            return _fault(exc, envelope)

    def _query(self, envelope: Envelope) -> bytes:
        query = read_query(envelope, self.oracle.schema_dir)
        try:
            found = found_elements(self.find(query), query.return_type)
        except Rejected as exc:
            return query_response([], [Error(exc.code, exc.detail)], relates_to=envelope.message_id)
        return query_response(found, relates_to=envelope.message_id)

    def stored_query(
        self, body: bytes, *, client_cert: x509.Certificate | None = None
    ) -> tuple[int, bytes]:
        """ITI-18 over plain SOAP 1.2: (HTTP status, AdhocQueryResponse or SOAP Fault)."""
        return self.registry("application/soap+xml", body, client_cert=client_cert)

    def delete_document_set(
        self, body: bytes, *, client_cert: x509.Certificate | None = None
    ) -> tuple[int, bytes]:
        """ITI-62 over plain SOAP 1.2: (HTTP status, RegistryResponse or SOAP Fault)."""
        return self.registry("application/soap+xml", body, client_cert=client_cert)

    async def _provide_and_register(self, request: web.Request) -> web.Response:
        if self.unavailable:
            raise web.HTTPServiceUnavailable(text="DMP sandbox: down for maintenance")
        body = await request.read()
        status, answer = self.file(
            request.headers.get("Content-Type", ""), body, client_cert=_peer(request)
        )
        if self.hold_answers is not None:
            await self.hold_answers.wait()
        return web.Response(status=status, body=answer, headers=SOAP12)

    async def _registry(self, request: web.Request) -> web.Response:
        if self.unavailable:
            raise web.HTTPServiceUnavailable(text="DMP sandbox: down for maintenance")
        body = await request.read()
        status, answer = self.registry(
            request.headers.get("Content-Type", ""), body, client_cert=_peer(request)
        )
        return web.Response(status=status, body=answer, headers=SOAP12)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"documents": [asdict(f) for f in self.filed.values()], "rejected": self.rejections}
        )

    async def _get(self, request: web.Request) -> web.Response:
        uid = request.match_info["unique_id"]
        if uid not in self.content:
            raise web.HTTPNotFound(text=f"no document {uid}")
        return web.Response(body=self.content[uid], content_type="text/xml")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def _relates(envelope: Envelope | None) -> str:
    return envelope.message_id if envelope is not None else ""


def _fault(exc: Faulted, envelope: Envelope | None) -> tuple[int, bytes]:
    """HTTP 400 and the SOAP 1.2 Fault of a refused request."""
    return 400, fault(exc.value, exc.code, exc.detail, relates_to=_relates(envelope))


def _peer(request: web.Request) -> x509.Certificate | None:
    """The TLS client certificate of the request, when served over TLS."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der) if der else None


async def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    store_dir: Path | None = None,
    *,
    pki: SandboxPki,
    data_dir: Path | None = None,
    require_signed_submission: bool = True,
) -> tuple[web.AppRunner, DmpSandbox, int]:
    """Start the sandbox (HTTPS, mutual TLS) in the running loop; return (runner, sandbox, port)."""
    sandbox = DmpSandbox(
        pki.ca_cert,
        store_dir,
        data_dir=data_dir,
        require_signed_submission=require_signed_submission,
    )
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=pki.server_context())
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    return runner, sandbox, bound


def client_environment(pki: SandboxPki, url: str) -> dict[str, str]:
    """The RELAIS_DMP_* variables of a DMP sink that files into this sandbox at ``url``."""
    return {
        "RELAIS_DMP_URL": url,
        "RELAIS_DMP_CA_FILE": str(pki.ca_cert),
        "RELAIS_DMP_CLIENT_CERT": str(pki.client_cert),
        "RELAIS_DMP_CLIENT_KEY": str(pki.client_key),
        **LOCAL_FILER,
    }


def sandbox_pki(
    directory: Path,
    structure_id: str = LOCAL_FILER["RELAIS_DMP_STRUCTURE_ID"],
    server_names: tuple[str, ...] = (),
) -> SandboxPki:
    """The test PKI under ``directory``: the one there if complete, else a new one."""
    pki = SandboxPki.under(directory)
    if pki.usable(datetime.now(UTC), server_names):
        return pki
    return write_test_pki(directory, structure_id=structure_id, server_names=server_names)


async def serve_forever(
    host: str,
    port: int,
    store_dir: Path | None,
    pki: SandboxPki,
    data_dir: Path | None = None,
) -> None:
    """Run the sandbox until SIGINT/SIGTERM."""
    runner, _sandbox, _port = await start_sandbox(host, port, store_dir, pki=pki, data_dir=data_dir)
    stop = stop_on_signals()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
