"""Where business acknowledgements go back to, and what the producer answered.

``RELAIS_ACK_ROUTES`` maps each producer (its MSH-4 sending facility) to the
MLLP listener of its interface engine: ``FACILITY=host:port[/tls][,FACILITY=…]``.
A route ending in ``/tls`` is MLLP over TLS: the producer's server certificate is
checked against ``RELAIS_ACK_CA_FILE`` (else the system's trust store) and the route's
host name; with ``RELAIS_ACK_CLIENT_CERT``/``_KEY`` Relais presents its certificate
(mutual TLS). The producer answers each ZAM with an HL7 ACK whose MSA-1 says whether
it took it.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from producers.hl7.ack import read_msa
from producers.mllp.config import client_tls_context
from relais.settings_acks import AckSettings
from relais.settings_env import SettingsError


class AckRouteError(ValueError):
    """RELAIS_ACK_ROUTES cannot be read; the message says which entry and why."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool = False  # the route ends in /tls
    #: the TLS context of a /tls route (None: the system's trust store, no client certificate)
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        """What to connect with: None for plain MLLP."""
        if not self.tls:
            return None
        return self.context or client_tls_context(None)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}{'/tls' if self.tls else ''}"


def parse_routes(text: str) -> Mapping[str, Endpoint]:
    """``FACILITY=host:port[/tls]`` entries, comma-separated."""
    routes: dict[str, Endpoint] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        facility, equals, address = item.partition("=")
        address, slash, suffix = address.strip().partition("/")
        host, colon, port = address.rpartition(":")
        if not equals or not facility.strip() or not colon or not host or not port.isdigit():
            raise AckRouteError(
                f"RELAIS_ACK_ROUTES: {item!r} is not FACILITY=host:port[/tls] "
                "(e.g. CHU-X=10.0.0.5:6661/tls)"
            )
        if slash and suffix != "tls":
            raise AckRouteError(f"RELAIS_ACK_ROUTES: {item!r}: the only suffix is /tls")
        if not 0 < int(port) < 65536:
            raise AckRouteError(f"RELAIS_ACK_ROUTES: {item!r}: port out of range")
        routes[facility.strip()] = Endpoint(host, int(port), tls=bool(slash))
    return MappingProxyType(routes)


def routes_from(acks: AckSettings) -> Mapping[str, Endpoint]:
    """The routes of ``acks``, the /tls ones with the TLS context of RELAIS_ACK_CA_FILE and
    RELAIS_ACK_CLIENT_CERT/_KEY; :class:`SettingsError` names a TLS setting to fix."""
    routes = parse_routes(acks.routes)
    tls_set = acks.ca_file or acks.client_cert or acks.client_key
    if not tls_set and not any(endpoint.tls for endpoint in routes.values()):
        return routes
    context = ack_tls_context(acks)
    return MappingProxyType(
        {name: replace(e, context=context) if e.tls else e for name, e in routes.items()}
    )


def ack_tls_context(acks: AckSettings) -> ssl.SSLContext:
    """The client context of the /tls routes (mutual TLS with a client certificate)."""
    if (acks.client_cert is None) != (acks.client_key is None):
        raise SettingsError("RELAIS_ACK_CLIENT_CERT and RELAIS_ACK_CLIENT_KEY go together")
    ca = _file("RELAIS_ACK_CA_FILE", acks.ca_file)
    cert = _file("RELAIS_ACK_CLIENT_CERT", acks.client_cert)
    key = _file("RELAIS_ACK_CLIENT_KEY", acks.client_key)
    try:
        context = client_tls_context(ca)
    except ssl.SSLError as exc:
        raise SettingsError(f"RELAIS_ACK_CA_FILE={ca}: no usable CA certificate ({exc})") from None
    if cert is not None:
        try:
            context.load_cert_chain(certfile=cert, keyfile=key, password=b"")  # never prompts
        except ssl.SSLError as exc:
            raise SettingsError(
                f"RELAIS_ACK_CLIENT_CERT={cert}, RELAIS_ACK_CLIENT_KEY={key}: not a certificate "
                f"and its unencrypted private key ({exc})"
            ) from None
    return context


def _file(variable: str, path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise SettingsError(f"{variable}={path}: no such file")
    return path


def accepted(answer: bytes) -> tuple[bool, str]:
    """(taken, MSA-1) of the producer's ACK to a ZAM: AA/CA mean it took responsibility."""
    msa = read_msa(answer)
    if msa is None:
        return False, "no MSA"
    code = msa[0]
    return code in {"AA", "CA"}, code or "none"
