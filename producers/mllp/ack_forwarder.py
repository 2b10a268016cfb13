"""Send business acknowledgements (ZAM) back to the producers over MLLP.

Consumes ``acks.business``; for each ZAM, opens an MLLP connection to the
producer's interface engine (``RELAIS_ACK_ROUTES``: its MSH-4 facility ->
host:port, ``/tls``: over TLS, see :mod:`producers.mllp.ack_routes`), sends the
message and waits for the producer's HL7 ACK. AA/CA:
delivered, the offset is committed. AR, a refused connection or a timeout:
tried again later with backoff (the partition pauses; others flow). AE, or a
facility with no route: dead-lettered with the reason, so nothing is dropped
silently. A ZAM carries codes and ids only, never patient data.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import Counter

from producers.mllp.ack_routes import Endpoint, accepted
from producers.mllp.framing import MllpDecoder, frame
from relais.deadletter import Failure
from relais.health import READINESS, broker_reachable
from relais.kafka_clients import Target
from relais.keyring import Keyring
from relais.metrics import REGISTRY
from relais.sink_loop import GiveUp, Outputs, RetryLater, SinkLoop, SinkStage, decode_record
from relais.topics import BUSINESS_ACKS

log = logging.getLogger(__name__)
STAGE = "ack-forwarder"
MAX_ANSWER = 1 << 20

FORWARDED = Counter(
    "relais_business_acks_total",
    "Business acknowledgements (ZAM) sent back to producers, by kind and outcome "
    "(delivered, retrying, refused, unrouted).",
    ["kind", "outcome"],
    registry=REGISTRY,
)


class Retry(Exception):
    """The producer could not take the ZAM now; try again later."""


async def send_mllp(endpoint: Endpoint, message: bytes, timeout_s: float) -> bytes:
    """Send one message over MLLP (over TLS on a /tls route) and return the first frame
    answered; a TLS failure is an :class:`ssl.SSLError` (see :func:`unreachable`)."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(
            endpoint.host, endpoint.port, ssl=endpoint.ssl_context()
        )
        try:
            writer.write(frame(message))
            await writer.drain()
            decoder = MllpDecoder(MAX_ANSWER)
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the producer closed the connection without an ACK")
                if frames := decoder.feed(data):
                    return frames[0]
        finally:
            writer.close()
            await writer.wait_closed()


def unreachable(facility: str, endpoint: Endpoint, exc: BaseException) -> str:
    """Why the producer's listener did not answer; a TLS failure names the settings to check."""
    where = f"producer {facility} at {endpoint}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"{where}: its server certificate was not accepted ({exc.verify_message}); "
            "check RELAIS_ACK_CA_FILE and the route's host name"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"{where}: TLS failed ({exc.reason or type(exc).__name__}); check that it "
            "speaks TLS (/tls) and whether it wants RELAIS_ACK_CLIENT_CERT (mutual TLS)"
        )
    if endpoint.tls and isinstance(exc, ConnectionError):  # TLS 1.3: refused after the handshake
        return (
            f"{where}: the TLS connection ended before an ACK ({type(exc).__name__}); if the "
            "producer wants a client certificate, check RELAIS_ACK_CLIENT_CERT (mutual TLS)"
        )
    return f"{where} unreachable ({type(exc).__name__})"


class AckForwarder:
    def __init__(
        self,
        *,
        bootstrap: Target,
        prefix: str,
        keyring: Keyring,
        routes: Mapping[str, Endpoint],
        timeout_s: float = 10.0,
        session_timeout_s: float = 6.0,
    ) -> None:
        self.prefix, self.keyring, self.routes, self.timeout_s = prefix, keyring, routes, timeout_s
        self.stage = SinkStage(STAGE, prefix, keyring)
        self.codec = self.stage.codec
        self.loop = SinkLoop(
            bootstrap,
            self.stage,
            group_id=f"{prefix}-ack-forwarder",
            topics=[BUSINESS_ACKS.name(prefix)],
            session_timeout_s=session_timeout_s,
        )
        READINESS.register("broker", broker_reachable(bootstrap))

    async def run(self, stop: asyncio.Event) -> None:
        await self.loop.run(stop, self._handle)

    async def _handle(self, tp: TopicPartition, message: Any) -> Outputs | RetryLater:
        try:
            return await self._forward(message)
        except Retry as exc:
            log.warning("ZAM at %s@%d: %s; retrying later", tp, message.offset, exc)
            return RetryLater()

    async def _forward(self, message: Any) -> Outputs:
        """Nothing to emit once the producer took the ZAM; GiveUp (dead letter) if it never will."""
        try:
            ack = decode_record(self.codec, message, "BusinessAck")
        except Exception as exc:  # unreadable: dead-lettered, never a crash
            raise GiveUp.because(exc) from exc
        kind = ack["kind"]
        endpoint = self.routes.get(ack["facility"])
        if endpoint is None:
            FORWARDED.labels(kind, "unrouted").inc()
            reason = (
                f"no MLLP route for facility {ack['facility']}: add it to RELAIS_ACK_ROUTES "
                "and replay this dead letter"
            )
            raise GiveUp(Failure("no-ack-route", reason), ack["event_id"])
        try:
            answer = await send_mllp(endpoint, bytes(ack["message"]), self.timeout_s)
        except (OSError, TimeoutError) as exc:
            FORWARDED.labels(kind, "retrying").inc()
            raise Retry(unreachable(ack["facility"], endpoint, exc)) from None
        taken, code = accepted(answer)
        if taken:
            FORWARDED.labels(kind, "delivered").inc()
            return []
        if code in {"AR", "CR"}:
            FORWARDED.labels(kind, "retrying").inc()
            raise Retry(f"producer {ack['facility']} answered {code}")
        FORWARDED.labels(kind, "refused").inc()
        reason = f"producer {ack['facility']} refused the ZAM with MSA-1 {code}"
        raise GiveUp(Failure("ack-refused", reason), ack["event_id"])
