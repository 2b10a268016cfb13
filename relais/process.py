"""The one way a long-running Relais process starts, serves and stops.

:func:`run_process` takes the :class:`~relais.settings.Settings` built at the entry
point and a component's async main, then:

1. configures logging (RELAIS_LOG_LEVEL; :func:`configure_logging`);
2. registers the component's readiness checks on :data:`relais.health.READINESS`;
3. serves ``/metrics``, ``/healthz`` and ``/readyz`` on RELAIS_METRICS_HOST:RELAIS_METRICS_PORT
   and prints ``<what>: metrics on http://host:port/metrics`` for the operator;
4. runs ``main(process)`` in a fresh event loop, ``process.stop`` being set by SIGINT or
   SIGTERM (:func:`relais.signals.stop_on_signals`); main returns once it has stopped.

A component that can only say what it serves once it has started (the MLLP gateway
prints its bound port) passes ``what=None`` and calls :meth:`Process.serve` itself
with the line to print. The Faust worker keeps Faust's own runner and calls
:func:`serve_and_announce` before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from relais.health import READINESS, Check, serve_health_and_metrics
from relais.settings import ProcessSettings, Settings
from relais.signals import stop_on_signals

#: RELAIS_LOG_LEVEL words that are not :mod:`logging` level names as such
_LEVEL_NAMES = {"WARN": "WARNING", "CRIT": "CRITICAL"}


#: libraries whose debug (and info) lines carry what they carry: the canonicalised VIHF
#: (signxml: the patient's INS), the SMTP and IMAP conversations (mails: documents,
#: mailbox addresses), the records Faust and aiokafka send (sealed, but with their keys).
#: They log at WARNING at most, whatever RELAIS_LOG_LEVEL says; Relais's own modules log
#: event ids only, at every level.
QUIET_LIBRARIES: tuple[str, ...] = (
    "signxml",
    "aiosmtplib",
    "aiosmtpd",
    "mail.log",
    "aioimaplib",
    "faust",
    "mode",
    "aiokafka",
    "aiohttp",
)


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` (``info``, ``warn``...); the first call wins."""
    name = _LEVEL_NAMES.get(level.upper(), level.upper())
    logging.basicConfig(level=name, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries(level)


def quiet_libraries(level: str) -> None:
    """:data:`QUIET_LIBRARIES` log at WARNING, or above when ``level`` is above it."""
    named = logging.getLevelName(_LEVEL_NAMES.get(level.upper(), level.upper()))
    cap = max(named if isinstance(named, int) else logging.WARNING, logging.WARNING)
    for library in QUIET_LIBRARIES:
        logging.getLogger(library).setLevel(cap)


def serve_metrics(process: ProcessSettings) -> str:
    """Serve /metrics, /healthz and /readyz; return the /metrics URL (with the bound port)."""
    port = serve_health_and_metrics(process.metrics_host, process.metrics_port)
    return f"http://{process.metrics_host}:{port}/metrics"


def announce(line: str) -> None:
    """One line for the operator on stdout (scripts and the local stack read it)."""
    print(line, flush=True)


def serve_and_announce(process: ProcessSettings, what: str) -> None:
    """Serve /metrics, /healthz, /readyz and print ``<what>: metrics on <url>``."""
    announce(f"{what}: metrics on {serve_metrics(process)}")


@dataclass(frozen=True)
class Process:
    """What a component's main receives: its settings and the event that says stop."""

    settings: Settings
    stop: asyncio.Event

    def serve(self, line: Callable[[str], str]) -> None:
        """Serve /metrics now and print ``line(metrics_url)`` (for ``what=None`` runs)."""
        announce(line(serve_metrics(self.settings.process)))


Main = Callable[[Process], Awaitable[None]]


def run_process(
    settings: Settings,
    main: Main,
    *,
    what: str | None,
    checks: Mapping[str, Check] | None = None,
) -> None:
    """Run ``main`` until it returns (SIGINT/SIGTERM set ``process.stop``); see the module."""
    configure_logging(settings.process.log_level)
    for name, check in (checks or {}).items():
        READINESS.register(name, check)
    if what is not None:
        serve_and_announce(settings.process, what)
    asyncio.run(_until_stopped(settings, main))


async def _until_stopped(settings: Settings, main: Main) -> None:
    await main(Process(settings, stop_on_signals()))
