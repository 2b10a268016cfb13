"""Where business acknowledgements go back to, and what the producer answered (pure).

``RELAIS_ACK_ROUTES`` maps each producer (its MSH-4 sending facility) to the
MLLP listener of its interface engine: ``FACILITY=host:port[,FACILITY=host:port…]``.
The producer answers each ZAM with an HL7 ACK whose MSA-1 says whether it took it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from producers.hl7.ack import read_msa


class AckRouteError(ValueError):
    """RELAIS_ACK_ROUTES cannot be read; the message says which entry and why."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


def parse_routes(text: str) -> Mapping[str, Endpoint]:
    """``FACILITY=host:port`` entries, comma-separated."""
    routes: dict[str, Endpoint] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        facility, equals, address = item.partition("=")
        host, colon, port = address.strip().rpartition(":")
        if not equals or not facility.strip() or not colon or not host or not port.isdigit():
            raise AckRouteError(
                f"RELAIS_ACK_ROUTES: {item!r} is not FACILITY=host:port (e.g. CHU-X=10.0.0.5:6661)"
            )
        if not 0 < int(port) < 65536:
            raise AckRouteError(f"RELAIS_ACK_ROUTES: {item!r}: port out of range")
        routes[facility.strip()] = Endpoint(host, int(port))
    return MappingProxyType(routes)


def accepted(answer: bytes) -> tuple[bool, str]:
    """(taken, MSA-1) of the producer's ACK to a ZAM: AA/CA mean it took responsibility."""
    msa = read_msa(answer)
    if msa is None:
        return False, "no MSA"
    code = msa[0]
    return code in {"AA", "CA"}, code or "none"
