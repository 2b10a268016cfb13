"""Watch an IMAP mailbox folder and hand each mail to a handler, exactly once in effect.

aioimaplib over IMAPS (it has no STARTTLS), verifying the server against the
configured CA and presenting the client certificate. The loop:

1. connect, log in, create the ``processed`` and ``quarantine`` folders, select the
   watched folder;
2. take every mail still in it (oldest first), read it with ``BODY.PEEK[]`` (the
   \\Seen flag is left alone), call the handler, then ``UID MOVE`` it to the
   processed or quarantine folder as the handler says; a ``RETRY`` leaves it in
   place and the round ends;
3. wait for news with IDLE (re-issued every ``poll_s``), or poll every ``poll_s``
   when the server has no IDLE; then go to 2.

A mail leaves the watched folder only after the handler finished with it (its
documents are on the bus), so a crash at any point means it is read again on
restart and never skipped; the handler derives its event ids from the Message-ID,
so a replay after a crash republishes the same events, which downstream dedupes.
A lost connection or a refused login reconnects with exponential backoff; the
``relais_mss_imap_connected`` gauge shows the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aioimaplib import IMAP4_SSL, AioImapException

from mss_bridge.config import ImapConfig
from mss_bridge.metrics import IMAP_CONNECTED, IMAP_RECONNECTS
from relais.backoff import exponential_backoff
from relais.mail.errors import ImapError
from relais.mail.tls import client_context

log = logging.getLogger(__name__)


class Disposition(enum.Enum):
    PROCESSED = "processed"
    QUARANTINE = "quarantine"
    RETRY = "retry"


Handler = Callable[[bytes], Awaitable[Disposition]]


def imap_tls_context(config: ImapConfig) -> ssl.SSLContext:
    try:
        context = client_context(config.ca_file, config.client_cert, config.client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ImapError(
            f"TLS material cannot be loaded ({type(exc).__name__}); check RELAIS_MSS_CA_FILE, "
            "RELAIS_MSS_CLIENT_CERT and RELAIS_MSS_CLIENT_KEY",
            reason_code="imap-tls-config",
        ) from None
    return context


def _ok(response: Any, what: str) -> Any:
    if response.result != "OK":
        text = b" ".join(x for x in response.lines if isinstance(x, bytes))[:200]
        raise ImapError(f"IMAP {what} answered {response.result}: {text.decode(errors='replace')}")
    return response


class MailboxWatcher:
    """One watched folder of one mailbox."""

    def __init__(self, config: ImapConfig, folder: str, handler: Handler) -> None:
        self.config, self.folder, self.handler = config, folder, handler
        self._context = imap_tls_context(config)
        self._gauge = IMAP_CONNECTED.labels(folder)
        self._gauge.set(0)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop``; reconnect with backoff on any connection failure."""
        delays = exponential_backoff(0.5, 30.0)
        while not stop.is_set():
            client: IMAP4_SSL | None = None
            try:
                client = await self._connect()
                self._gauge.set(1)
                delays = exponential_backoff(0.5, 30.0)
                await self._watch(client, stop)
            except (ImapError, AioImapException, OSError, TimeoutError, ssl.SSLError) as exc:
                self._gauge.set(0)
                IMAP_RECONNECTS.labels(self.folder).inc()
                log.warning("IMAP %s: %s; reconnecting", self.folder, _describe(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), next(delays))
            finally:
                self._gauge.set(0)
                if client is not None:
                    await _logout(client)

    async def _connect(self) -> IMAP4_SSL:
        c = self.config
        client = IMAP4_SSL(c.host, c.port, ssl_context=self._context, timeout=c.timeout_s)
        await client.wait_hello_from_server()
        if client.protocol is None or client.get_state() not in {"NONAUTH", "AUTH"}:
            raise ImapError(f"IMAP server {c.host}:{c.port} did not greet (TLS or network)")
        _ok(await client.login(c.user, c.password), "LOGIN")
        for folder in (c.processed_folder, c.quarantine_folder):
            await client.create(folder)  # NO [ALREADYEXISTS] is fine
        _ok(await client.select(self.folder), f"SELECT {self.folder}")
        return client

    async def _watch(self, client: IMAP4_SSL, stop: asyncio.Event) -> None:
        idle = client.has_capability("IDLE")
        while not stop.is_set():
            await self._drain(client, stop)
            if stop.is_set():
                return
            if idle:
                await self._idle(client)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_s)
                _ok(await client.noop(), "NOOP")

    async def _drain(self, client: IMAP4_SSL, stop: asyncio.Event) -> None:
        found = _ok(await client.uid_search("ALL"), "UID SEARCH")
        line = found.lines[0] if found.lines else b""
        uids = sorted(int(u) for u in bytes(line).split() if u.isdigit())
        for uid in uids:
            if stop.is_set():
                return
            response = _ok(await client.uid("fetch", str(uid), "(BODY.PEEK[])"), "UID FETCH")
            raw = next((bytes(x) for x in response.lines if isinstance(x, bytearray)), None)
            if raw is None:
                continue  # expunged meanwhile
            disposition = await self.handler(raw)
            if disposition is Disposition.RETRY:
                return
            target = (
                self.config.processed_folder
                if disposition is Disposition.PROCESSED
                else self.config.quarantine_folder
            )
            await self._move(client, uid, target)

    async def _move(self, client: IMAP4_SSL, uid: int, target: str) -> None:
        if client.has_capability("MOVE"):
            _ok(await client.uid("move", str(uid), target), "UID MOVE")
            return
        _ok(await client.uid("copy", str(uid), target), "UID COPY")
        _ok(await client.uid("store", str(uid), "+FLAGS.SILENT (\\Deleted)"), "UID STORE")
        _ok(await client.uid("expunge", str(uid)), "UID EXPUNGE")

    async def _idle(self, client: IMAP4_SSL) -> None:
        waiting = await client.idle_start(timeout=self.config.idle_s)
        try:
            with contextlib.suppress(TimeoutError):
                await client.wait_server_push(timeout=self.config.poll_s)
        finally:
            if client.has_pending_idle():
                client.idle_done()
            await asyncio.wait_for(waiting, self.config.timeout_s)


async def _logout(client: IMAP4_SSL) -> None:
    with contextlib.suppress(Exception):  # the connection may already be gone
        await asyncio.wait_for(client.logout(), 5)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ImapError):
        return exc.reason
    return type(exc).__name__
