"""The SOAP 1.2 side of ITI-41 that the request and the answers share (pure).

The WS-Addressing actions, the namespaces (``NS`` for reading, ``NSMAP`` for writing), the
envelope with its addressing headers (and the VIHF in ``wsse:Security`` for a request), and
:class:`Iti41Error`, raised by every reader of the package when a message is not ITI-41.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from lxml import etree

from consumers.ihe import mtom
from domain.document_id import safe_parser
from domain.xds.ebrim import LCM, RIM, RS, SOAP, WSA, WSSE, XDSB

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
#: the prefixes of the elements Relais writes
NSMAP: Final = {
    "soap": SOAP,
    "wsa": WSA,
    "xdsb": XDSB,
    "lcm": LCM,
    "rim": RIM,
    "rs": RS,
    "xop": mtom.XOP,
}
ANONYMOUS: Final = "http://www.w3.org/2005/08/addressing/anonymous"


class Iti41Error(ValueError):
    """A request or answer is not a readable ITI-41 message (the message says what is wrong)."""


def envelope(
    body: etree._Element,
    *,
    action: str,
    headers: Sequence[tuple[str, str]],
    security: etree._Element | None = None,
) -> bytes:
    """The SOAP 1.2 envelope of ``body``: wsa:Action, the other WS-Addressing ``headers``,
    and, when a ``security`` assertion is given, wsa:ReplyTo (anonymous) and wsse:Security."""
    root = etree.Element(f"{{{SOAP}}}Envelope", nsmap=NSMAP)
    header = etree.SubElement(root, f"{{{SOAP}}}Header")
    text(header, WSA, "Action", action).set(f"{{{SOAP}}}mustUnderstand", "1")
    for name, value in headers:
        text(header, WSA, name, value)
    if security is not None:
        reply = etree.SubElement(header, f"{{{WSA}}}ReplyTo")
        text(reply, WSA, "Address", ANONYMOUS)
        wsse = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
        wsse.set(f"{{{SOAP}}}mustUnderstand", "1")
        wsse.append(security)
    etree.SubElement(root, f"{{{SOAP}}}Body").append(body)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def text(parent: etree._Element, ns: str, tag: str, value: str) -> etree._Element:
    """A new child ``{ns}tag`` of ``parent`` holding ``value``."""
    element = etree.SubElement(parent, f"{{{ns}}}{tag}")
    element.text = value
    return element


def parse(data: bytes, what: str) -> etree._Element:
    """``data`` as XML (no DTD, no network); :class:`Iti41Error` naming ``what`` otherwise."""
    try:
        return etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError:
        raise Iti41Error(f"{what} is not well-formed XML") from None
