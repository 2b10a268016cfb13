"""The DMP sandbox's ITI-57 Update Document Set: new versions of a document's metadata.

Written from the IHE XDS Metadata Update supplement, independently of the client
(nothing from ``consumers``, ``streams`` or ``producers``): the sandbox judges what Relais
sends for TD3.3b (patient visibility, ../shared/STANDARDS.md §4). ``POST /registry``
with the WS-Addressing action :data:`ACTION` carries a ``lcm:SubmitObjectsRequest``:

* one DocumentEntry (ExtrinsicObject) whose ``lid`` names the document (the entryUUID
  of its first version), whose uniqueId and patientId are the held document's and whose
  ``repositoryUniqueId`` slot names the repository holding it (required, as in ITI-42);
* one SubmissionSet (RegistryPackage) and the HasMember association between them with
  ``SubmissionSetStatus`` = ``Original`` and ``PreviousVersion`` = the current version.

Accepted, the registry gives the new version a **new entryUUID** (random, as the DMP
assigns them), numbers it previous + 1, deprecates the previous version and keeps the
new confidentialityCode list (:class:`Versions`: what the tests read the patient's
visibility from). Refusals (a ``RegistryResponse`` Failure): ``XDSMetadataVersionError``
(PreviousVersion is not the current version), ``XDSMetadataUpdateError`` (no such lid,
a version no longer approved, another uniqueId, another repository),
``XDSRegistryMetadataError`` (no repositoryUniqueId), ``XDSPatientIdDoesNotMatch``.
The replaced version stays, ``Deprecated``, in the registry's ``deprecated`` versions
(GetDocuments answers every version, sandboxes.dmp_registry). A request
that is not an update is a SOAP 1.2 Sender fault. Error texts never quote patient data.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Protocol

from aiohttp import web
from cryptography import x509
from lxml import etree

from domain.document_id import safe_parser
from domain.xds.ebrim import HAS_MEMBER, LCM, RIM, RS, SOAP, WSA, Scheme
from sandboxes import Refusal
from sandboxes.dmp_registry import REPOSITORY_UNIQUE_ID
from sandboxes.dmp_xml import SchemaInvalid, validate

ACTION: Final = "urn:ihe:iti:2010:UpdateDocumentSet"
RESPONSE_ACTION: Final = "urn:ihe:iti:2010:UpdateDocumentSetResponse"
VERSION_ERROR: Final = "XDSMetadataVersionError"
UPDATE_ERROR: Final = "XDSMetadataUpdateError"
PATIENT_MISMATCH: Final = "XDSPatientIdDoesNotMatch"
METADATA_ERROR: Final = "XDSRegistryMetadataError"
#: the VIHF attribute naming the patient (XACML resource-id: the INS as CX ^NH)
RESOURCE_ID: Final = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
_STATUS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:"
_NS: Final = {"s": SOAP, "a": WSA, "lcm": LCM, "rim": RIM}


class UpdateRefused(Refusal):
    """The registry refuses the update: a RegistryResponse Failure with an XDS errorCode."""

    default_status = 200


class NotAnUpdate(Refusal):
    """The request cannot be read as ITI-57: a SOAP 1.2 Sender fault (HTTP 400)."""


@dataclass(frozen=True)
class Version:
    """One version of a DocumentEntry."""

    entry_uuid: str
    lid: str
    number: int
    unique_id: str
    patient_id: str
    confidentiality: tuple[str, ...]  # codes of the confidentialityCode list
    status: str = "Approved"  # Approved | Deprecated


@dataclass(frozen=True)
class Requested:
    """What an ITI-57 request asks for."""

    message_id: str
    lid: str
    previous_version: str
    unique_id: str
    patient_id: str
    confidentiality: tuple[str, ...]
    repository_unique_id: str | None = None


class HeldEntries(Protocol):
    """What this module uses of the DMP sandbox (sandboxes.dmp.DmpSandbox)."""

    @property
    def filed(self) -> MutableMapping[str, Any]:  # uniqueId -> entry (entry_uuid, patient_id…)
        ...

    @property
    def by_entry(self) -> MutableMapping[str, str]:  # entryUUID -> uniqueId
        ...

    @property
    def versions(self) -> MutableMapping[str, Any]:  # entryUUID -> VersionInfo (lid, number)
        ...

    @property
    def deprecated(self) -> MutableMapping[str, Any]:  # entryUUID -> a replaced version
        ...

    @property
    def unavailable(self) -> bool: ...

    @property
    def oracle(self) -> Any: ...  # its ``schema_dir``: the independent schemas (ihe-xsd)

    def _authenticated(self, body: bytes, client_cert: x509.Certificate | None) -> Any: ...


class Versions:
    """The versions the updates made, by entryUUID; a document never updated has none."""

    def __init__(self) -> None:
        self.by_entry: dict[str, Version] = {}
        self.updates = 0  # accepted updates
        self.refusals = 0
        #: test lever: refuse every update with this XDS error code (None: check)
        self.refuse_with: str | None = None

    def current(self, unique_id: str) -> Version | None:
        """The approved version of ``unique_id`` an update made, if any."""
        found = [v for v in self.by_entry.values() if v.unique_id == unique_id]
        return next((v for v in found if v.status == "Approved"), None)

    def patient_visible(self, unique_id: str) -> bool | None:
        """Whether the updated document is visible to the patient (None: never updated)."""
        version = self.current(unique_id)
        return None if version is None else "INVISIBLE_PATIENT" not in version.confidentiality


def read_update(body: bytes, schema_dir: Path | None = None) -> Requested:
    """The request's update, its body valid against ebRS 3.0 ``lcm.xsd`` when the schema
    folder is given; :class:`NotAnUpdate` when it is not one."""
    try:
        root = etree.fromstring(body, safe_parser())
    except etree.XMLSyntaxError:
        raise NotAnUpdate("rim:InvalidRequestException", "the request is not XML") from None
    if (root.findtext("s:Header/a:Action", namespaces=_NS) or "").strip() != ACTION:
        raise NotAnUpdate("wsa:ActionNotSupported", f"wsa:Action must be {ACTION}")
    submit = root.find("s:Body/lcm:SubmitObjectsRequest", _NS)
    if submit is not None and schema_dir is not None:
        try:
            validate(schema_dir, "lcm", submit)
        except SchemaInvalid as exc:
            raise NotAnUpdate("rim:InvalidRequestException", str(exc)) from None
    objects = root.find("s:Body/lcm:SubmitObjectsRequest/rim:RegistryObjectList", _NS)
    entries = [] if objects is None else objects.findall("rim:ExtrinsicObject", _NS)
    packages = [] if objects is None else objects.findall("rim:RegistryPackage", _NS)
    if len(entries) != 1 or len(packages) != 1:
        raise NotAnUpdate("rim:InvalidRequestException", "one DocumentEntry, one SubmissionSet")
    entry, package = entries[0], packages[0]
    member = _member(objects, str(package.get("id")), str(entry.get("id")))
    return Requested(
        message_id=(root.findtext("s:Header/a:MessageID", namespaces=_NS) or "").strip(),
        lid=_required(entry.get("lid"), "the DocumentEntry's lid"),
        previous_version=_required(_slot(member, "PreviousVersion"), "PreviousVersion"),
        unique_id=_identifier(entry, Scheme.DE_UNIQUE_ID),
        patient_id=_identifier(entry, Scheme.DE_PATIENT_ID),
        confidentiality=tuple(
            str(c.get("nodeRepresentation"))
            for c in entry.iterfind(
                f"rim:Classification[@classificationScheme='{Scheme.DE_CONFIDENTIALITY}']", _NS
            )
        ),
        repository_unique_id=_slot(entry, "repositoryUniqueId"),
    )


def _member(objects: Any, package: str, entry: str) -> etree._Element:
    """The HasMember association SubmissionSet → DocumentEntry, submitted as Original."""
    for association in objects.iterfind(f"rim:Association[@associationType='{HAS_MEMBER}']", _NS):
        if (association.get("sourceObject"), association.get("targetObject")) == (package, entry):
            if _slot(association, "SubmissionSetStatus") != "Original":
                raise NotAnUpdate("rim:InvalidRequestException", "SubmissionSetStatus: Original")
            return association  # type: ignore[no-any-return]
    raise NotAnUpdate("rim:InvalidRequestException", "no HasMember SubmissionSet → entry")


def _slot(element: etree._Element, name: str) -> str | None:
    return element.findtext(f"rim:Slot[@name='{name}']/rim:ValueList/rim:Value", namespaces=_NS)


def _identifier(entry: etree._Element, scheme: str) -> str:
    found = entry.find(f"rim:ExternalIdentifier[@identificationScheme='{scheme}']", _NS)
    return _required(None if found is None else found.get("value"), f"identifier {scheme}")


def _required(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise NotAnUpdate("rim:InvalidRequestException", f"{what} is missing")
    return value.strip()


def current_version(held: HeldEntries, lid: str) -> Version:
    """The approved version of the document whose logical id is ``lid``."""
    for unique_id, filed in held.filed.items():
        info = held.versions.get(filed.entry_uuid)
        if info is not None and info.lid == lid and filed.status != "Deleted":
            status = "Approved" if filed.status == "Approved" else "Deprecated"
            codes = tuple(info.confidentiality)
            return Version(
                filed.entry_uuid, lid, info.number, unique_id, filed.patient_id, codes, status
            )
    raise UpdateRefused(UPDATE_ERROR, "the lid names no DocumentEntry held")


def apply_update(
    versions: Versions, held: HeldEntries, requested: Requested, vihf_patient: str
) -> Version:
    """Check ``requested`` against the current version and make the new one."""
    if versions.refuse_with is not None:
        raise UpdateRefused(versions.refuse_with, "refused by the sandbox operator (test lever)")
    previous = current_version(held, requested.lid)
    _check(requested, previous, vihf_patient)
    new = Version(
        entry_uuid=f"urn:uuid:{uuid.uuid4()}",
        lid=requested.lid,
        number=previous.number + 1,
        unique_id=previous.unique_id,
        patient_id=previous.patient_id,
        confidentiality=requested.confidentiality,
    )
    filed = held.filed[previous.unique_id]
    versions.by_entry[previous.entry_uuid] = replace(previous, status="Deprecated")
    versions.by_entry[new.entry_uuid] = new
    held.deprecated[previous.entry_uuid] = replace(filed, status="Deprecated")
    held.filed[new.unique_id] = replace(filed, entry_uuid=new.entry_uuid)
    held.versions[new.entry_uuid] = replace(
        held.versions[previous.entry_uuid], number=new.number, confidentiality=new.confidentiality
    )
    held.by_entry[new.entry_uuid] = new.unique_id  # the deprecated one still names it
    versions.updates += 1
    return new


def _check(requested: Requested, previous: Version, vihf_patient: str) -> None:
    """The update's refusals: version, repository, uniqueId, patient."""
    if previous.status != "Approved":
        raise UpdateRefused(UPDATE_ERROR, "the current version is not approved")
    if requested.previous_version != str(previous.number):
        raise UpdateRefused(VERSION_ERROR, f"PreviousVersion is not {previous.number}")
    if not requested.repository_unique_id:
        raise UpdateRefused(METADATA_ERROR, "the DocumentEntry has no repositoryUniqueId")
    if requested.repository_unique_id != REPOSITORY_UNIQUE_ID:
        raise UpdateRefused(UPDATE_ERROR, "the repositoryUniqueId is not the document's")
    if requested.unique_id != previous.unique_id:
        raise UpdateRefused(UPDATE_ERROR, "an update cannot change the uniqueId")
    if vihf_patient != previous.patient_id or requested.patient_id != previous.patient_id:
        raise UpdateRefused(PATIENT_MISMATCH, "the update or its VIHF is for another patient")


def handle(
    versions: Versions, held: HeldEntries, body: bytes, client_cert: x509.Certificate | None
) -> tuple[int, bytes]:
    """One ITI-57 request: (HTTP status, RegistryResponse or SOAP fault)."""
    relates_to = ""
    try:
        requested = read_update(body, held.oracle.schema_dir)
        relates_to = requested.message_id
        vihf = held._authenticated(body, client_cert)
        apply_update(versions, held, requested, str(vihf.value(RESOURCE_ID)))
    except UpdateRefused as exc:
        versions.refusals += 1
        return 200, registry_response(relates_to, exc)
    except Refusal as exc:  # NotAnUpdate, or the sandbox's own fault on the VIHF
        versions.refusals += 1
        return 400, soap_fault(relates_to, exc)
    return 200, registry_response(relates_to)


def _envelope(relates_to: str) -> etree._Element:
    root = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP, "a": WSA})
    header = etree.SubElement(root, f"{{{SOAP}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action").text = RESPONSE_ACTION
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if relates_to:
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to
    etree.SubElement(root, f"{{{SOAP}}}Body")
    return root


def registry_response(relates_to: str, refused: UpdateRefused | None = None) -> bytes:
    """An ebRS RegistryResponse: Success, or Failure with one RegistryError."""
    root = _envelope(relates_to)
    status = _STATUS + ("Failure" if refused else "Success")
    response = etree.SubElement(root[1], f"{{{RS}}}RegistryResponse", status=status)
    if refused is not None:
        errors = etree.SubElement(response, f"{{{RS}}}RegistryErrorList")
        error = etree.SubElement(errors, f"{{{RS}}}RegistryError", errorCode=refused.code)
        error.set("codeContext", refused.detail)
        error.set("severity", "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def soap_fault(relates_to: str, refused: Refusal) -> bytes:
    """A SOAP 1.2 Sender fault whose subcode is the refusal's code."""
    root = _envelope(relates_to)
    fault = etree.SubElement(root[1], f"{{{SOAP}}}Fault")
    code = etree.SubElement(fault, f"{{{SOAP}}}Code")
    etree.SubElement(code, f"{{{SOAP}}}Value").text = "s:Sender"
    sub = etree.SubElement(etree.SubElement(code, f"{{{SOAP}}}Subcode"), f"{{{SOAP}}}Value")
    sub.text = refused.code
    reason = etree.SubElement(etree.SubElement(fault, f"{{{SOAP}}}Reason"), f"{{{SOAP}}}Text")
    reason.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    reason.text = refused.detail
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


#: where the test finds the versions of a running sandbox: ``runner.app[UPDATES]``
UPDATES: Final = web.AppKey("dmp-updates", Versions)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def register_update(app: web.Application, held: HeldEntries) -> Versions:
    """Serve ITI-57 on ``POST /registry`` of the sandbox ``app`` (beside ITI-18 and ITI-62)."""
    versions = Versions()
    app[UPDATES] = versions

    @web.middleware
    async def updates(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or request.path != "/registry":
            return await handler(request)
        body = await request.read()  # read once: the registry's own handler gets it again
        if _action(body) != ACTION:
            return await handler(request)
        if held.unavailable:
            raise web.HTTPServiceUnavailable(text="DMP sandbox: down for maintenance")
        status, answer = handle(versions, held, body, _peer(request))
        return web.Response(status=status, body=answer, content_type="application/soap+xml")

    app.middlewares.append(updates)
    return versions


def _action(body: bytes) -> str:
    try:
        root = etree.fromstring(body, safe_parser())
    except etree.XMLSyntaxError:
        return ""
    return (root.findtext("s:Header/a:Action", namespaces=_NS) or "").strip()


def _peer(request: web.Request) -> x509.Certificate | None:
    """The TLS client certificate of the request, when served over TLS."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der) if der else None
