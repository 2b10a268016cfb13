"""A local DMP sandbox: an HTTP server that checks, stores and lists documents.

``POST /documents`` takes a CDA with its XDS identifiers as headers (see
:mod:`consumers.dmp_submission`) and answers JSON ``{"status": "success"}``,
``{"status": "duplicate"}`` for a document it already holds, or
``{"status": "failure", "code": ..., "detail": ...}`` with HTTP 400/409.
It checks what a repository would: the patient id is an INS (OID and key),
the hash matches, the CDA is a well-formed ClinicalDocument whose id is the
unique id and whose recordTarget is that patient. ``GET /documents`` lists
what it holds, ``GET /documents/{unique_id}`` returns one document.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from lxml import etree

from consumers.xds_codes import (
    CLASS_CODES,
    CONFIDENTIALITY_CODES,
    FACILITY_TYPES,
    FORMAT_CODES,
    PRACTICE_SETTINGS,
    TYPE_CODES,
)
from producers.document_id import HL7V3, cda_id, safe_parser, xpath_strings
from relais.signals import stop_on_signals
from sandboxes import Refusal
from streams.ins import INS_OIDS, ins_key_valid

PATIENT_CX = re.compile(r"^(?P<ins>[0-9AB]{15})\^\^\^&(?P<oid>[0-9.]+)&ISO\^NH$")
MAX_BODY = 32 << 20


class Rejected(Refusal):
    """The DMP refuses the submission (HTTP 400, 409 for a duplicate unique id)."""


@dataclass(frozen=True)
class Filed:
    unique_id: str
    patient_id: str
    type_code: str
    sha256: str
    size_bytes: int
    received_at: str


def check(headers: Mapping[str, str], body: bytes) -> Filed:
    """Validate one submission; raise :class:`Rejected` with a DMP-style code."""
    unique_id = headers.get("X-Document-UniqueId", "")
    if not unique_id:
        raise Rejected("MissingUniqueId", "X-Document-UniqueId is required")
    match = PATIENT_CX.match(headers.get("X-Patient-Id", ""))
    if not match:
        raise Rejected("InvalidPatientId", "X-Patient-Id must be <INS>^^^&<OID>&ISO^NH")
    ins, oid = match["ins"], match["oid"]
    if oid not in INS_OIDS:
        raise Rejected("UnknownPatientIdDomain", f"{oid} is not an INS assigning authority")
    if not ins_key_valid(ins):
        raise Rejected("InvalidPatientId", "INS matricule fails its key check")
    digest = hashlib.sha256(body).hexdigest()
    if headers.get("X-Content-SHA256", "").lower() != digest:
        raise Rejected("HashMismatch", "X-Content-SHA256 does not match the document")
    try:
        root = etree.fromstring(body, safe_parser())
    except etree.XMLSyntaxError:
        raise Rejected("InvalidDocument", "document is not well-formed XML") from None
    if root.tag != f"{{{HL7V3}}}ClinicalDocument":
        raise Rejected("InvalidDocument", "document is not an HL7 CDA ClinicalDocument")
    if cda_id(body) != unique_id:
        raise Rejected("UniqueIdMismatch", "ClinicalDocument/id differs from the unique id")
    targets = xpath_strings(
        root, "v3:recordTarget/v3:patientRole/v3:id[@root=$oid]/@extension", oid=oid
    )
    if ins not in targets:
        raise Rejected("PatientMismatch", "recordTarget does not carry the submitted INS")
    check_metadata(headers.get("X-XDS-Metadata", ""), unique_id, match.group(0), body)
    return Filed(
        unique_id=unique_id,
        patient_id=match.group(0),
        type_code=headers.get("X-Document-TypeCode", ""),
        sha256=digest,
        size_bytes=len(body),
        received_at=datetime.now(UTC).isoformat(),
    )


CODED_FIELDS = {
    "class_code": CLASS_CODES,
    "type_code": TYPE_CODES,
    "format_code": FORMAT_CODES,
    "healthcare_facility_type": FACILITY_TYPES,
    "practice_setting": PRACTICE_SETTINGS,
}


def check_metadata(raw: str, unique_id: str, patient_id: str, body: bytes) -> None:
    """The DocumentEntry must describe this very document with codes of the value sets."""
    try:
        entry = json.loads(raw) if raw else None
    except ValueError:
        entry = None
    if not isinstance(entry, dict):
        raise Rejected("MissingMetadata", "X-XDS-Metadata (the DocumentEntry, JSON) is required")
    if entry.get("unique_id") != unique_id or entry.get("patient_id") != patient_id:
        raise Rejected(
            "MetadataMismatch", "DocumentEntry uniqueId/patientId differ from the request"
        )
    if entry.get("hash_sha1") != hashlib.sha1(body).hexdigest() or entry.get("size") != len(body):  # noqa: S324 - XDS hash is SHA-1
        raise Rejected("MetadataMismatch", "DocumentEntry hash/size do not match the document")
    for name, value_set in CODED_FIELDS.items():
        coded = entry.get(name) or {}
        if value_set.find(str(coded.get("code")), str(coded.get("scheme"))) is None:
            raise Rejected("UnknownCode", f"DocumentEntry {name} is not in {value_set.name}")
    for coded in entry.get("confidentiality") or [{}]:
        if CONFIDENTIALITY_CODES.find(str(coded.get("code")), str(coded.get("scheme"))) is None:
            raise Rejected("UnknownCode", "DocumentEntry confidentialityCode is not in JDV_J08")


class DmpSandbox:
    """The documents the sandbox holds, in memory and optionally on disk."""

    def __init__(self, store_dir: Path | None = None) -> None:
        self.store_dir = store_dir
        self.filed: dict[str, Filed] = {}
        self.content: dict[str, bytes] = {}
        self.rejections = 0
        if store_dir:
            store_dir.mkdir(parents=True, exist_ok=True)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes(
            [
                web.post("/documents", self._post),
                web.get("/documents", self._list),
                web.get("/documents/{unique_id}", self._get),
                web.get("/health", self._health),
            ]
        )
        return app

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            filed = check(request.headers, body)
            held = self.filed.get(filed.unique_id)
            if held is not None:
                if held.sha256 == filed.sha256:
                    return web.json_response({"status": "duplicate", "code": "AlreadyFiled"})
                raise Rejected("DuplicateUniqueId", "another document has this unique id", 409)
        except Rejected as exc:
            self.rejections += 1
            return web.json_response(
                {"status": "failure", "code": exc.code, "detail": exc.detail}, status=exc.status
            )
        self.filed[filed.unique_id] = filed
        self.content[filed.unique_id] = body
        if self.store_dir:
            name = hashlib.sha256(filed.unique_id.encode()).hexdigest()[:32]
            (self.store_dir / f"{name}.xml").write_bytes(body)
            (self.store_dir / f"{name}.json").write_text(json.dumps(asdict(filed)))
        return web.json_response({"status": "success"})

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


async def start_sandbox(
    host: str = "127.0.0.1", port: int = 0, store_dir: Path | None = None
) -> tuple[web.AppRunner, DmpSandbox, int]:
    """Start the sandbox in the running loop; return (runner, sandbox, port)."""
    sandbox = DmpSandbox(store_dir)
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    return runner, sandbox, bound


async def serve_forever(host: str, port: int, store_dir: Path | None) -> None:
    """Run the sandbox until SIGINT/SIGTERM."""
    runner, _sandbox, _port = await start_sandbox(host, port, store_dir)
    stop = stop_on_signals()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
