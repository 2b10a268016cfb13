"""The DMP sandbox's patients service: TD0.2, "does this patient's DMP exist, is it open".

Written from the research notes (docs/dmp-feeding.md, "TD0.2"), not from Relais's client, so
that the two can disagree. The DMP's TD0.2 is HL7 v3 ``PRPA_IN201307UV02`` (patient
registry get demographics, reason ``TEST_EXST`` of code system 1.2.250.1.213.1.1.4.11) over
SOAP 1.2 with the VIHF, answered by ``PRPA_IN201308UV02``: ``queryResponseCode`` ``OK`` or
``NF`` (no DMP) and the DMP's status in ``registrationEvent/statusCode``. The full message
of the DMP's guide is not public; this sandbox serves the minimal subset and the assumptions
the docs write down: ``active`` is an open DMP and ``terminated`` a closed one; an objection
to the feeding and an actor that may not feed are an ``AE`` acknowledgement with the detail
codes ``DMPPatientOpposition`` and ``DMPAccessDenied``.

:func:`register` adds ``POST /patients`` to an aiohttp application and returns the per-patient
table tests set (:class:`PatientStatuses`: open unless told otherwise). It checks the SOAP
Action, the query (reason, an INS), then the VIHF in ``wsse:Security`` with the same checks
as the sandbox's other services (the ``authenticate`` callback the sandbox gives: SAML
schema, signature over the assertion, trusted CA, the TLS client certificate, validity
window, attributes; :mod:`sandboxes.dmp_vihf`), and that its ``resource-id`` is the patient
asked about. A refused request is a SOAP 1.2 Sender Fault (HTTP 400). It answers no patient
data beyond the INS it was asked about.
"""

from __future__ import annotations

import enum
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from aiohttp import web
from cryptography import x509
from lxml import etree

from sandboxes import Refusal

SOAP12: Final = "http://www.w3.org/2003/05/soap-envelope"
ADDRESSING: Final = "http://www.w3.org/2005/08/addressing"
SECURITY: Final = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
)
ASSERTION: Final = "urn:oasis:names:tc:SAML:2.0:assertion"
V3: Final = "urn:hl7-org:v3"
QUERY_ACTION: Final = "urn:hl7-org:v3:PRPA_IN201307UV02"
ANSWER_ACTION: Final = "urn:hl7-org:v3:PRPA_IN201308UV02"
REASONS: Final = "1.2.250.1.213.1.1.4.11"
RESOURCE: Final = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
NAMES: Final = {"e": SOAP12, "w": ADDRESSING, "h": V3, "sec": SECURITY, "saml": ASSERTION}
PATH: Final = "/patients"
_PARSER: Final = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class DmpState(enum.StrEnum):
    """What the sandbox's DMP says of a patient."""

    OPEN = "open"
    NOT_FOUND = "not-found"
    CLOSED = "closed"
    OBJECTION = "objection"  # the patient objected to the feeding
    NO_RIGHT = "no-right"  # this structure / professional may not feed it


#: the acknowledgement detail code of a refusal (assumed names, docs/dmp-feeding.md)
REFUSALS: Final = {
    DmpState.OBJECTION: "DMPPatientOpposition",
    DmpState.NO_RIGHT: "DMPAccessDenied",
}


@dataclass
class PatientStatuses:
    """The DMP state of each patient (by INS matricule; open unless set), and the queries."""

    states: dict[str, DmpState] = field(default_factory=dict)
    #: TD0.2 queries answered, by INS matricule
    asked: Counter[str] = field(default_factory=Counter)

    def set(self, ins: str, state: DmpState) -> None:
        self.states[ins] = state

    def of(self, ins: str) -> DmpState:
        return self.states.get(ins, DmpState.OPEN)


class Verified(Protocol):
    """A VIHF that passed the sandbox's checks (:class:`sandboxes.dmp_vihf.Vihf`)."""

    def value(self, name: str) -> str: ...


#: checks the VIHF of a request (its body, the TLS client certificate) and returns it
#: verified, or raises a :class:`sandboxes.Refusal` (a ``wsse:`` fault) saying why
Authenticate = Callable[[bytes, x509.Certificate | None], Verified]


class Refused(Exception):
    """A request the service refuses: a SOAP Fault with ``subcode``."""

    def __init__(self, subcode: str, reason: str) -> None:
        super().__init__(reason)
        self.subcode, self.reason = subcode, reason


@dataclass(frozen=True)
class Query:
    message_id: str
    ins: str
    oid: str


def read_query(
    body: bytes, authenticate: Authenticate, client_cert: x509.Certificate | None = None
) -> Query:
    """The INS a TD0.2 query asks about, once the envelope and its VIHF are checked."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        raise Refused("InvalidRequest", "the request is not XML") from None
    if (root.findtext("e:Header/w:Action", namespaces=NAMES) or "").strip() != QUERY_ACTION:
        raise Refused("ActionNotSupported", f"the WS-Addressing Action must be {QUERY_ACTION}")
    act = root.find("e:Body/h:PRPA_IN201307UV02/h:controlActProcess", NAMES)
    reason = act.find("h:reasonCode", NAMES) if act is not None else None
    if reason is None or (reason.get("code"), reason.get("codeSystem")) != ("TEST_EXST", REASONS):
        raise Refused("InvalidRequest", "a TD0.2 query has the reason TEST_EXST")
    path = "h:queryByParameter/h:parameterList/h:patientIdentifier/h:value"
    value = act.find(path, NAMES) if act is not None else None
    ins, oid = (value.get("extension"), value.get("root")) if value is not None else (None, None)
    if not ins or not oid:
        raise Refused("InvalidRequest", "the query names no INS (patientIdentifier)")
    _check_vihf(body, client_cert, authenticate, f"{ins}^^^&{oid}&ISO^NH")
    message_id = (root.findtext("e:Header/w:MessageID", namespaces=NAMES) or "").strip()
    return Query(message_id, ins, oid)


def _check_vihf(
    body: bytes,
    client_cert: x509.Certificate | None,
    authenticate: Authenticate,
    patient_cx: str,
) -> None:
    """The VIHF verifies (signature, trust, window, attributes) and names ``patient_cx``."""
    try:
        vihf = authenticate(body, client_cert)
    except Refusal as refusal:
        raise Refused(refusal.code, refusal.detail) from None
    if vihf.value(RESOURCE).strip() != patient_cx:
        raise Refused("wsse:FailedAuthentication", "the VIHF is for another patient")


def _v3(parent: etree._Element, tag: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{V3}}}{tag}", attributes)


def _envelope(relates_to: str) -> tuple[etree._Element, etree._Element]:
    root = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"e": SOAP12, "w": ADDRESSING})
    header = etree.SubElement(root, f"{{{SOAP12}}}Header")
    etree.SubElement(header, f"{{{ADDRESSING}}}Action").text = ANSWER_ACTION
    etree.SubElement(header, f"{{{ADDRESSING}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    etree.SubElement(header, f"{{{ADDRESSING}}}RelatesTo").text = relates_to
    return root, etree.SubElement(root, f"{{{SOAP12}}}Body")


def answer(query: Query, state: DmpState) -> bytes:
    """The ``PRPA_IN201308UV02`` answer for a patient whose DMP is in ``state``."""
    root, body = _envelope(query.message_id)
    message = etree.SubElement(body, f"{{{V3}}}PRPA_IN201308UV02", nsmap={"h": V3})
    message.set("ITSVersion", "XML_1.0")
    _v3(message, "id", root="1.2.250.1.213.4.1.1.1", extension=str(uuid.uuid4()))
    _v3(message, "creationTime", value=datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
    _v3(message, "interactionId", root="2.16.840.1.113883.1.6", extension="PRPA_IN201308UV02")
    acknowledgement = _v3(message, "acknowledgement")
    refusal = REFUSALS.get(state)
    _v3(acknowledgement, "typeCode", code="AE" if refusal else "AA")
    if refusal:
        detail = _v3(acknowledgement, "acknowledgementDetail", typeCode="E")
        _v3(detail, "code", code=refusal, codeSystem="DMPERRORCODE")
    act = _v3(message, "controlActProcess", classCode="CACT", moodCode="EVN")
    if refusal is None:
        found = state is not DmpState.NOT_FOUND
        _v3(_v3(act, "queryAck"), "queryResponseCode", code="OK" if found else "NF")
        if found:
            event = _v3(_v3(act, "subject"), "registrationEvent")
            _v3(event, "statusCode", code="terminated" if state is DmpState.CLOSED else "active")
            patient = _v3(_v3(event, "subject1"), "patient")
            _v3(patient, "id", root=query.oid, extension=query.ins)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def fault(refused: Refused, relates_to: str = "") -> bytes:
    """The SOAP 1.2 Sender Fault of a refused request."""
    root, body = _envelope(relates_to)
    element = etree.SubElement(body, f"{{{SOAP12}}}Fault")
    code = etree.SubElement(element, f"{{{SOAP12}}}Code")
    etree.SubElement(code, f"{{{SOAP12}}}Value").text = "e:Sender"
    sub = etree.SubElement(etree.SubElement(code, f"{{{SOAP12}}}Subcode"), f"{{{SOAP12}}}Value")
    sub.text = refused.subcode
    text = etree.SubElement(etree.SubElement(element, f"{{{SOAP12}}}Reason"), f"{{{SOAP12}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = refused.reason
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def serve(
    statuses: PatientStatuses,
    body: bytes,
    authenticate: Authenticate,
    client_cert: x509.Certificate | None = None,
) -> tuple[int, bytes]:
    """(HTTP status, SOAP answer) of one TD0.2 request; ``client_cert`` is the TLS one."""
    try:
        query = read_query(body, authenticate, client_cert)
    except Refused as refused:
        return 400, fault(refused)
    statuses.asked[query.ins] += 1
    return 200, answer(query, statuses.of(query.ins))


def register(
    app: web.Application,
    statuses: PatientStatuses | None = None,
    *,
    authenticate: Authenticate,
    down: Callable[[], bool] = lambda: False,
) -> PatientStatuses:
    """Add ``POST /patients`` (TD0.2) to ``app``; the table its answers come from. Each
    request's VIHF goes through ``authenticate`` with the TLS client certificate. While
    ``down()`` it answers HTTP 503, like the sandbox's other services."""
    table = statuses if statuses is not None else PatientStatuses()

    async def patients(request: web.Request) -> web.Response:
        if down():
            raise web.HTTPServiceUnavailable(text="DMP sandbox: down for maintenance")
        status, payload = serve(table, await request.read(), authenticate, _peer(request))
        headers = {"Content-Type": "application/soap+xml"}
        return web.Response(status=status, body=payload, headers=headers)

    app.router.add_post(PATH, patients)
    return table


def _peer(request: web.Request) -> x509.Certificate | None:
    """The TLS client certificate of the request, when served over TLS."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der) if der else None
