"""``relais mllp``: HL7 v2 over MLLP into the producer library, one long-running process.

:func:`run_gateway` wires what the transport (:mod:`producers.mllp`) must not know:
a :class:`~producers.publisher.Publisher` on the bus, the :class:`~producers.ingest.Ingest`
handler over it (AA once the broker has the event, AE/AR otherwise), the Prometheus
observers; then runs :func:`producers.mllp.service.serve_gateway` the one way every
Relais process runs (:func:`relais.process.run_process`).
"""

from __future__ import annotations

from producers.ingest import Ingest
from producers.mllp.gateway import GatewayConfig
from producers.mllp.metrics import PrometheusGatewayObserver, PrometheusIngestObserver
from producers.mllp.service import gateway_config, serve_gateway
from producers.publisher import Publisher
from relais.health import broker_reachable
from relais.keyring import Keyring
from relais.process import Process, announce, run_process
from relais.settings import Settings


def run_gateway(settings: Settings, keyring: Keyring) -> None:
    """Receive HL7 v2 on ``settings.mllp`` until SIGINT/SIGTERM, then say it stopped.

    The TLS material is loaded first: a missing file is a :class:`SettingsError`
    before anything listens.
    """
    config = gateway_config(settings.mllp)

    async def main(process: Process) -> None:
        await _ingest(process, config, keyring)

    checks = {"broker": broker_reachable(settings.kafka.bootstrap)}
    run_process(settings, main, what=None, checks=checks)


async def _ingest(process: Process, config: GatewayConfig, keyring: Keyring) -> None:
    kafka, sector = process.settings.kafka, process.settings.mllp.sector
    async with Publisher(
        bootstrap=kafka.bootstrap, keyring=keyring, topic_prefix=kafka.prefix
    ) as publisher:
        handler = Ingest(publisher, sector=sector, observer=PrometheusIngestObserver())
        await serve_gateway(process, config, handler, PrometheusGatewayObserver())
    announce("MLLP gateway stopped")
