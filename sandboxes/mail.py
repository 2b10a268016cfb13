"""The MSSanté operator sandbox: an SMTP server (STARTTLS, client certificate required)
that keeps every mail it accepts, by recipient mailbox.

It stands in for an MSSanté operator's submission server in the demo and in tests
that do not need IMAP: it only accepts mail over TLS from a client whose
certificate the test CA signed (like the operators, which accept only IGC-Santé
certificates), for recipient domains under ``mssante.fr``, and stores each mail
(also as ``.eml`` files under ``store_dir`` when given). aiosmtpd serves it on
its own thread; :meth:`mailboxes` is safe to read from any thread.
"""

from __future__ import annotations

import email
import hashlib
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from sandboxes.pki import SandboxPki

DOMAIN_SUFFIX = "mssante.fr"
# aiosmtpd narrates every command, and warns that a required client certificate "might cause
# client connection problems": that is the point here
logging.getLogger("mail.log").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Received:
    sender: str
    recipient: str
    message: EmailMessage


class _Handler:
    def __init__(self, store_dir: Path | None) -> None:
        self.store_dir = store_dir
        self.mails: dict[str, list[Received]] = defaultdict(list)
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain != DOMAIN_SUFFIX and not domain.endswith("." + DOMAIN_SUFFIX):
            return "550 5.7.1 relaying denied: only MSSanté domains are served here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.content)
        parsed = email.message_from_bytes(raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.mails[recipient.lower()].append(
                    Received(envelope.mail_from, recipient, parsed)
                )
                if self.store_dir is not None:
                    folder = (
                        self.store_dir / hashlib.sha256(recipient.lower().encode()).hexdigest()[:16]
                    )
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / f"{len(self.mails[recipient.lower()]):04d}.eml").write_bytes(raw)
        return "250 2.0.0 Ok: queued"


class MailSandbox:
    """Start with :meth:`start`, stop with :meth:`stop`; read with :meth:`mailboxes`."""

    def __init__(self, pki: SandboxPki, port: int, *, store_dir: Path | None = None) -> None:
        self.handler = _Handler(store_dir)
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=port,
            tls_context=pki.server_context(),  # the operators accept certified clients only
            require_starttls=True,
            server_hostname="localhost",
        )

        self.port = port

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def mailboxes(self) -> dict[str, list[Received]]:
        with self.handler.lock:
            return {box: list(mails) for box, mails in self.handler.mails.items()}
