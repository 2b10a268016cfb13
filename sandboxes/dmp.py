"""A local DMP sandbox: an ITI-41 repository over mutual TLS that checks, stores and lists.

``POST /repository`` takes an IHE ITI-41 Provide and Register Document Set-b request
(:mod:`consumers.ihe.iti41`: SOAP 1.2, MTOM/XOP, WS-Addressing, the VIHF) and checks what the
DMP would:

* transport: HTTPS with a client certificate issued by the trusted CA (mutual TLS);
* envelope (a SOAP 1.2 Fault, HTTP 400): an MTOM package whose parts the envelope
  references, the WS-Addressing Action / MessageID / To, a VIHF whose XML signature
  verifies with a certificate of the trusted CA — the one that authenticated the TLS
  session — within its validity window, with every attribute the DMP requires;
* metadata (a RegistryResponse Failure with an XDS errorCode): one document entry, one
  submission set and their HasMember association, the required slots, classifications and
  identifiers, codes of the value sets (:mod:`domain.xds.codes`), a patient id that is
  an INS (OID and key) and the same in the entry, the submission set and the VIHF, the
  hash and size of the attached document, a CDA whose id is the uniqueId and whose
  recordTarget is the patient, and an RPLC target it holds for the same patient;
* the uniqueId: a document it already holds is answered Success with the warning
  ``XDSDuplicateUniqueIdInRegistry`` when its hash is the same (an idempotent re-send,
  stored once, counted in :attr:`DmpSandbox.resent`) and refused ``XDSNonIdenticalHash``
  otherwise.

``GET /documents`` lists what it holds, ``GET /documents/{unique_id}`` returns one document.
Error contexts name what is wrong, never patient data.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from cryptography import x509
from lxml import etree

from consumers.ihe import iti18, iti41, iti62
from consumers.ihe.iti41 import RegistryError, SoapFault
from consumers.ihe.mtom import MtomError
from consumers.ihe.vihf import RESOURCE_ID, SAML, VerifiedVihf
from domain.document_id import safe_parser
from domain.xds import ebrim
from relais.signals import stop_on_signals
from sandboxes.dmp_checks import (
    LOCAL_FILER,
    MAX_BODY,
    METADATA_ERROR,
    Checked,
    Faulted,
    Filed,
    Rejected,
    check_envelope,
    check_submission,
    verified_vihf,
)
from sandboxes.pki import SandboxPki, write_test_pki


class DmpSandbox:
    """The documents the sandbox holds, in memory and optionally on disk."""

    def __init__(self, ca_file: Path, store_dir: Path | None = None) -> None:
        self.ca_file = ca_file
        self.store_dir = store_dir
        self.filed: dict[str, Filed] = {}
        self.content: dict[str, bytes] = {}
        self.by_entry: dict[str, str] = {}  # entryUUID -> uniqueId
        #: requests that passed every check, by uniqueId: 1 when a document was sent once
        self.submissions: Counter[str] = Counter()
        #: idempotent re-sends (same uniqueId, same hash), answered without storing again
        self.resent: Counter[str] = Counter()
        self.rejections = 0
        #: ITI-18 stored queries answered (the sink's reconcile before a resend)
        self.queries = 0
        #: ITI-62 deletions applied, by uniqueId (a deleted document is not found any more)
        self.deletions: Counter[str] = Counter()
        #: test levers: a DMP that is down (HTTP 503), and answers held after filing (set the
        #: event to let them go) to crash a sink between its send and its commit
        self.unavailable = False
        self.hold_answers: asyncio.Event | None = None
        #: refuse every submission with this XDS error code (a DMP that says no), None: check
        self.refuse_with: str | None = None
        if store_dir:
            store_dir.mkdir(parents=True, exist_ok=True)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes(
            [
                web.post("/repository", self._provide_and_register),
                web.post("/registry", self._stored_query),
                web.get("/documents", self._list),
                web.get("/documents/{unique_id}", self._get),
                web.get("/health", self._health),
            ]
        )
        return app

    def file(
        self, content_type: str, body: bytes, *, client_cert: x509.Certificate | None = None
    ) -> tuple[int, bytes]:
        """Handle one ITI-41 request: (HTTP status, SOAP answer)."""
        relates_to = ""
        now = datetime.now(UTC)
        try:
            try:
                received = iti41.read_request(content_type, body)
            except (MtomError, iti41.Iti41Error) as exc:
                raise Faulted("rim:InvalidRequestException", str(exc)) from None
            relates_to = received.message_id
            vihf = check_envelope(received, ca_file=self.ca_file, now=now, client_cert=client_cert)
            if self.refuse_with is not None:
                raise Rejected(self.refuse_with, "refused by the sandbox operator (test lever)")
            checked = check_submission(received, vihf, now=now)
            warnings = self._register(checked)
        except Faulted as exc:
            self.rejections += 1
            return _fault(exc, relates_to)
        except Rejected as exc:
            self.rejections += 1
            return 200, iti41.registry_response(
                [RegistryError(exc.code, exc.detail)], relates_to=relates_to
            )
        return 200, iti41.registry_response(warnings, relates_to=relates_to)

    def _register(self, checked: Checked) -> Sequence[RegistryError]:
        filed = checked.filed
        held = self.filed.get(filed.unique_id)
        if held is not None:
            if held.sha1 != filed.sha1:
                raise Rejected("XDSNonIdenticalHash", "this uniqueId is held with another hash")
            self.submissions[filed.unique_id] += 1
            self.resent[filed.unique_id] += 1
            context = "this document is already held: not stored again"
            return [RegistryError(iti41.ALREADY_HELD, context, "Warning")]
        if filed.entry_uuid in self.by_entry:
            raise Rejected("XDSDuplicateUniqueIdInRegistry", "the entryUUID is already used")
        parent: Filed | None = None
        if filed.replaces is not None:
            parent_id = self.by_entry.get(filed.replaces)
            parent = self.filed.get(parent_id) if parent_id else None
            if parent is None:
                raise Rejected("UnresolvedReferenceException", "the RPLC target is not held")
            if parent.patient_id != filed.patient_id:
                raise Rejected(
                    "XDSPatientIdDoesNotMatch", "the replaced entry is another patient's"
                )
            if parent.status != "Approved":
                raise Rejected(METADATA_ERROR, "the replaced entry is already deprecated")
            filed = replace(filed, replaces=parent.unique_id)
        if parent is not None:
            self.filed[parent.unique_id] = replace(parent, status="Deprecated")
        self.filed[filed.unique_id] = filed
        self.content[filed.unique_id] = checked.content
        self.by_entry[filed.entry_uuid] = filed.unique_id
        self.submissions[filed.unique_id] += 1
        if self.store_dir:
            name = hashlib.sha256(filed.unique_id.encode()).hexdigest()[:32]
            (self.store_dir / f"{name}.xml").write_bytes(checked.content)
            (self.store_dir / f"{name}.metadata.xml").write_bytes(checked.metadata)
            (self.store_dir / f"{name}.json").write_text(json.dumps(asdict(filed)))
        return []

    async def _provide_and_register(self, request: web.Request) -> web.Response:
        if self.unavailable:
            raise web.HTTPServiceUnavailable(text="DMP sandbox: down for maintenance")
        body = await request.read()
        status, answer = self.file(
            request.headers.get("Content-Type", ""), body, client_cert=_peer(request)
        )
        if self.hold_answers is not None:
            await self.hold_answers.wait()
        return web.Response(
            status=status, body=answer, headers={"Content-Type": "application/soap+xml"}
        )

    def stored_query(
        self, body: bytes, *, client_cert: x509.Certificate | None = None
    ) -> tuple[int, bytes]:
        """ITI-18 GetDocuments: (HTTP status, AdhocQueryResponse or SOAP Fault)."""
        relates_to = ""
        try:
            try:
                query = iti18.read_query(body)
            except iti18.Iti18Error as exc:
                raise Faulted("rim:InvalidRequestException", str(exc)) from None
            relates_to = query.message_id
            self._authenticated(body, client_cert)
        except Faulted as exc:
            return _fault(exc, relates_to)
        self.queries += 1
        found = tuple(self.filed[uid].entry_uuid for uid in query.unique_ids if uid in self.filed)
        return 200, iti18.query_response(found, relates_to=relates_to)

    def _authenticated(self, body: bytes, client_cert: x509.Certificate | None) -> VerifiedVihf:
        """The VIHF of a registry request, verified; :class:`Faulted` when it fails."""
        assertion = etree.fromstring(body, safe_parser()).find(
            f".//{{{ebrim.WSSE}}}Security/{{{SAML}}}Assertion"
        )
        vihf = verified_vihf(assertion, self.ca_file, now=datetime.now(UTC))
        if client_cert is not None and vihf.certificate.subject != client_cert.subject:
            raise Faulted("wsse:FailedAuthentication", "VIHF and TLS structures differ")
        return vihf

    def delete_document_set(
        self, body: bytes, *, client_cert: x509.Certificate | None = None
    ) -> tuple[int, bytes]:
        """ITI-62: remove the named DocumentEntries (RegistryResponse, or a SOAP Fault)."""
        relates_to = ""
        try:
            try:
                removal = iti62.read_removal(body)
            except iti62.Iti62Error as exc:
                raise Faulted("rim:InvalidRequestException", str(exc)) from None
            relates_to = removal.message_id
            vihf = self._authenticated(body, client_cert)
        except Faulted as exc:
            return _fault(exc, relates_to)
        targets = [self.by_entry.get(entry) for entry in removal.entry_uuids]
        held = [self.filed[uid] for uid in targets if uid and uid in self.filed]
        if len(held) != len(targets) or any(f.status == "Deleted" for f in held):
            error = RegistryError("UnresolvedReferenceException", "no such document to delete")
            return 200, iti41.registry_response([error], relates_to=relates_to)
        if any(f.patient_id != vihf.value(RESOURCE_ID) for f in held):
            error = RegistryError("XDSPatientIdDoesNotMatch", "the VIHF is for another patient")
            return 200, iti41.registry_response([error], relates_to=relates_to)
        for filed in held:
            self.filed[filed.unique_id] = replace(filed, status="Deleted")
            self.deletions[filed.unique_id] += 1
        return 200, iti41.registry_response([], relates_to=relates_to)

    async def _stored_query(self, request: web.Request) -> web.Response:
        if self.unavailable:
            raise web.HTTPServiceUnavailable(text="DMP sandbox: down for maintenance")
        body = await request.read()
        if iti62.action_of(body) == iti62.ACTION:
            status, answer = self.delete_document_set(body, client_cert=_peer(request))
        else:
            status, answer = self.stored_query(body, client_cert=_peer(request))
        return web.Response(
            status=status, body=answer, headers={"Content-Type": "application/soap+xml"}
        )

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


def _fault(exc: Faulted, relates_to: str) -> tuple[int, bytes]:
    """HTTP 400 and the SOAP 1.2 Sender Fault of a refused request."""
    return 400, iti41.soap_fault(SoapFault("Sender", exc.code, exc.detail), relates_to=relates_to)


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
) -> tuple[web.AppRunner, DmpSandbox, int]:
    """Start the sandbox (HTTPS, mutual TLS) in the running loop; return (runner, sandbox, port)."""
    sandbox = DmpSandbox(pki.ca_cert, store_dir)
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


async def serve_forever(host: str, port: int, store_dir: Path | None, pki: SandboxPki) -> None:
    """Run the sandbox until SIGINT/SIGTERM."""
    runner, _sandbox, _port = await start_sandbox(host, port, store_dir, pki=pki)
    stop = stop_on_signals()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
