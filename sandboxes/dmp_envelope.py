"""The SOAP 1.2 envelope of a DMP request, read from the wire by the sandbox (pure).

* MTOM/XOP (W3C SOAP MTOM §3, XOP 1.0 §3-4; IHE ITI TF-2 §V.3.6): a ``multipart/related``
  body whose ``type`` is ``application/xop+xml`` and ``start-info`` ``application/soap+xml``;
  its root part (``start``, else the first) is ``application/xop+xml`` with
  ``type="application/soap+xml"``; every other part has a Content-ID, and every
  ``xop:Include href="cid:..."`` names one of them (RFC 2392).
* Plain SOAP 1.2 (ITI-18, ITI-62 may come without attachments): ``application/soap+xml``.
* The envelope is valid against the SOAP 1.2 envelope schema (W3C, ``ihe-xsd/soap``);
  headers marked ``mustUnderstand`` are WS-Addressing or WS-Security ones (SOAP 1.2 Part 1
  §5.2.3); WS-Addressing 1.0 ``Action`` (the transaction's), ``MessageID`` and ``To`` are
  present (IHE ITI TF-2 §V.3.2, W3C WS-Addressing 1.0 SOAP Binding §6.4).
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Final
from urllib.parse import unquote

from lxml import etree

from domain.xds.ebrim import SOAP, WSA, WSSE
from sandboxes.dmp_refusals import Faulted
from sandboxes.dmp_xml import (
    SchemaInvalid,
    elements,
    first,
    parse,
    strings,
    validate,
)

UNDERSTOOD: Final = frozenset({WSA, WSSE})
XOP_TYPE: Final = "application/xop+xml"
SOAP12_TYPE: Final = "application/soap+xml"


@dataclass(frozen=True)
class Envelope:
    """A SOAP 1.2 request as the sandbox reads it."""

    root: etree._Element
    action: str
    message_id: str
    to: str
    assertion: etree._Element | None  # wsse:Security/saml:Assertion (the VIHF)
    payload: etree._Element  # the one child of soap:Body
    parts: Mapping[str, bytes]  # MIME attachments by Content-ID (no angle brackets)

    def included(self, holder: etree._Element) -> bytes | None:
        """The bytes an ``xop:Include`` child of ``holder`` names, else None."""
        href = first(holder, "xop:Include/@href")
        return self.parts.get(_cid(href)) if href else None

    def unreferenced(self) -> frozenset[str]:
        """Content-IDs of the attachments no ``xop:Include`` names."""
        hrefs = {_cid(h) for h in strings(self.root, "//xop:Include/@href")}
        return frozenset(self.parts) - hrefs


def read(
    content_type: str, body: bytes, *, action: str | frozenset[str], schema_dir: Path
) -> Envelope:
    """The envelope of ``body`` (a request for ``action``, or one of them);
    :class:`Faulted` when transport or SOAP is wrong."""
    if content_type.split(";", maxsplit=1)[0].strip().lower() == "multipart/related":
        root_bytes, parts = _mtom(content_type, body)
    elif content_type.split(";", maxsplit=1)[0].strip().lower() == SOAP12_TYPE:
        root_bytes, parts = body, {}
    else:
        raise Faulted("rim:InvalidRequestException", f"Content-Type must be {SOAP12_TYPE} or MTOM")
    try:
        root = parse(root_bytes)
    except etree.XMLSyntaxError:
        raise Faulted(
            "rim:InvalidRequestException", "the SOAP part is not well-formed XML"
        ) from None
    envelope = _envelope(root, action, schema_dir, parts)
    _check_includes(envelope)
    return envelope


def _mtom(content_type: str, body: bytes) -> tuple[bytes, dict[str, bytes]]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
    if message.get_param("type") != XOP_TYPE:
        raise Faulted("rim:InvalidRequestException", f'MTOM needs type="{XOP_TYPE}"')
    if SOAP12_TYPE not in str(message.get_param("start-info") or ""):
        raise Faulted("rim:InvalidRequestException", f'MTOM needs start-info="{SOAP12_TYPE}"')
    payload = message.get_payload()
    listed = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    if not message.is_multipart() or not listed:
        raise Faulted("rim:InvalidRequestException", "the multipart/related body has no part")
    start = _cid(str(message.get_param("start") or ""))
    parts: dict[str, Message] = {}
    for part in listed:
        parts.setdefault(_cid(str(part.get("Content-ID", ""))), part)
    root = parts.pop(start, None) if start else None
    if root is None:
        root = listed[0]
        parts.pop(_cid(str(root.get("Content-ID", ""))), None)
    if root.get_content_type() != XOP_TYPE or SOAP12_TYPE not in str(root.get_param("type")):
        raise Faulted(
            "rim:InvalidRequestException",
            f'the root part must be {XOP_TYPE}; type="{SOAP12_TYPE}"',
        )
    if "" in parts:
        raise Faulted("rim:InvalidRequestException", "an attachment has no Content-ID")
    return _bytes(root), {cid: _bytes(part) for cid, part in parts.items()}


def _bytes(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _cid(value: str) -> str:
    """A Content-ID without its angle brackets, or a ``cid:`` URL's (RFC 2392) id."""
    value = value.strip()
    if value.lower().startswith("cid:"):
        value = unquote(value[4:])
    return value.removeprefix("<").removesuffix(">")


def _envelope(
    root: etree._Element,
    action: str | frozenset[str],
    schema_dir: Path,
    parts: Mapping[str, bytes],
) -> Envelope:
    if root.tag != f"{{{SOAP}}}Envelope":
        raise Faulted("env:VersionMismatch", "not a SOAP 1.2 Envelope", value="VersionMismatch")
    try:
        validate(schema_dir, "envelope", _skeleton(root))
    except SchemaInvalid as exc:
        raise Faulted("rim:InvalidRequestException", str(exc)) from None
    for header in elements(root, "s:Header/*[@s:mustUnderstand='1' or @s:mustUnderstand='true']"):
        if etree.QName(header).namespace not in UNDERSTOOD:
            raise Faulted(
                "env:MustUnderstand",
                "a mustUnderstand header is not understood",
                value="MustUnderstand",
            )
    got = first(root, "s:Header/wsa:Action")
    message_id, to = first(root, "s:Header/wsa:MessageID"), first(root, "s:Header/wsa:To")
    if not got or not message_id or not to:
        raise Faulted(
            "wsa:MessageAddressingHeaderRequired", "wsa:Action, wsa:MessageID and wsa:To required"
        )
    actions = {action} if isinstance(action, str) else action
    if got not in actions:
        raise Faulted(
            "wsa:ActionNotSupported", f"wsa:Action must be {' or '.join(sorted(actions))}"
        )
    body = elements(root, "s:Body/*")
    if len(body) != 1:
        raise Faulted("rim:InvalidRequestException", "the SOAP Body must hold one element")
    assertions = elements(root, "s:Header/wsse:Security/saml:Assertion")
    return Envelope(
        root, got, message_id, to, assertions[0] if assertions else None, body[0], parts
    )


def _skeleton(root: etree._Element) -> etree._Element:
    """The envelope with its header blocks and body emptied: the SOAP schema judges the
    envelope; what the blocks hold is judged by their own schemas (SAML, ebRS)."""
    copy = etree.fromstring(etree.tostring(root))
    for block in elements(copy, "s:Header/* | s:Body/*"):
        for child in list(block):
            block.remove(child)
        block.text = None
    return copy


def _check_includes(envelope: Envelope) -> None:
    hrefs = [_cid(h) for h in strings(envelope.root, "//xop:Include/@href")]
    if any(href not in envelope.parts for href in hrefs):
        raise Faulted("rim:InvalidRequestException", "an xop:Include names no MIME part")
