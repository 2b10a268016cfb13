"""What a received mail's documents carry to the DPI delivery, and its decisions (pure).

The watcher publishes one ``DocumentSubmitted`` per CDA on ``mssante.inbound``; the LPS
delivery (:mod:`mss_bridge.lps_delivery`) sends each to the DPI and answers the mail
once the DPI answered. What it needs besides the record travels two ways:

* the **mailboxes** that received the mail (Delivered-To, X-Original-To, To, Cc) in the
  record itself, ``hints.recipients`` (sealed, purpose ``recipient``): a replayed dead
  letter still finds its DPI;
* the **mail context** — the original headers (for the MDN), the text of the mail, the
  document's place in the mail (index, count) — sealed (purpose ``mail``) in the Kafka
  header :data:`HEADER`. A dead letter replayed by an operator has no such header: the
  document is delivered, the mail is not answered again.

**Mailbox -> facility.** The receiving mailbox *is* the DPI's facility name in
``RELAIS_ACK_ROUTES``: an entry for the address (``dpi@ch-a.mssante.fr=10.0.0.5:6661``),
else one for its domain (``ch-a.mssante.fr=10.0.0.5:6661``), is the DPI's MLLP listener;
the key found is MSH-6 of the MDM. The first mailbox of the list above with a route wins.

**Answering the mail** (:func:`mdn_due`): one MDN per mail. A document the DPI refused
answers the mail at once with the error MDN (the first refusal only); the "processed" MDN
goes when the DPI took the mail's last document and none was refused. The documents of
a mail share one record key, so they reach the delivery in order.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import getaddresses
from typing import Final, Literal

from producers.mllp.ack_routes import Endpoint
from relais.envelope import Envelope, open_envelope, seal
from relais.keyring import Keyring

HEADER: Final = "relais-mail"
PURPOSE: Final = "mail"
MAX_BODY_CHARS: Final = 64 << 10
_ADDRESS_HEADERS: Final = ("Delivered-To", "X-Original-To", "To", "Cc")
Answer = Literal["processed", "error"]


@dataclass(frozen=True)
class MailContext:
    """The received mail around one of its documents."""

    headers: bytes  # the original header block (RFC 5322), for the MDN
    body: str  # the text of the mail (text/plain), for the MDM
    index: int  # this document's place among the mail's documents
    count: int

    @property
    def last(self) -> bool:
        return self.index >= self.count - 1

    def original(self) -> EmailMessage:
        """The received mail as far as the MDN needs it: its headers, no body."""
        message = message_from_bytes(self.headers + b"\r\n\r\n", policy=default)
        assert isinstance(message, EmailMessage)  # policy.default makes them
        return message


@dataclass(frozen=True)
class Route:
    facility: str  # the RELAIS_ACK_ROUTES key: MSH-6 of the MDM
    mailbox: str  # the receiving mailbox it was found for (PRT RCT)
    endpoint: Endpoint


def header_block(raw: bytes) -> bytes:
    """The header block of a raw mail (up to the first empty line)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, _ = raw.partition(separator)
        if found:
            return head
    return raw


def mail_text(message: EmailMessage) -> str:
    """The mail's text/plain body, at most :data:`MAX_BODY_CHARS` characters."""
    body = message.get_body(preferencelist=("plain",))
    if body is None or body.is_attachment():
        return ""
    try:
        text = body.get_content()
    except (LookupError, ValueError):
        return ""
    return str(text)[:MAX_BODY_CHARS]


def mailboxes(message: EmailMessage) -> tuple[str, ...]:
    """The addresses that received the mail, lower-cased, in :data:`_ADDRESS_HEADERS` order."""
    values = [str(v) for name in _ADDRESS_HEADERS for v in message.get_all(name, [])]
    found = (address.strip().lower() for _, address in getaddresses(values))
    return tuple(dict.fromkeys(a for a in found if "@" in a))


def seal_context(keyring: Keyring, context: MailContext, *, event_id: str) -> bytes:
    """The Kafka header value: the context as JSON, sealed for this event."""
    plain = json.dumps(
        {
            "headers": base64.b64encode(context.headers).decode(),
            "body": context.body,
            "index": context.index,
            "count": context.count,
        }
    ).encode()
    envelope = seal(keyring, plain, event_id=event_id, purpose=PURPOSE)
    return json.dumps(
        {
            "key_id": envelope.key_id,
            "nonce": base64.b64encode(envelope.nonce).decode(),
            "ciphertext": base64.b64encode(envelope.ciphertext).decode(),
        }
    ).encode()


def open_context(keyring: Keyring, value: bytes, *, event_id: str) -> MailContext:
    """The context a header carries; ``ValueError``/``EnvelopeError`` when it does not open."""
    sealed = json.loads(value)
    envelope = Envelope(
        key_id=str(sealed["key_id"]),
        nonce=base64.b64decode(sealed["nonce"], validate=True),
        ciphertext=base64.b64decode(sealed["ciphertext"], validate=True),
    )
    body = json.loads(open_envelope(keyring, envelope, event_id=event_id, purpose=PURPOSE))
    count = int(body["count"])
    index = int(body["index"])
    if not 0 <= index < count:
        raise ValueError("mail context: index out of range")
    return MailContext(base64.b64decode(body["headers"]), str(body["body"]), index, count)


def context_of(headers: Sequence[tuple[str, bytes]] | None) -> bytes | None:
    """The sealed context among a consumed message's Kafka headers."""
    return next((bytes(v) for k, v in headers or () if k == HEADER), None)


def route_for(boxes: Sequence[str], routes: Mapping[str, Endpoint]) -> Route | None:
    """The DPI of the first receiving mailbox with a route: its address, else its domain."""
    for mailbox in boxes:
        for facility in (mailbox, mailbox.rpartition("@")[2]):
            endpoint = routes.get(facility)
            if endpoint is not None:
                return Route(facility, mailbox, endpoint)
    return None


def mdn_due(*, refused: bool, last: bool, already_answered: bool) -> Answer | None:
    """Which answer the mail gets after one of its documents, if any (see the docstring)."""
    if already_answered:
        return None
    if refused:
        return "error"
    return "processed" if last else None
