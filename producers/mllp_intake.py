"""``relais mllp``: HL7 v2 over MLLP into the producer library, one long-running process.

:func:`run_gateway` wires what the transport (:mod:`producers.mllp`) must not know:
a :class:`~producers.publisher.Publisher` on the bus, the :class:`~producers.ingest.Ingest`
handler over it (AA once the broker has the event, AE/AR otherwise), the Prometheus
observers; then runs :func:`producers.mllp.service.serve_gateway` the one way every
Relais process runs (:func:`relais.process.run_process`).

The CPU work of a message (parse, door checks: a 5 MB message costs up to a second) runs
in a pool of ``RELAIS_MLLP_WORKERS`` processes (default min(4, CPUs); 0: in the event
loop), so that one sender's large or hostile message never delays the ACKs of the others.
The pool is started and warmed up before the gateway listens, and shut down after it
stopped (the messages in progress finish first).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import ParamSpec, TypeVar

from producers.door.admit import DoorPolicy, cda_schema
from producers.door.known_documents import KnownDocuments
from producers.ingest import Ingest
from producers.mllp.gateway import GatewayConfig
from producers.mllp.metrics import PrometheusGatewayObserver, PrometheusIngestObserver
from producers.mllp.service import gateway_config, serve_gateway
from producers.publisher import Publisher
from relais.document_store.open import open_store
from relais.health import broker_reachable
from relais.keyring import Keyring
from relais.process import Process, announce, run_process
from relais.settings import Settings
from relais.topics import DOCUMENT_IDS

log = logging.getLogger(__name__)
_P = ParamSpec("_P")
_T = TypeVar("_T")

#: What each worker imports once, before its first message.
_WORKER_MODULES = ("producers.door.admit",)
_WARM_UP_PAUSE_S = 0.05
_WORKER_NICENESS = 5


def run_gateway(settings: Settings, keyring: Keyring) -> None:
    """Receive HL7 v2 on ``settings.mllp`` until SIGINT/SIGTERM, then say it stopped.

    The TLS material is loaded first: a missing file is a :class:`SettingsError`
    before anything listens.
    """
    config = gateway_config(settings.mllp)

    async def main(process: Process) -> None:
        await _ingest(process, config, keyring)

    checks = {"broker": broker_reachable(settings.kafka.connection)}
    run_process(settings, main, what=None, checks=checks)


async def _ingest(process: Process, config: GatewayConfig, keyring: Keyring) -> None:
    kafka, mllp = process.settings.kafka, process.settings.mllp
    policy = door_policy(process.settings)
    known = KnownDocuments(kafka.connection, DOCUMENT_IDS.name(kafka.prefix))
    with worker_pool(mllp.workers) as executor:
        if executor is not None:
            await warm_up(executor, mllp.workers, policy)
        await known.start()
        try:
            async with Publisher(
                bootstrap=kafka.connection,
                keyring=keyring,
                topic_prefix=kafka.prefix,
                policy=policy,
                known=known,
                store=open_store(process.settings),
            ) as publisher:
                handler = Ingest(
                    publisher,
                    sector=mllp.sector,
                    observer=PrometheusIngestObserver(),
                    policy=policy,
                    executor=executor,
                )
                await serve_gateway(process, config, handler, PrometheusGatewayObserver())
        finally:
            await known.stop()
    announce("MLLP gateway stopped")


def door_policy(settings: Settings) -> DoorPolicy:
    """What the door enforces, from the settings: the CDA schema, MSSanté domains, tests."""
    mllp = settings.mllp
    return DoorPolicy(
        cda_xsd_dir=settings.stages.cda_xsd_dir,
        mail_domains=settings.mss.domains,
        test_messages=mllp.test_messages,
        test_messages_by_sender=dict(mllp.test_messages_by_sender),
        refuse_unknown_parents=mllp.refuse_unknown_parents,
    )


class WorkerPool(Executor):
    """``workers`` processes that check messages; a new pool replaces a broken one.

    They are forked from a fresh forkserver, never from this process: the gateway has
    threads (metrics server, broker client) that a fork would copy mid-lock. A
    ``ProcessPoolExecutor`` refuses all work once one of its processes died (killed,
    out of memory): the message it was checking gets an AR (the sender resends it) and
    the next one starts a new pool, instead of every later message getting an AR.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(_WORKER_MODULES))
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_import_modules)

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            log.error("MLLP worker pool broken (a worker process died): starting a new one")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[WorkerPool | None]:
    """A :class:`WorkerPool` (None for 0 workers), shut down on exit once its work is done."""
    if workers == 0:
        yield None
        return
    executor = WorkerPool(workers)
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


async def warm_up(executor: Executor, workers: int, policy: DoorPolicy | None = None) -> None:
    """Start every worker, let it import its modules and compile the CDA schema of
    ``policy`` (the first message pays nothing)."""
    loop = asyncio.get_running_loop()
    xsd_dir = policy.cda_xsd_dir if policy else None
    calls = (loop.run_in_executor(executor, _prepare, xsd_dir) for _ in range(workers))
    await asyncio.gather(*calls)


def _prepare(xsd_dir: Path | None) -> None:
    cda_schema(xsd_dir)
    _pause()


def _import_modules() -> None:
    """Each worker's start: lower priority; import what it runs; send back read-only mappings.

    The event loop and the broker client (ACKs, bus writes) take the CPU before the
    workers do: a core busy checking a 5 MB message does not delay the ACK of another.
    """
    os.nice(_WORKER_NICENESS)
    for name in _WORKER_MODULES:
        importlib.import_module(name)


def _pause() -> None:
    """Keeps a worker busy briefly, so that each warm-up call starts a worker of its own."""
    time.sleep(_WARM_UP_PAUSE_S)
