"""MTOM/XOP packages (SOAP 1.2): build one, read one back (pure, bytes in and out).

A package is a ``multipart/related`` body (RFC 2387) whose root part is the SOAP envelope
as ``application/xop+xml; type="application/soap+xml"`` and whose other parts are the
binaries the envelope points to with ``xop:Include href="cid:<Content-ID>"`` (W3C XOP,
RFC 2392). Bodies travel unencoded (``Content-Transfer-Encoding: binary``), so the reader
splits on the boundary bytes itself rather than through a text-oriented MIME parser.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Final
from urllib.parse import unquote

XOP: Final = "http://www.w3.org/2004/08/xop/include"
XOP_TYPE: Final = "application/xop+xml"
SOAP12_TYPE: Final = "application/soap+xml"
CRLF: Final = b"\r\n"


class MtomError(ValueError):
    """A body is not a well-formed MTOM/XOP package (the message says what is wrong)."""


@dataclass(frozen=True)
class Part:
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Package:
    """The root part (the SOAP envelope) and the attachments by Content-ID (no ``<>``)."""

    root: bytes
    root_type: str  # the root part's Content-Type
    action: str | None  # the ``action`` parameter of the package's Content-Type, if any
    parts: Mapping[str, Part]


def build(
    envelope: bytes,
    attachments: Mapping[str, Part],
    *,
    action: str | None = None,
    boundary: str | None = None,
    root_id: str = "root.message@relais",
) -> tuple[str, bytes]:
    """(Content-Type, body) of the package of ``envelope`` and its ``attachments`` by cid."""
    boundary = boundary or f"MIMEBoundary_{uuid.uuid4().hex}"
    marker = f"--{boundary}".encode("ascii")
    if any(marker in p for p in (envelope, *(a.content for a in attachments.values()))):
        raise MtomError("the boundary occurs in a part: choose another")
    root_type = f'{XOP_TYPE}; charset=UTF-8; type="{SOAP12_TYPE}"'
    if action:
        root_type += f'; action="{action}"'
    chunks = [_part(marker, root_type, root_id, envelope)]
    chunks += [_part(marker, p.content_type, cid, p.content) for cid, p in attachments.items()]
    body = b"".join(chunks) + marker + b"--" + CRLF
    content_type = (
        f'multipart/related; boundary="{boundary}"; type="{XOP_TYPE}"; '
        f'start="<{root_id}>"; start-info="{SOAP12_TYPE}"'
    )
    if action:
        content_type += f'; action="{action}"'
    return content_type, body


def read(content_type: str, body: bytes) -> Package:
    """Split a package; :class:`MtomError` when it is not multipart/related XOP with SOAP 1.2."""
    header = _header(content_type)
    if header.get_content_type() != "multipart/related":
        raise MtomError(f"Content-Type is {header.get_content_type()}, not multipart/related")
    if _param(header, "type") != XOP_TYPE:
        raise MtomError(f'multipart/related needs type="{XOP_TYPE}" (MTOM)')
    boundary = _param(header, "boundary")
    if not boundary:
        raise MtomError("multipart/related without a boundary")
    parts = _split(body, f"--{boundary}".encode("latin-1"))
    start = (_param(header, "start") or "").strip("<>")
    by_id = dict(parts)
    if start and start not in by_id:
        raise MtomError(f"no part has the start Content-ID <{start}>")
    root_id = start or parts[0][0]
    root = by_id[root_id]
    root_header = _header(root.content_type)
    if root_header.get_content_type() != XOP_TYPE or _param(root_header, "type") != SOAP12_TYPE:
        raise MtomError(f'the root part must be {XOP_TYPE}; type="{SOAP12_TYPE}" (SOAP 1.2)')
    return Package(
        root=root.content,
        root_type=root.content_type,
        action=_param(header, "action") or _param(root_header, "action"),
        parts={cid: part for cid, part in by_id.items() if cid != root_id},
    )


def content_id(href: str) -> str:
    """The Content-ID an ``xop:Include/@href`` (``cid:…``, URL-escaped) points to."""
    if not href.startswith("cid:"):
        raise MtomError(f"xop:Include href {href!r} is not a cid: URL")
    return unquote(href[4:])


def _part(marker: bytes, content_type: str, cid: str, content: bytes) -> bytes:
    headers = (
        f"Content-Type: {content_type}\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        f"Content-ID: <{cid}>\r\n\r\n"
    )
    return marker + CRLF + headers.encode("ascii") + content + CRLF


def _split(body: bytes, marker: bytes) -> list[tuple[str, Part]]:
    """The parts between the delimiters (preamble and epilogue ignored)."""
    delimiter = CRLF + marker
    if body.startswith(marker):
        body = CRLF + body
    sections = body.split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise MtomError("the multipart body has no parts or no closing delimiter")
    found: list[tuple[str, Part]] = []
    for section in sections[1:-1]:  # [0] is the preamble, [-1] the closing "--" and epilogue
        _, newline, rest = section.partition(CRLF)  # the rest of the delimiter line (padding)
        head, blank, content = rest.partition(CRLF + CRLF)
        if not newline or not blank:
            raise MtomError("a part has no header block")
        headers = _headers(head)
        cid = headers.get("content-id", "").strip().strip("<>")
        if not cid:
            raise MtomError("a part has no Content-ID")
        encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
        if encoding not in {"binary", "8bit", "7bit"}:
            raise MtomError(f"part <{cid}>: Content-Transfer-Encoding {encoding} is not MTOM's")
        if any(cid == other for other, _ in found):
            raise MtomError(f"two parts have the Content-ID <{cid}>")
        found.append((cid, Part(headers.get("content-type", "application/octet-stream"), content)))
    return found


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        if line[:1] in {" ", "\t"} and headers:  # folded continuation
            last = next(reversed(headers))
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise MtomError(f"malformed part header line {line[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def _header(content_type: str) -> Message:
    message = Message()
    message["Content-Type"] = content_type
    return message


def _param(header: Message, name: str) -> str | None:
    value = header.get_param(name)
    if value is None or isinstance(value, tuple):
        return None
    return str(value)
