"""Reading an ITI-41 request back: the repository's side, as the DMP sandbox does (pure).

:func:`read_request` splits the MTOM package (addressing, the VIHF, the body, the documents
by entry id); :func:`read_metadata` reads the registry objects of its body (document
entries, submission sets, associations, standalone classifications) so that the checks
can be written against plain values rather than XPath.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from consumers.ihe import mtom
from consumers.ihe.iti41.soap import NS, Iti41Error, parse
from domain.xds.ebrim import SOAP


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
    envelope = parse(package.root, "the SOAP envelope")
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
