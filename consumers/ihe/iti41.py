"""IHE XDS.b ITI-41 Provide and Register Document Set-b, as the DMP takes it (pure).

Both sides of the wire format, so that the sink and the sandbox cannot drift apart:

* :func:`request` builds the SOAP 1.2 request — WS-Addressing (Action, MessageID, To,
  ReplyTo), the signed VIHF in ``wsse:Security``, and the body
  ``ProvideAndRegisterDocumentSetRequest``: ebRIM ``SubmitObjectsRequest`` with the
  submission set (RegistryPackage), the document entry (ExtrinsicObject) of
  :class:`~domain.xds.metadata.DocumentEntry`, the HasMember association (and RPLC to the
  replaced document), and the document by ``xop:Include`` — packaged as MTOM/XOP
  (:mod:`consumers.ihe.mtom`).
* :func:`read_request` and :func:`read_metadata` read such a request back;
  :func:`registry_response` and :func:`soap_fault` build the answers;
  :func:`read_response` reads an answer.

Facts: STANDARDS.md §4 (classification and external identifier UUIDs, slots, the ANS
mapping) and IHE ITI TF-3 §4.2 (metadata, error codes). Entry UUIDs are derived from the
document's uniqueId (:func:`entry_uuid`) so that a replacement can name the entry it
replaces without querying the registry, as long as Relais filed it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from lxml import etree

from consumers.ihe import mtom
from domain.document_id import safe_parser
from domain.xds.codes import Coded
from domain.xds.ebrim import (
    HAS_MEMBER,
    LCM,
    REFERENCE_ID_LIST,
    RIM,
    RS,
    SOAP,
    STABLE_DOCUMENT,
    SUBMISSION_SET_NODE,
    WSA,
    WSSE,
    XDSB,
    Scheme,
)
from domain.xds.metadata import DocumentEntry

ACTION: Final = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
RESPONSE_ACTION: Final = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
NS: Final = {
    "soap": SOAP,
    "wsa": WSA,
    "wsse": WSSE,
    "xdsb": XDSB,
    "lcm": LCM,
    "rim": RIM,
    "rs": RS,
    "xop": mtom.XOP,
}
ANONYMOUS: Final = "http://www.w3.org/2005/08/addressing/anonymous"
STATUS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:"
SEVERITY: Final = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:"
RPLC: Final = "urn:ihe:iti:2007:AssociationType:RPLC"
#: the warning of a repository that already holds this very document (same uniqueId and hash)
ALREADY_HELD: Final = "XDSDuplicateUniqueIdInRegistry"
#: namespace of the UUIDs Relais derives (entry UUIDs, submission set uniqueIds)
RELAIS_UUIDS: Final = uuid.UUID("5b0c1c36-55a3-4c8e-9d36-6f2f3a2d8e41")


#: JDV_J59 submission set contentTypeCode from the visit class (PV1-2), STANDARDS.md §4.
CONTENT_TYPE_OID: Final = "1.2.250.1.213.2.2"
CONTENT_TYPES: Final = {
    "I": Coded("03", CONTENT_TYPE_OID, "Hospitalisation (PV1-2 I)"),
    "O": Coded("07", CONTENT_TYPE_OID, "Consultation externe (PV1-2 O)"),
    "E": Coded("07", CONTENT_TYPE_OID, "Consultation externe (PV1-2 E)"),
    "R": Coded("19", CONTENT_TYPE_OID, "Séances (PV1-2 R)"),
    "N": Coded("97", CONTENT_TYPE_OID, "Sans objet (PV1-2 N)"),
}


class Iti41Error(ValueError):
    """A request or answer is not a readable ITI-41 message (the message says what is wrong)."""


@dataclass(frozen=True)
class SubmissionSet:
    unique_id: str  # OID
    source_id: str  # OID of the sending system
    submission_time: str  # XDS time, UTC
    content_type: Coded
    author_person: str  # XCN
    author_institution: str  # XON
    patient_id: str  # CX ^NH, the same as the entry's


@dataclass(frozen=True)
class RegistryError:
    code: str  # errorCode, e.g. XDSRegistryMetadataError
    context: str  # codeContext: what is wrong (never patient data)
    severity: str = "Error"  # Error | Warning
    location: str = ""


@dataclass(frozen=True)
class RegistryResponse:
    status: str  # Success | PartialSuccess | Failure
    errors: tuple[RegistryError, ...] = ()

    @property
    def failed(self) -> tuple[RegistryError, ...]:
        return tuple(e for e in self.errors if e.severity == "Error")


@dataclass(frozen=True)
class SoapFault(Exception):
    """A SOAP 1.2 Fault: ``code`` Sender | Receiver, ``subcode`` (e.g. wsse:InvalidSecurity)."""

    code: str
    subcode: str
    reason: str

    def __str__(self) -> str:
        return f"SOAP fault {self.code}/{self.subcode}: {self.reason}"


def entry_uuid(unique_id: str) -> str:
    """The entryUUID Relais gives the document entry of ``unique_id`` (stable across re-sends)."""
    return f"urn:uuid:{uuid.uuid5(RELAIS_UUIDS, f'entry:{unique_id}')}"


def content_type_of(visit_class: str | None) -> Coded:
    """contentTypeCode for PV1-2; an unknown or absent class is "not applicable" (97)."""
    return CONTENT_TYPES.get((visit_class or "N").strip().upper()[:1], CONTENT_TYPES["N"])


def submission_set_of(
    entry: DocumentEntry, *, source_id: str, now: datetime, visit_class: str | None = None
) -> SubmissionSet:
    """The submission set of one document: its uniqueId is stable for the same bytes."""
    seed = uuid.uuid5(RELAIS_UUIDS, f"submission:{entry.unique_id}:{entry.hash_sha1}")
    return SubmissionSet(
        unique_id=f"2.25.{seed.int}",
        source_id=source_id,
        submission_time=now.strftime("%Y%m%d%H%M%S"),
        content_type=content_type_of(visit_class),
        author_person=entry.author_person,
        author_institution=entry.author_institution,
        patient_id=entry.patient_id,
    )


def provide_and_register(
    entry: DocumentEntry,
    submission_set: SubmissionSet,
    *,
    document_cid: str,
    replaces: str | None = None,
) -> etree._Element:
    """The ``ProvideAndRegisterDocumentSetRequest`` (RPLC to ``replaces``, a uniqueId)."""
    ids = _Ids(entry.unique_id)
    de_id, ss_id = entry_uuid(entry.unique_id), ids.next()
    root = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap=_NSMAP)
    request = etree.SubElement(root, f"{{{LCM}}}SubmitObjectsRequest")
    objects = etree.SubElement(request, f"{{{RIM}}}RegistryObjectList")
    _document_entry(objects, entry, de_id, ids)
    _submission_set(objects, submission_set, ss_id, ids)
    node = _rim(objects, "Classification", id=ids.next(), classifiedObject=ss_id)
    node.set("classificationNode", SUBMISSION_SET_NODE)
    member = _rim(objects, "Association", id=ids.next(), associationType=HAS_MEMBER)
    member.set("sourceObject", ss_id)
    member.set("targetObject", de_id)
    _slot(member, "SubmissionSetStatus", ["Original"])
    if replaces is not None:
        replacement = _rim(objects, "Association", id=ids.next(), associationType=RPLC)
        replacement.set("sourceObject", de_id)
        replacement.set("targetObject", entry_uuid(replaces))
    document = etree.SubElement(root, f"{{{XDSB}}}Document", id=de_id)
    etree.SubElement(document, f"{{{mtom.XOP}}}Include", href=f"cid:{document_cid}")
    return root


def request(
    entry: DocumentEntry,
    submission_set: SubmissionSet,
    content: bytes,
    *,
    vihf: etree._Element,
    endpoint: str,
    message_id: str,
    replaces: str | None = None,
) -> tuple[str, bytes]:
    """(Content-Type, body) of the MTOM package of one ITI-41 request."""
    cid = f"{uuid.uuid5(RELAIS_UUIDS, entry.unique_id).hex}@relais"
    body = provide_and_register(entry, submission_set, document_cid=cid, replaces=replaces)
    envelope = _envelope(
        body,
        action=ACTION,
        headers=[("MessageID", message_id), ("To", endpoint)],
        security=vihf,
    )
    attachment = mtom.Part(entry.mime_type, content)
    return mtom.build(envelope, {cid: attachment}, action=ACTION)


# reading a request (the repository's side) ----------------------------------------


@dataclass(frozen=True)
class Received:
    """A received ITI-41 request, split: addressing, the VIHF, the body, the documents."""

    action: str
    message_id: str
    to: str
    assertion: etree._Element | None
    body: etree._Element  # ProvideAndRegisterDocumentSetRequest
    documents: Mapping[str, bytes]  # by entry id (xdsb:Document/@id)
    unreferenced_parts: tuple[str, ...]  # MIME parts no xop:Include points to


def read_request(content_type: str, body: bytes) -> Received:
    """Split an MTOM ITI-41 request; :class:`Iti41Error` (or MtomError) when it is not one."""
    package = mtom.read(content_type, body)
    envelope = _parse(package.root, "the SOAP envelope")
    if envelope.tag != f"{{{SOAP}}}Envelope":
        raise Iti41Error("the root part is not a SOAP 1.2 Envelope")
    header = envelope.find("soap:Header", NS)
    request_body = envelope.find("soap:Body/xdsb:ProvideAndRegisterDocumentSetRequest", NS)
    if header is None or request_body is None:
        raise Iti41Error("the envelope lacks a Header or a ProvideAndRegisterDocumentSetRequest")
    documents: dict[str, bytes] = {}
    used: set[str] = set()
    for document in request_body.iterfind("xdsb:Document", NS):
        include = document.find("xop:Include", NS)
        if include is None:
            raise Iti41Error("an xdsb:Document is not an xop:Include (MTOM is required)")
        cid = mtom.content_id(include.get("href", ""))
        if cid not in package.parts:
            raise Iti41Error(f"xop:Include points to cid:{cid}, which no MIME part has")
        documents[document.get("id", "")] = package.parts[cid].content
        used.add(cid)
    return Received(
        action=header.findtext("wsa:Action", "", NS).strip(),
        message_id=header.findtext("wsa:MessageID", "", NS).strip(),
        to=header.findtext("wsa:To", "", NS).strip(),
        assertion=header.find("wsse:Security/{urn:oasis:names:tc:SAML:2.0:assertion}Assertion", NS),
        body=request_body,
        documents=documents,
        unreferenced_parts=tuple(cid for cid in package.parts if cid not in used),
    )


@dataclass(frozen=True)
class Classified:
    node: str  # nodeRepresentation (the code)
    scheme: str | None  # the codingScheme slot (an OID), None for an author classification
    display: str | None
    slots: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class RegistryObject:
    """An ExtrinsicObject (document entry) or a RegistryPackage (submission set), as read."""

    id: str
    attributes: Mapping[str, str]
    slots: Mapping[str, tuple[str, ...]]
    name: str | None
    classifications: Mapping[str, tuple[Classified, ...]]  # by classificationScheme
    identifiers: Mapping[str, str]  # external identifiers by identificationScheme

    def slot(self, name: str) -> str | None:
        return next(iter(self.slots.get(name, ())), None)


@dataclass(frozen=True)
class Association:
    id: str
    type: str
    source: str
    target: str
    slots: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Metadata:
    entries: tuple[RegistryObject, ...]
    submission_sets: tuple[RegistryObject, ...]
    associations: tuple[Association, ...]
    nodes: Mapping[str, str]  # classifiedObject -> classificationNode (standalone Classifications)


def read_metadata(body: etree._Element) -> Metadata:
    """The registry objects of a ProvideAndRegisterDocumentSetRequest."""
    objects = body.find("lcm:SubmitObjectsRequest/rim:RegistryObjectList", NS)
    if objects is None:
        raise Iti41Error("no lcm:SubmitObjectsRequest/rim:RegistryObjectList")
    return Metadata(
        entries=tuple(_object(e) for e in objects.iterfind("rim:ExtrinsicObject", NS)),
        submission_sets=tuple(_object(p) for p in objects.iterfind("rim:RegistryPackage", NS)),
        associations=tuple(
            Association(
                id=a.get("id", ""),
                type=a.get("associationType", ""),
                source=a.get("sourceObject", ""),
                target=a.get("targetObject", ""),
                slots=_slots(a),
            )
            for a in objects.iterfind("rim:Association", NS)
        ),
        nodes={
            c.get("classifiedObject", ""): c.get("classificationNode", "")
            for c in objects.iterfind("rim:Classification", NS)
        },
    )


# answers ---------------------------------------------------------------------------


def registry_response(errors: Sequence[RegistryError] = (), *, relates_to: str = "") -> bytes:
    """A SOAP 1.2 RegistryResponse: Failure when any error has severity Error."""
    status = "Failure" if any(e.severity == "Error" for e in errors) else "Success"
    response = etree.Element(f"{{{RS}}}RegistryResponse", status=STATUS + status, nsmap=_NSMAP)
    if errors:
        listing = etree.SubElement(response, f"{{{RS}}}RegistryErrorList")
        for error in errors:
            item = etree.SubElement(listing, f"{{{RS}}}RegistryError")
            item.set("errorCode", error.code)
            item.set("codeContext", error.context)
            item.set("severity", SEVERITY + error.severity)
            if error.location:
                item.set("location", error.location)
    headers = [("MessageID", f"urn:uuid:{uuid.uuid4()}")]
    if relates_to:
        headers.append(("RelatesTo", relates_to))
    return _envelope(response, action=RESPONSE_ACTION, headers=headers)


def soap_fault(fault: SoapFault, *, relates_to: str = "") -> bytes:
    """A SOAP 1.2 Fault envelope (HTTP 400 for Sender, 500 for Receiver)."""
    envelope = etree.Element(f"{{{SOAP}}}Envelope", nsmap=_NSMAP)
    header = etree.SubElement(envelope, f"{{{SOAP}}}Header")
    _text(header, WSA, "Action", "http://www.w3.org/2005/08/addressing/soap/fault")
    if relates_to:
        _text(header, WSA, "RelatesTo", relates_to)
    element = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP}}}Body"), f"{{{SOAP}}}Fault")
    code = etree.SubElement(element, f"{{{SOAP}}}Code")
    _text(code, SOAP, "Value", f"soap:{fault.code}")
    _text(etree.SubElement(code, f"{{{SOAP}}}Subcode"), SOAP, "Value", fault.subcode)
    reason = etree.SubElement(element, f"{{{SOAP}}}Reason")
    _text(reason, SOAP, "Text", fault.reason).set(
        "{http://www.w3.org/XML/1998/namespace}lang", "en"
    )
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def read_response(content_type: str, body: bytes) -> RegistryResponse:
    """The RegistryResponse of an answer; raises :class:`SoapFault` for a fault."""
    if "multipart/related" in content_type.lower():
        body = mtom.read(content_type, body).root
    envelope = _parse(body, "the answer")
    fault = envelope.find("soap:Body/soap:Fault", NS)
    if fault is not None:
        raise SoapFault(
            code=fault.findtext("soap:Code/soap:Value", "", NS).strip().partition(":")[2],
            subcode=fault.findtext("soap:Code/soap:Subcode/soap:Value", "", NS).strip(),
            reason=fault.findtext("soap:Reason/soap:Text", "", NS).strip(),
        )
    response = envelope.find("soap:Body/rs:RegistryResponse", NS)
    if response is None:
        raise Iti41Error("the answer holds neither a RegistryResponse nor a SOAP Fault")
    status = response.get("status", "").removeprefix(STATUS)
    if status not in {"Success", "PartialSuccess", "Failure"}:
        raise Iti41Error(f"RegistryResponse status {status!r} is not an ebRS status")
    return RegistryResponse(
        status=status,
        errors=tuple(
            RegistryError(
                code=e.get("errorCode", ""),
                context=e.get("codeContext", ""),
                severity=e.get("severity", "").removeprefix(SEVERITY) or "Error",
                location=e.get("location", ""),
            )
            for e in response.iterfind("rs:RegistryErrorList/rs:RegistryError", NS)
        ),
    )


# building blocks ---------------------------------------------------------------------

_NSMAP: Final = {
    "soap": SOAP,
    "wsa": WSA,
    "xdsb": XDSB,
    "lcm": LCM,
    "rim": RIM,
    "rs": RS,
    "xop": mtom.XOP,
}


class _Ids:
    """Deterministic ``urn:uuid:`` ids for the objects of one submission."""

    def __init__(self, seed: str) -> None:
        self._namespace = uuid.uuid5(RELAIS_UUIDS, f"objects:{seed}")
        self._count: Iterator[int] = iter(range(1_000_000))

    def next(self) -> str:
        return f"urn:uuid:{uuid.uuid5(self._namespace, str(next(self._count)))}"


def _envelope(
    body: etree._Element,
    *,
    action: str,
    headers: Sequence[tuple[str, str]],
    security: etree._Element | None = None,
) -> bytes:
    envelope = etree.Element(f"{{{SOAP}}}Envelope", nsmap=_NSMAP)
    header = etree.SubElement(envelope, f"{{{SOAP}}}Header")
    _text(header, WSA, "Action", action).set(f"{{{SOAP}}}mustUnderstand", "1")
    for name, value in headers:
        _text(header, WSA, name, value)
    if security is not None:
        reply = etree.SubElement(header, f"{{{WSA}}}ReplyTo")
        _text(reply, WSA, "Address", ANONYMOUS)
        wsse = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
        wsse.set(f"{{{SOAP}}}mustUnderstand", "1")
        wsse.append(security)
    etree.SubElement(envelope, f"{{{SOAP}}}Body").append(body)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def _document_entry(objects: etree._Element, entry: DocumentEntry, de_id: str, ids: _Ids) -> None:
    extrinsic = _rim(objects, "ExtrinsicObject", id=de_id, mimeType=entry.mime_type)
    extrinsic.set("objectType", STABLE_DOCUMENT)
    slots: list[tuple[str, Sequence[str]]] = [
        ("creationTime", [entry.creation_time]),
        ("hash", [entry.hash_sha1]),
        ("size", [str(entry.size)]),
        ("languageCode", [entry.language]),
        ("serviceStartTime", [entry.service_start] if entry.service_start else []),
        ("serviceStopTime", [entry.service_stop] if entry.service_stop else []),
        ("sourcePatientId", [entry.source_patient_id]),
        ("sourcePatientInfo", entry.source_patient_info),
        ("legalAuthenticator", [entry.legal_authenticator] if entry.legal_authenticator else []),
        (REFERENCE_ID_LIST, entry.reference_ids),
    ]
    for name, values in slots:
        if values:
            _slot(extrinsic, name, values)
    _name(extrinsic, entry.title)
    author = _classification(extrinsic, Scheme.DE_AUTHOR, de_id, "", ids)
    _slot(author, "authorPerson", [entry.author_person])
    _slot(author, "authorInstitution", [entry.author_institution])
    codes: list[tuple[str, Coded]] = [
        (Scheme.DE_CLASS, entry.class_code),
        *((Scheme.DE_CONFIDENTIALITY, c) for c in entry.confidentiality),
        (Scheme.DE_FORMAT, entry.format_code),
        (Scheme.DE_FACILITY, entry.healthcare_facility_type),
        (Scheme.DE_PRACTICE, entry.practice_setting),
        (Scheme.DE_TYPE, entry.type_code),
    ]
    for scheme, coded in codes:
        _coded(extrinsic, scheme, de_id, coded, ids)
    _identifier(extrinsic, Scheme.DE_PATIENT_ID, de_id, entry.patient_id, ids, label="patientId")
    _identifier(extrinsic, Scheme.DE_UNIQUE_ID, de_id, entry.unique_id, ids, label="uniqueId")


def _submission_set(objects: etree._Element, ss: SubmissionSet, ss_id: str, ids: _Ids) -> None:
    package = _rim(objects, "RegistryPackage", id=ss_id)
    _slot(package, "submissionTime", [ss.submission_time])
    author = _classification(package, Scheme.SS_AUTHOR, ss_id, "", ids)
    _slot(author, "authorPerson", [ss.author_person])
    _slot(author, "authorInstitution", [ss.author_institution])
    _coded(package, Scheme.SS_CONTENT_TYPE, ss_id, ss.content_type, ids)
    _identifier(package, Scheme.SS_UNIQUE_ID, ss_id, ss.unique_id, ids, label="SS.uniqueId")
    _identifier(package, Scheme.SS_SOURCE_ID, ss_id, ss.source_id, ids, label="SS.sourceId")
    _identifier(package, Scheme.SS_PATIENT_ID, ss_id, ss.patient_id, ids, label="SS.patientId")


def _rim(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{RIM}}}{tag}", attrs)


def _text(parent: etree._Element, ns: str, tag: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}")
    element.text = text
    return element


def _slot(parent: etree._Element, name: str, values: Sequence[str]) -> None:
    listing = etree.SubElement(_rim(parent, "Slot", name=name), f"{{{RIM}}}ValueList")
    for value in values:
        _text(listing, RIM, "Value", value)


def _name(parent: etree._Element, text: str) -> None:
    _rim(_rim(parent, "Name"), "LocalizedString", value=text)


def _classification(
    parent: etree._Element, scheme: str, classified: str, node: str, ids: _Ids
) -> etree._Element:
    element = _rim(parent, "Classification", classificationScheme=scheme)
    element.set("classifiedObject", classified)
    element.set("nodeRepresentation", node)
    element.set("id", ids.next())
    return element


def _coded(parent: etree._Element, scheme: str, classified: str, coded: Coded, ids: _Ids) -> None:
    element = _classification(parent, scheme, classified, coded.code, ids)
    _slot(element, "codingScheme", [coded.scheme])
    _name(element, coded.display)


def _identifier(
    parent: etree._Element, scheme: str, owner: str, value: str, ids: _Ids, *, label: str
) -> None:
    element = _rim(parent, "ExternalIdentifier", identificationScheme=scheme, value=value)
    element.set("registryObject", owner)
    element.set("id", ids.next())
    prefix = "XDSSubmissionSet." if label.startswith("SS.") else "XDSDocumentEntry."
    _name(element, prefix + label.removeprefix("SS."))


def _parse(data: bytes, what: str) -> etree._Element:
    try:
        return etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError:
        raise Iti41Error(f"{what} is not well-formed XML") from None


def _slots(element: etree._Element) -> dict[str, tuple[str, ...]]:
    return {
        s.get("name", ""): tuple((v.text or "") for v in s.iterfind("rim:ValueList/rim:Value", NS))
        for s in element.iterfind("rim:Slot", NS)
    }


def _localized(element: etree._Element) -> str | None:
    found = element.find("rim:Name/rim:LocalizedString", NS)
    return None if found is None else found.get("value")


def _object(element: etree._Element) -> RegistryObject:
    classifications: dict[str, list[Classified]] = {}
    for c in element.iterfind("rim:Classification", NS):
        slots = _slots(c)
        coding = slots.get("codingScheme", ())
        classifications.setdefault(c.get("classificationScheme", ""), []).append(
            Classified(
                node=c.get("nodeRepresentation", ""),
                scheme=coding[0] if coding else None,
                display=_localized(c),
                slots=slots,
            )
        )
    return RegistryObject(
        id=element.get("id", ""),
        attributes=dict(element.attrib),  # type: ignore[arg-type]
        slots=_slots(element),
        name=_localized(element),
        classifications={k: tuple(v) for k, v in classifications.items()},
        identifiers={
            i.get("identificationScheme", ""): i.get("value", "")
            for i in element.iterfind("rim:ExternalIdentifier", NS)
        },
    )
