"""Which delivery a mail belongs to, carried by the mail itself (pure).

An outbound mail's ``Message-ID`` encodes the delivery it carries (event id,
request id, document unique id, submission time and the producer's HL7 header:
facility, application, control id). DSNs return the original headers and MDNs
name the ``Original-Message-ID``, so an acknowledgement is linked back to its
document without any state shared between the sending and the watching
processes, and a re-sent mail (after a crash) has the same Message-ID. The
token holds routing identifiers only, never patient data; the same identifiers
travel readable on the bus.

The token is authenticated: a keyed MAC (the keyring's pseudonym key, domain
``mail-ref``) follows it, so a forged DSN or MDN that makes up or alters a
Message-ID is not linked to any document — it is a foreign mail.

The SMTP envelope id (``ENVID``, RFC 3461, echoed in a DSN as
``Original-Envelope-Id``) is the request id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import Final

from relais.keyring import Keyring, pseudonymise

#: Computes the MAC of a Message-ID token (see :func:`mail_signer`).
Signer = Callable[[str], str]

PREFIX: Final = "relais."
_MSGID: Final = re.compile(r"<?\s*([^<>@\s]+)@([^<>\s]+?)\s*>?")
_ENVID_SAFE: Final = re.compile(r"[!-~]{1,100}")


@dataclass(frozen=True)
class MailRef:
    """The delivery a mail carries; enough to write its status and the HL7 business ack."""

    event_id: str
    request_id: str
    document_unique_id: str
    submitted_at_ms: int
    facility: str
    application: str
    control_id: str


def recipient_tag(request_id: str, recipient: str) -> str:
    """Tells apart the mails of one request to several recipients (12 hex characters)."""
    return hashlib.sha256(f"{request_id}|{recipient.lower()}".encode()).hexdigest()[:12]


def mail_signer(keyring: Keyring) -> Signer:
    """The MAC of Message-ID tokens: 16 hex characters of a keyed HMAC-SHA256."""

    def sign(token: str) -> str:
        return pseudonymise(keyring, token, domain="mail-ref")[:16]

    return sign


def message_id(ref: MailRef, domain: str, tag: str, sign: Signer) -> str:
    """``<relais.<tag>.<token>.<mac>@domain>``: the same delivery always gets the same id."""
    raw = json.dumps(list(astuple(ref)), separators=(",", ":"), ensure_ascii=True)
    token = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    return f"<{PREFIX}{tag}.{token}.{sign(token)}@{domain}>"


def read_message_id(value: str | None, sign: Signer) -> MailRef | None:
    """The :class:`MailRef` of a Message-ID Relais wrote, else None (foreign, forged, damaged)."""
    token = _authentic_token(value, sign)
    if token is None:
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(fields, list) or len(fields) != 7:
        return None
    *texts, submitted, facility, application, control = fields
    strings = [*texts, facility, application, control]
    if not all(isinstance(x, str) for x in strings) or not isinstance(submitted, int):
        return None
    return MailRef(texts[0], texts[1], texts[2], submitted, facility, application, control)


def _authentic_token(value: str | None, sign: Signer) -> str | None:
    """The token of a Relais Message-ID whose MAC is right, else None."""
    match = _MSGID.fullmatch(value.strip()) if value else None
    if not match or not match.group(1).startswith(PREFIX):
        return None
    _tag, _, signed = match.group(1)[len(PREFIX) :].partition(".")
    token, _, mac = signed.rpartition(".")
    return token if token and hmac.compare_digest(mac, sign(token)) else None


def envelope_id(ref: MailRef) -> str | None:
    """The DSN envelope id (request id) when it is printable ASCII of at most 100 characters."""
    return ref.request_id if _ENVID_SAFE.fullmatch(ref.request_id) else None
