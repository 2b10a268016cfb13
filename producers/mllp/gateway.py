"""The MLLP listener of the HL7 gateway: an asyncio shell around a message handler.

Transport only. What a message means (parse, publish, which ACK) belongs to
the :class:`MessageHandler` it is given (``producers.ingest.Ingest`` in
production); this module frames, orders, times out and counts.

Guarantees a sender can rely on:

- Per connection, frames are handled strictly one after the other and ACK *n*
  is written before message *n+1* is handed over, so a sender's order is kept.
- A handler that has started is never cancelled, not by the peer leaving nor by
  :meth:`MllpGateway.stop` (within its grace period): the event may already be
  on the bus. If the peer is gone the ACK is dropped; the sender resends and the
  duplicate is recognised downstream (at-least-once, delivered once).
- A frame over ``max_frame_bytes`` gets an ``AE`` NAK (permanent: the same message
  would be refused again) whose ERR names the limit and what the sender can do;
  the connection is then half-closed, drained briefly (so the NAK is not lost to
  a reset) and closed.

One sender cannot stall or starve the others: per-peer connection limit, frame
deadline, idle timeout (see :mod:`producers.mllp.guards` for the defaults and why).

Logs carry the peer address, sizes and SHA-256 prefixes, never message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final, NoReturn, Protocol

from producers.hl7.ack import read_msa
from producers.hl7.message import message_digest
from producers.mllp.config import GatewayConfig, server_tls_context
from producers.mllp.framing import FrameTooLarge, MllpDecoder, frame
from producers.mllp.guards import FrameClock, PeerSlots, oversized_nak
from producers.mllp.peers import Handler, bind_peer

__all__ = [
    "GatewayConfig",
    "GatewayObserver",
    "MessageHandler",
    "MllpGateway",
    "NullObserver",
    "ack_code_of",
    "server_tls_context",
]

log = logging.getLogger(__name__)

_READ_BYTES: Final = 64 * 1024
_CLOSE_TIMEOUT_S: Final = 2.0
_LINGER_S: Final = 2.0


class MessageHandler(Protocol):
    """Turns one received payload (unframed) into its ACK payload (unframed).

    It answers bad input with a NAK rather than raising. If it raises anyway the
    gateway sends nothing for that message and closes the connection, so the
    sender resends it later.
    """

    async def __call__(self, payload: bytes) -> bytes: ...


class GatewayObserver(Protocol):
    """What the gateway reports (Prometheus in ``producers.mllp.metrics``).

    Every accepted TCP connection gets one ``connection_opened`` and one
    ``connection_closed`` (reasons: eof, reset, idle-timeout, slow-frame, oversized,
    tls-error, too-many, too-many-from-peer, handler-error, shutdown).
    """

    def connection_opened(self) -> None: ...
    def connection_closed(self, reason: str) -> None: ...
    def frame_received(self, size: int) -> None: ...
    def ack_sent(self, code: str, seconds: float) -> None: ...
    def frame_rejected(self, reason: str) -> None: ...


class NullObserver:
    """Reports nowhere (the default)."""

    def connection_opened(self) -> None: ...
    def connection_closed(self, reason: str) -> None: ...
    def frame_received(self, size: int) -> None: ...
    def ack_sent(self, code: str, seconds: float) -> None: ...
    def frame_rejected(self, reason: str) -> None: ...


def ack_code_of(ack: bytes) -> str:
    """MSA-1 of an ACK payload, for the metrics ("unknown" when absent)."""
    msa = read_msa(ack)
    return (msa[0] if msa else "") or "unknown"


class _Closed(Exception):
    """Ends a connection; ``reason`` is the outcome reported to the observer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Connection:
    host: str  # the peer's address, what the per-peer limit counts
    peer: str  # host:port, for the logs
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    handler: Handler  # the gateway's, bound to the client certificate (producers.mllp.peers)
    busy: bool = False  # a message is being handled or acknowledged


class MllpGateway:
    """The asyncio MLLP server: one task per connection, one message at a time each."""

    def __init__(
        self,
        config: GatewayConfig,
        handler: MessageHandler,
        observer: GatewayObserver | None = None,
    ) -> None:
        self.config = config
        self.handler = handler
        self.observer: GatewayObserver = observer or NullObserver()
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._inflight: set[asyncio.Task[bytes]] = set()
        self._peers = PeerSlots(config.max_connections_per_peer)
        self._stopping = False
        self._stopped = asyncio.Event()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        if self._server is not None:
            raise RuntimeError("the gateway is already started")
        c = self.config  # reuse_port: SO_REUSEPORT, several gateways on one port
        self._server = await asyncio.start_server(
            self._on_connect, c.host, c.port, limit=_READ_BYTES, reuse_port=c.reuse_port
        )
        port = int(self._server.sockets[0].getsockname()[1])
        log.info("MLLP listening on %s:%d, tls %s", self.config.host, port, bool(self.config.tls))
        return port

    async def serve_forever(self) -> None:
        """Start if needed and run until :meth:`stop` (or until cancelled, which stops)."""
        if self._server is None:
            await self.start()
        try:
            await self._stopped.wait()
        finally:
            if not self._stopped.is_set():
                await self.stop()

    async def stop(self) -> None:
        """Stop accepting; let handlers in progress finish (bounded), close every connection."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task, connection in list(self._connections.items()):
            if not connection.busy:
                task.cancel()  # waiting for bytes: nothing in progress to lose
        await self._wait_for_tasks()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await self._server.wait_closed()
        self._stopped.set()
        log.info("MLLP gateway stopped")

    async def _wait_for_tasks(self) -> None:
        """Wait for connections and handlers up to the grace period, then cancel the rest."""
        pending: set[asyncio.Task[Any]] = set(self._connections) | set(self._inflight)
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=self.config.shutdown_grace_s)
        if not late:
            return
        log.warning(
            "MLLP shutdown: cancelling %d tasks still running after the grace period", len(late)
        )
        for task in late:
            task.cancel()
        await asyncio.wait(late, timeout=_CLOSE_TIMEOUT_S)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = _Connection(*_peer_of(writer), reader, writer, self.handler)
        self.observer.connection_opened()
        refusal = self._refusal(connection)
        if refusal is not None:
            log.warning("MLLP connection from %s refused: %s", connection.peer, refusal)
            await self._close(connection, refusal)
            return
        self._connections[task] = connection
        reason = "eof"
        try:
            await self._start_tls(connection)
            connection.handler = bind_peer(self.config.binding, self.handler, writer, self.observer)
            await self._serve(connection)
        except _Closed as closed:
            reason = closed.reason
        except asyncio.CancelledError:
            reason = "shutdown"
        except (ConnectionError, OSError):
            reason = "reset"
        finally:
            try:
                await self._close(connection, reason)
            finally:  # tracked until closed, so that stop() waits for the TLS close too
                del self._connections[task]
                self._peers.release(connection.host)

    def _refusal(self, connection: _Connection) -> str | None:
        """Why a new connection is closed at once, or None (it then holds a peer slot)."""
        if self._stopping:
            return "shutdown"
        if len(self._connections) >= self.config.max_connections:
            return "too-many"
        if not self._peers.acquire(connection.host):
            return "too-many-from-peer"
        return None

    async def _start_tls(self, connection: _Connection) -> None:
        if self.config.tls is None:
            return
        try:
            await connection.writer.start_tls(
                self.config.tls, ssl_handshake_timeout=self.config.idle_timeout_s
            )
        except (ssl.SSLError, OSError, TimeoutError, EOFError) as exc:
            log.warning(
                "MLLP TLS handshake with %s failed: %s", connection.peer, type(exc).__name__
            )
            raise _Closed("tls-error") from None

    async def _serve(self, connection: _Connection) -> None:
        decoder = MllpDecoder(self.config.max_frame_bytes)
        loop = asyncio.get_running_loop()
        config = self.config
        clock = FrameClock.start(loop.time(), config.idle_timeout_s, config.frame_timeout_s)
        while not self._stopping:
            data = await self._read(connection, decoder, clock)
            junk_before = decoder.junk_bytes
            try:
                frames = decoder.feed(data)
            except FrameTooLarge as too_large:
                await self._handle_all(connection, too_large.frames)
                await self._reject_oversized(connection, too_large)
            junk = decoder.junk_bytes - junk_before
            if junk:
                self.observer.frame_rejected("junk")
            await self._handle_all(connection, frames)
            clock.after_read(
                loop.time(),
                message_bytes=junk < len(data) or decoder.in_frame,
                completed=bool(frames),
                in_frame=decoder.in_frame,
                received=len(data),
            )
        raise _Closed("shutdown")

    async def _read(
        self, connection: _Connection, decoder: MllpDecoder, clock: FrameClock
    ) -> bytes:
        """The next bytes; raises ``_Closed`` on EOF, idle timeout or frame deadline."""
        wait, reason = clock.next_wait(asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout(wait):
                data = await connection.reader.read(_READ_BYTES)
        except TimeoutError:
            self._note_truncated(decoder, reason)
            log.info("MLLP connection from %s: %s, closing", connection.peer, reason)
            raise _Closed(reason) from None
        except ssl.SSLError:
            raise _Closed("tls-error") from None
        if not data:
            self._note_truncated(decoder, "eof")
            raise _Closed("eof")
        return data

    def _note_truncated(self, decoder: MllpDecoder, reason: str) -> None:
        if decoder.in_frame:
            self.observer.frame_rejected("slow-frame" if reason == "slow-frame" else "truncated")

    async def _handle_all(self, connection: _Connection, frames: list[bytes]) -> None:
        for payload in frames:
            if self._stopping:
                raise _Closed("shutdown")  # not handed over: no ACK, the sender resends
            await self._handle(connection, payload)

    async def _handle(self, connection: _Connection, payload: bytes) -> None:
        """Hand one message over and write its ACK; the handler is shielded from cancellation."""
        received = time.perf_counter()
        self.observer.frame_received(len(payload))
        if log.isEnabledFor(logging.DEBUG):  # SHA-256 of 5 MB: 10 ms of the event loop
            digest = message_digest(payload)[:12]
            log.debug("MLLP message %s from %s: %d bytes", digest, connection.peer, len(payload))
        connection.busy = True
        try:
            ack = await self._run_handler(connection, payload)
            await self._write(connection, ack)
        finally:
            connection.busy = False
        self.observer.ack_sent(ack_code_of(ack), time.perf_counter() - received)

    async def _run_handler(self, connection: _Connection, payload: bytes) -> bytes:
        task = asyncio.create_task(connection.handler(payload))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        try:
            return await asyncio.shield(task)
        except Exception as exc:  # CancelledError is not an Exception: it propagates
            digest, name = message_digest(payload)[:12], type(exc).__name__
            log.error("MLLP handler failed on %s from %s: %s", digest, connection.peer, name)
            raise _Closed("handler-error") from None

    async def _reject_oversized(self, connection: _Connection, error: FrameTooLarge) -> NoReturn:
        started = time.perf_counter()
        self.observer.frame_rejected("oversized")
        log.warning("MLLP frame from %s over %d bytes: AE, closing", connection.peer, error.limit)
        with contextlib.suppress(_Closed, ConnectionError, OSError):
            await self._write(connection, oversized_nak(error.prefix, error.limit))
            self.observer.ack_sent("AE", time.perf_counter() - started)
            await self._linger(connection)
        raise _Closed("oversized")

    async def _linger(self, connection: _Connection) -> None:
        """Half-close, then briefly discard what the peer is still sending.

        Closing a socket with unread input makes the kernel answer with a reset,
        which can destroy the NAK before the sender has read it; the sender is
        most likely still writing the rest of its oversized message.
        """
        if connection.writer.can_write_eof():
            connection.writer.write_eof()
        discarded = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_LINGER_S):
                while discarded <= self.config.max_frame_bytes:
                    chunk = await connection.reader.read(_READ_BYTES)
                    if not chunk:
                        return
                    discarded += len(chunk)

    async def _write(self, connection: _Connection, ack: bytes) -> None:
        """Write one framed ACK; a peer that is gone or does not read closes the connection."""
        try:
            framed = frame(ack)
        except ValueError:
            log.error("MLLP handler returned an ACK that cannot be framed; closing")
            raise _Closed("handler-error") from None
        if connection.writer.is_closing():
            raise _Closed("reset")
        try:
            connection.writer.write(framed)
            async with asyncio.timeout(self.config.idle_timeout_s):
                await connection.writer.drain()
        except TimeoutError:
            raise _Closed("idle-timeout") from None
        except (ConnectionError, OSError):
            raise _Closed("reset") from None

    async def _close(self, connection: _Connection, reason: str) -> None:
        """Close, waiting briefly; not after a failed handshake (the stream never hears of it).

        Cancellation is absorbed: a connection task ending cancelled makes asyncio log an error.
        """
        connection.writer.close()
        self.observer.connection_closed(reason)
        if reason != "tls-error":
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await connection.writer.wait_closed()
        log.debug("MLLP connection from %s closed: %s", connection.peer, reason)


def _peer_of(writer: asyncio.StreamWriter) -> tuple[str, str]:
    """(host, host:port) of the peer."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), f"{peer[0]}:{peer[1]}"
    return str(peer), str(peer)
