"""TD0.2, "does this patient's DMP exist, is it open, may we feed it": the exchange (pure).

Facts (docs/dmp-feeding.md, "TD0.2"): the DMP's TD0.2 tells whether the patient's DMP
exists and its status (open, closed: date and reason) and the actor's access
(PDSM4DMP-EEDS transaction_td02.md); it is HL7 v3 ``PRPA_IN201307UV02`` "patient registry
get demographics" with the reason ``TEST_EXST`` (code system 1.2.250.1.213.1.1.4.11),
answered by ``PRPA_IN201308UV02``: ``queryAck/queryResponseCode`` ``OK`` or ``NF`` (no
DMP), ``registrationEvent/statusCode`` the DMP's status, and an ``acknowledgement`` ``AE``
with a detail code when the DMP refuses (as its other HL7 v3 answers do). The full message
of the DMP's guide is not public: this module sends and reads the *minimal* subset above,
in SOAP 1.2 with WS-Addressing and the VIHF, and these are **assumptions** (docs):

* ``registrationEvent/statusCode`` ``active`` is an open DMP, any other status a closed one
  (``DMPClosed``);
* an objection to the feeding and an actor that may not feed come back as ``AE`` with the
  detail codes ``DMPPatientOpposition`` and ``DMPAccessDenied`` (names Relais gives them);
* ``NF`` is ``DMPNotFound``.

:func:`request` builds the query for an INS; :func:`read_status` reads the answer: None
(open, may be fed) or the DMP code that refuses. An answer it cannot read is
:class:`Td02Error`, which the client refuses as :data:`UNREADABLE` (not retried: the same
answer would come back, and the patient's partition would stall behind it).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from lxml import etree

from consumers.ihe.iti18 import envelope
from domain.document_id import safe_parser
from domain.xds.ebrim import SOAP

HL7: Final = "urn:hl7-org:v3"
ACTION: Final = "urn:hl7-org:v3:PRPA_IN201307UV02"
INTERACTION_OID: Final = "2.16.840.1.113883.1.6"
REASON_OID: Final = "1.2.250.1.213.1.1.4.11"  # DMP query reasons: TEST_EXST
DMP_DEVICE: Final = "1.2.250.1.213.4.1.1.1"  # the DMP as the receiving device
CONTENT_TYPE: Final = 'application/soap+xml; charset=utf-8; action="' + ACTION + '"'
NS: Final = {"s": SOAP, "v3": HL7}
NOT_FOUND: Final = "DMPNotFound"
CLOSED: Final = "DMPClosed"
#: Relais's code for an answer that is not a TD0.2 answer (refused, not retried)
UNREADABLE: Final = "TD02Unreadable"


class Td02Error(ValueError):
    """An answer that is not a TD0.2 answer (``PRPA_IN201308UV02``)."""


def _v3(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{HL7}}}{tag}", attrs)


def _device(parent: etree._Element, role: str, type_code: str, oid: str) -> None:
    device = _v3(_v3(parent, role, typeCode=type_code), "device", classCode="DEV")
    device.set("determinerCode", "INSTANCE")
    _v3(device, "id", root=oid)


def request(
    ins: str,
    ins_oid: str,
    *,
    to: str,
    source_id: str,
    now: datetime,
    security: etree._Element | None = None,
) -> bytes:
    """The SOAP TD0.2 query for the patient ``ins`` (matricule) of ``ins_oid``."""
    root = envelope(ACTION, f"urn:uuid:{uuid.uuid4()}", to)
    if security is not None:
        root[0].append(security)
    message = _v3(root[1], "PRPA_IN201307UV02", ITSVersion="XML_1.0")
    _v3(message, "id", root=source_id, extension=str(uuid.uuid4()))
    _v3(message, "creationTime", value=now.strftime("%Y%m%d%H%M%S"))
    _v3(message, "interactionId", root=INTERACTION_OID, extension="PRPA_IN201307UV02")
    _v3(message, "processingCode", code="P")
    _v3(message, "processingModeCode", code="T")
    _v3(message, "acceptAckCode", code="AL")
    _device(message, "receiver", "RCV", DMP_DEVICE)
    _device(message, "sender", "SND", source_id)
    act = _v3(message, "controlActProcess", classCode="CACT", moodCode="EVN")
    _v3(act, "reasonCode", code="TEST_EXST", codeSystem=REASON_OID)
    query = _v3(act, "queryByParameter")
    _v3(query, "queryId", root=source_id, extension=str(uuid.uuid4()))
    _v3(query, "statusCode", code="new")
    patient = _v3(_v3(query, "parameterList"), "patientIdentifier")
    _v3(patient, "value", root=ins_oid, extension=ins)
    _v3(patient, "semanticsText").text = "Patient.id"
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def read_status(body: bytes) -> str | None:
    """None when the DMP exists, is open and may be fed; else the DMP code that says why not."""
    try:
        root = etree.fromstring(body, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise Td02Error(f"not XML: {exc}") from None
    answer = root.find("s:Body/v3:PRPA_IN201308UV02", NS)
    if answer is None:
        raise Td02Error("no PRPA_IN201308UV02 in the answer")
    ack = _attribute(answer, "v3:acknowledgement/v3:typeCode", "code")
    if ack != "AA":
        detail = _attribute(answer, "v3:acknowledgement/v3:acknowledgementDetail/v3:code", "code")
        if not detail:
            raise Td02Error(f"acknowledgement {ack or '(none)'} without a detail code")
        return detail
    found = _attribute(answer, "v3:controlActProcess/v3:queryAck/v3:queryResponseCode", "code")
    if found == "NF":
        return NOT_FOUND
    if found != "OK":
        raise Td02Error(f"queryResponseCode {found or '(none)'}: expected OK or NF")
    event = "v3:controlActProcess/v3:subject/v3:registrationEvent/v3:statusCode"
    return None if _attribute(answer, event, "code") == "active" else CLOSED


def _attribute(element: etree._Element, path: str, name: str) -> str:
    found = element.find(path, NS)
    return "" if found is None else str(found.get(name) or "").strip()
