"""The long-running mss_bridge processes, wired from :class:`Settings` (async shells).

Each is a main for :func:`relais.process.run_process`: it runs until ``stop`` is set
(SIGINT/SIGTERM), then closes what it opened.
"""

from __future__ import annotations

import asyncio
import socket

from domain.mssante_address import parse_address
from mss_bridge.config import compose_config, imap_config
from mss_bridge.imap_watcher import MailboxWatcher
from mss_bridge.inbound_worker import MailboxWorker
from mss_bridge.lps_delivery import LpsDelivery
from mss_bridge.outbound import MssSendWorker
from mss_bridge.replies import InboundSetup
from producers.mllp.ack_routes import routes_from
from relais import __version__, kafka_clients
from relais.document_store.open import open_store
from relais.keyring import Keyring
from relais.mail.config import smtp_config
from relais.mail.smtp import SmtpSender
from relais.settings import Settings


async def run_send_worker(settings: Settings, keyring: Keyring, stop: asyncio.Event) -> None:
    """Mail MSSanté delivery requests until ``stop``."""
    sender = SmtpSender(smtp_config(settings))
    worker = MssSendWorker(
        bootstrap=settings.kafka.connection,
        prefix=settings.kafka.prefix,
        keyring=keyring,
        sender=sender,
        compose_config=compose_config(settings),
        session_timeout_s=settings.kafka.session_timeout_s,
        store=open_store(settings),
        concurrency=settings.kafka.sink_concurrency,
    )
    try:
        await worker.run(stop)
    finally:
        await sender.close()


async def run_watch(settings: Settings, keyring: Keyring, stop: asyncio.Event) -> None:
    """Watch RELAIS_MSS_MAILBOXES of Relais's mailbox until ``stop``."""
    config = imap_config(settings)
    producer = kafka_clients.producer(settings.kafka.connection, max_request_size=16 << 20)
    sender = SmtpSender(smtp_config(settings))
    await producer.start()
    try:
        worker = MailboxWorker(
            producer=producer,
            prefix=settings.kafka.prefix,
            keyring=keyring,
            sender=sender,
            setup=inbound_setup(settings),
        )
        watchers = [MailboxWatcher(config, folder, worker) for folder in config.folders]
        await asyncio.gather(*(w.run(stop) for w in watchers))
    finally:
        await sender.close()
        await producer.stop()


def inbound_setup(settings: Settings) -> InboundSetup:
    """Relais's mailbox (From of its MDNs) and the MDNs' Reporting-UA."""
    return InboundSetup(
        mailbox=parse_address(settings.mss.sender, ()),
        reporting_ua=f"{socket.gethostname()}; Relais {__version__}",
    )


async def run_lps_delivery(
    settings: Settings, keyring: Keyring, stop: asyncio.Event, *, timeout_s: float = 10.0
) -> None:
    """Deliver documents received by mail to the DPIs (RELAIS_ACK_ROUTES) until ``stop``."""
    sender = SmtpSender(smtp_config(settings))
    delivery = LpsDelivery(
        bootstrap=settings.kafka.connection,
        prefix=settings.kafka.prefix,
        keyring=keyring,
        routes=routes_from(settings.acks),
        sender=sender,
        setup=inbound_setup(settings),
        timeout_s=timeout_s,
        session_timeout_s=settings.kafka.session_timeout_s,
    )
    try:
        await delivery.run(stop)
    finally:
        await sender.close()
