"""The Faust shell around the stage cores: one agent per stage, one worker process.

``relais worker identity transcode route`` runs the named stages as agents of
one Faust app (``relais worker identity`` alone runs one per process). Each
agent is the one stage loop (:mod:`streams.stage_loop`): it reads its input
topic(s), runs the step, sends what it returns and waits for the broker's
acks; Faust commits the offset only after the step, so processing is at least
once. The web server stays off and bound to 127.0.0.1.

An agent that raises (its step turns bad records into dead letters, so what
escapes is the bus failing under it: a send that was not acknowledged) crashes
the worker instead of being restarted in place by Faust's default supervisor:
a restarted agent would go on with the next records while the one it failed
on stays unacknowledged, holding the partition's committed offset back. The
process exits, its supervisor (compose, systemd, ``relais load --chaos``)
starts it again, and it resumes from the committed offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import faust

from domain.cda_validate import CdaSchema
from relais import fetch_wait, kafka_faust, tansu_quirks
from relais.document_store.open import open_store
from relais.health import READINESS, broker_reachable
from relais.keyring import Keyring
from relais.metrics import ASSIGNED_PARTITIONS
from relais.settings import Settings
from streams.identity.circuit_breaker import CircuitBreaker
from streams.identity.insi import consistency_problems, insi_verifier
from streams.identity.insi_client import HttpInsiClient
from streams.identity.insi_metrics import PrometheusInsiObserver
from streams.identity.shell import register_identity
from streams.route import stage as route
from streams.route.release_policy import DEFAULT_POLICY, Rule, load_policy
from streams.stage import Stage
from streams.stage_loop import register_stage
from streams.transcode import stage as transcode
from streams.transcode.lab_catalogue import CatalogueStore, load_directory
from streams.transcode.lab_codes import LoincTable, UcumUnits
from streams.transcode.lab_report import LabReferences

#: The stages a worker runs, all on the one stage loop; identity adds its own shell
#: (two input topics, patient state, INSi): see streams.identity.shell.
STAGE_NAMES = ("identity", "transcode", "route")
MAX_BYTES = 16 << 20

log = logging.getLogger(__name__)


def build_app(settings: Settings, stage_names: Sequence[str], keyring: Keyring) -> faust.App:
    """A Faust app running the given stages against ``settings.kafka.bootstrap``."""
    unknown = [n for n in stage_names if n not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known: {', '.join(STAGE_NAMES)}")
    # The app id is the consumer group: name it after the stages, in a fixed order. Run a
    # stage always in the same grouping, or a new group re-reads its topics from the start.
    app = faust.App(
        f"{settings.kafka.prefix}-{'-'.join(n for n in STAGE_NAMES if n in stage_names)}",
        broker=f"kafka://{settings.kafka.bootstrap}",
        broker_credentials=kafka_faust.broker_credentials(settings.kafka.connection),
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        web_bind="127.0.0.1",
        web_port=6066,
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_heartbeat_interval=1.0,
        producer_max_request_size=MAX_BYTES,
        producer_acks=-1,  # acks=all: an output is on the bus before the input is committed
        consumer_max_fetch_size=MAX_BYTES,
        topic_allow_declare=True,  # Faust creates its table changelogs; ours exist already
        topic_partitions=settings.kafka.partitions,  # RELAIS_PARTITIONS: tables follow it
        topic_replication_factor=settings.kafka.replication_factor,  # changelogs; ISR: broker
        topic_disable_leader=True,
        datadir=str(settings.process.data_dir / "faust"),
        store=settings.kafka.table_store,  # rocksdb:// in production (pip install relais[rocksdb])
    )
    fetch_wait.install_faust()  # Faust's own 1,500 ms is up to 750 ms a stage on tansu
    if settings.kafka.connection.idempotent:  # Apache Kafka; tansu refuses InitProducerId
        kafka_faust.install_idempotence()
    if settings.kafka.broker_kind == "tansu":
        tansu_quirks.install(settings.kafka.connection)
    READINESS.register("broker", broker_reachable(settings.kafka.connection))
    _report_assignment(app)
    for name in stage_names:
        _register(app, name, settings, keyring)
    return app


def _register(app: faust.App, name: str, settings: Settings, keyring: Keyring) -> None:
    if name == "identity":
        _register_identity(app, settings, keyring)
        return
    # only transcode reads and writes bodies: identity and route never see the store
    store = open_store(settings) if name == "transcode" else None
    stage = _pure_stage(name, settings)
    register_stage(app, stage, keyring=keyring, prefix=settings.kafka.prefix, store=store)


def _report_assignment(app: faust.App) -> None:
    """``relais_consumer_assigned_partitions``: 0 from a revocation until the worker's tables
    are recovered and its partitions flow again (then how many it holds)."""
    group = app.conf.id

    def revoked(sender: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        ASSIGNED_PARTITIONS.labels(group).set(0)

    def ready(sender: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        ASSIGNED_PARTITIONS.labels(group).set(len(app.consumer.assignment()))

    app.on_partitions_revoked.connect(revoked)
    app.on_rebalance_complete.connect(ready)


def _pure_stage(name: str, settings: Settings) -> Stage:
    """The transcode or route stage, with the reference data ``settings`` name."""
    if name == "transcode":
        return transcode.transcode_stage(_cda_schema(settings), _lab_references(settings))
    return route.route_stage(_release_policy(settings))


def _lab_references(settings: Settings) -> LabReferences | None:
    """Catalogues, LOINC-FR table and UCUM list for lab reports, loaded once per worker."""
    if settings.stages.loinc_table is None or settings.stages.ucum_units is None:
        log.warning("RELAIS_LOINC_TABLE / RELAIS_UCUM_UNITS not set: lab reports are refused")
        return None
    folder = settings.stages.catalogue_dir
    catalogues = load_directory(folder) if folder else CatalogueStore()
    return LabReferences(
        catalogues=catalogues,
        loinc=LoincTable.from_csv(settings.stages.loinc_table.read_text(encoding="utf-8")),
        ucum=UcumUnits.from_xml(settings.stages.ucum_units.read_bytes()),
    )


def _release_policy(settings: Settings) -> tuple[Rule, ...]:
    """The operators' policy file (RELAIS_RELEASE_POLICY), else the bundled one."""
    if settings.stages.release_policy is not None:
        return load_policy(settings.stages.release_policy.read_text(encoding="utf-8"))
    return DEFAULT_POLICY


def _cda_schema(settings: Settings) -> CdaSchema | None:
    """The CDA R2 schema, loaded once per worker; without it, header rules only."""
    if settings.stages.cda_xsd_dir is None:
        log.warning("RELAIS_CDA_XSD_DIR is not set: CDAs get the CI-SIS header checks only")
        return None
    return CdaSchema.load(settings.stages.cda_xsd_dir)


def _register_identity(app: faust.App, settings: Settings, keyring: Keyring) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10.0)
    observer = PrometheusInsiObserver()
    client = HttpInsiClient.from_settings(settings, breaker=breaker, observer=observer)
    register_identity(
        app,
        prefix=settings.kafka.prefix,
        keyring=keyring,
        verify=insi_verifier(client, observer=observer),
        consistency=consistency_problems,
        insi_ready=lambda: breaker.ready(time.monotonic()),
        hold_expiry_s=settings.identity.hold_expiry_s,
    )
    READINESS.register(
        "insi",
        lambda: (
            (True, "INSi answering (circuit closed)")
            if breaker.ready(time.monotonic())
            else (False, "INSi failing: circuit open, documents held until it answers")
        ),
    )


def run_worker(settings: Settings, stage_names: Sequence[str], keyring: Keyring) -> None:
    """Run the stages until SIGINT/SIGTERM (Faust installs the signal handlers)."""
    (settings.process.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    faust_worker(build_app(settings, stage_names, keyring), settings).execute_from_commandline()


def faust_worker(app: faust.App, settings: Settings) -> faust.Worker:
    """The Faust worker of ``app``, logging at RELAIS_LOG_LEVEL and nothing below."""
    worker = faust.Worker(app, loglevel=settings.process.log_level, quiet=True)
    # Faust's progress spinner sets the root logger to DEBUG so that it spins on every
    # record, even at RELAIS_LOG_LEVEL=warn: every debug call of Faust and aiokafka then
    # builds its record (5 % of a stage's CPU, with the bytes of what it sends in the
    # message). A worker is a service, not a terminal: no spinner.
    worker.spinner = None
    return worker
