"""Which sending facilities an MLLP client certificate may speak for (mutual TLS).

When the listener requires client certificates (``RELAIS_MLLP_CLIENT_CA``), each
connection is bound to the certificate its peer presented: a message whose MSH-4
(sending facility) is not one that certificate may send for is answered ``AR`` with an
ERR (ERR-2 ``MSH-4``, ERR-3 207, ERR-5 906, ERR-8 naming the certificate and the
facilities it may send for) and never handed to the message handler: nothing of it
reaches the bus, not even a dead letter. The gateway counts it
(``relais_mllp_frame_rejections_total{reason="peer-not-bound"}``) and logs the peer, the
certificate's CN, MSH-4 and MSH-10 (never the message's content).

The rule (:class:`PeerBinding`):

- by default a certificate may send for one facility: its subject's common name (CN,
  the last one if the subject has several), equal to MSH-4's namespace id (HD.1,
  ``CHU-X`` of ``CHU-X^1.2.250.1.71.4.2.2^ISO``) or to the whole of MSH-4;
- ``RELAIS_MLLP_PEER_FACILITIES`` (``CN=FACILITY[|FACILITY...][,CN=...]``, e.g.
  ``interface.chu-x.fr=CHU-X|CHU-X-LAB``) lists instead the facilities of the
  certificates it names (``*``: any facility, for a regional hub); the certificates it
  does not name keep the default rule;
- a connection without a certificate (only possible on a listener without
  ``RELAIS_MLLP_CLIENT_CA``, where no binding is configured) has nothing to bind: plain
  TCP and server-only TLS accept any MSH-4.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Protocol

from producers.hl7.ack import build_ack
from producers.hl7.errors import Hl7ValidationError
from producers.hl7.message import MessageHeader, read_header
from relais.settings_env import SettingsError

log = logging.getLogger(__name__)

#: A certificate listed with this facility may send for any facility (a regional hub).
ANY_FACILITY: Final = "*"
#: The reason the gateway's observer counts (``relais_mllp_frame_rejections_total``).
REJECTION: Final = "peer-not-bound"
#: ERR-3 (HL7 table 0357: it has no code for authorisation) and ERR-5 of the refusal.
PEER_HL7_ERROR: Final = "207"
PEER_APP_ERROR: Final = "906"
_HEADER_BYTES: Final = 64 * 1024  # the MSH is read from this much of a message, at most
_SHOWN: Final = 64

Handler = Callable[[bytes], Coroutine[Any, Any, bytes]]


class Rejections(Protocol):
    """Where a refusal is counted (the gateway's observer)."""

    def frame_rejected(self, reason: str) -> None: ...


def parse_peer_facilities(text: str) -> Mapping[str, frozenset[str]]:
    """``CN=FACILITY[|FACILITY...]`` entries, comma-separated (RELAIS_MLLP_PEER_FACILITIES).

    The CN may be written with a ``CN=`` prefix (``CN=interface.chu-x.fr=CHU-X``).
    """
    entries: dict[str, frozenset[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        subject, equals, listed = item.rpartition("=")
        subject = subject.strip()
        if subject[:3].upper() == "CN=":
            subject = subject[3:].strip()
        facilities = frozenset(filter(None, (name.strip() for name in listed.split("|"))))
        if not equals or not subject or not facilities:
            raise SettingsError(
                f"RELAIS_MLLP_PEER_FACILITIES: {item!r} is not CN=FACILITY[|FACILITY...] "
                "(e.g. interface.chu-x.fr=CHU-X|CHU-X-LAB)"
            )
        if subject in entries:
            raise SettingsError(f"RELAIS_MLLP_PEER_FACILITIES: CN {subject!r} is listed twice")
        entries[subject] = facilities
    return MappingProxyType(entries)


@dataclass(frozen=True)
class PeerBinding:
    """Certificates' CN -> the facilities they may send for (others: their CN alone)."""

    facilities_by_subject: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def facilities(self, subject: str) -> frozenset[str]:
        # a certificate whose CN is literally "*" is not a hub: only the mapping grants "*"
        return self.facilities_by_subject.get(subject, frozenset({subject} - {ANY_FACILITY}))

    def allows(self, subject: str | None, facility: str) -> bool:
        """Whether the certificate named ``subject`` may send as MSH-4 ``facility`` (as sent:
        its HD.1, or all of it, must be listed); no subject or no MSH-4: never."""
        if not subject or not facility:
            return False
        allowed = self.facilities(subject)
        return (
            ANY_FACILITY in allowed or facility in allowed or facility.split("^", 1)[0] in allowed
        )


def certificate_subject(peercert: object) -> str | None:
    """The CN of a certificate as :meth:`ssl.SSLSocket.getpeercert` gives it (the last CN)."""
    if not isinstance(peercert, dict):
        return None
    names = [
        value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"
    ]
    return str(names[-1]) if names else None


def refusal_text(subject: str | None, allowed: frozenset[str], facility: str) -> str:
    """ERR-8 of the refusal: which certificate may send for which facility, and what to do."""
    if subject is None:
        return (
            "this connection presented no client certificate with a subject CN: Relais cannot "
            "tell which facility it may send for; the message was not stored"
        )
    may = "any facility" if ANY_FACILITY in allowed else ", ".join(sorted(allowed))
    return (
        f"the client certificate CN={subject} may send for MSH-4 {may} only, not "
        f"{facility or '(empty)'}; the message was not stored: send it with that facility's "
        "certificate, or ask the Relais operator to bind this certificate to it "
        "(RELAIS_MLLP_PEER_FACILITIES)"
    )


def first_line(payload: bytes) -> bytes:
    """The MSH segment of ``payload`` (read from its first 64 kB only)."""
    # the parser skips leading line ends and a UTF-8 BOM: so does the binding
    head = payload[:_HEADER_BYTES].lstrip(b"\r\n").removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n")
    ends = [index for index in (head.find(b"\r"), head.find(b"\n")) if index >= 0]
    return head[: min(ends)] if ends else head


class BoundHandler:
    """The message handler of one connection, bound to its client certificate's CN."""

    def __init__(
        self,
        handler: Handler,
        binding: PeerBinding,
        subject: str | None,
        peer: str,
        rejections: Rejections,
    ) -> None:
        self.handler, self.binding, self.subject = handler, binding, subject
        self.peer, self.rejections = peer, rejections

    async def __call__(self, payload: bytes) -> bytes:
        msh = first_line(payload)
        header = read_header(msh)
        facility = header.sending_facility if header is not None else ""
        if self.binding.allows(self.subject, facility):
            return await self.handler(payload)
        return self.refuse(header, msh, facility)

    def refuse(self, header: MessageHeader | None, msh: bytes, facility: str) -> bytes:
        """``AR`` with the ERR naming the binding; counted and logged without content."""
        self.rejections.frame_rejected(REJECTION)
        control_id = header.control_id if header is not None else ""
        log.warning(
            "MLLP message %s from %s refused (AR): certificate CN=%s may not send for MSH-4 %s",
            _shown(control_id) or "(no MSH-10)",
            self.peer,
            _shown(self.subject or "(none)"),
            _shown(facility) or "(empty)",
        )
        allowed = self.binding.facilities(self.subject) if self.subject else frozenset()
        error = Hl7ValidationError(
            refusal_text(self.subject, allowed, _shown(facility)),
            hl7_error_code=PEER_HL7_ERROR,
            app_error_code=PEER_APP_ERROR,
            location="MSH-4",
        )
        ack_id = uuid.uuid4().hex[:20]
        return build_ack(
            header, msh, code="AR", error=error, control_id=ack_id, now=datetime.now(UTC)
        )


def bind_peer(
    binding: PeerBinding | None,
    handler: Handler,
    writer: asyncio.StreamWriter,
    rejections: Rejections,
) -> Handler:
    """``handler`` itself without a binding; else ``handler`` bound to the certificate the
    peer of ``writer`` presented (none: every message refused, the binding fails closed)."""
    if binding is None:
        return handler
    subject = certificate_subject(writer.get_extra_info("peercert"))
    peer = writer.get_extra_info("peername")
    where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
    return BoundHandler(handler, binding, subject, where, rejections)


def _shown(text: str) -> str:
    """A peer-chosen value as logs and ERR-8 show it: printable, at most 64 characters."""
    return "".join(c for c in text[:_SHOWN] if c.isprintable())
