"""The whole local stack in one place, for the demo and the integration tests.

:class:`LocalStack` starts the broker, creates the topics, starts the DMP
sandbox in this event loop and the workers as separate processes (the same
``relais worker`` / ``relais sink`` commands an operator runs), each with its
own /metrics port. :class:`Landing` reads the outcome topics to tell where
each document ended up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from ops.broker import LocalBroker
from ops.ports import free_port
from relais import kafka_clients
from relais.contracts import Codec, ContractError
from relais.kafka_clients import KafkaConnection, Target
from relais.keyring import Keyring
from relais.keyring_source import load_keyring
from relais.settings import Settings
from relais.topic_admin import ensure_topics
from relais.topics import AUDIT, DEADLETTER, DEFAULT_PARTITIONS, DELIVERY_STATUS, IDENTITY_PENDING
from sandboxes.dmp import DmpSandbox, client_environment, sandbox_pki, start_sandbox
from sandboxes.insi import SANDBOX_IDAM, InsiSandbox
from sandboxes.insi import start_sandbox as start_insi
from sandboxes.mail import MailSandbox
from sandboxes.pki import SandboxPki


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    metrics_port: int
    log_path: Path
    args: tuple[str, ...] = ()  # the `relais` arguments that started it


@dataclass
class LocalStack:
    """Broker + topics + DMP sandbox + worker processes under ``work_dir``."""

    work_dir: Path
    prefix: str = "relais"
    table_store: str = "memory://"
    #: tansu storage URL: memory://tansu/, or s3://BUCKET/ to survive a broker restart
    broker_storage: str = "memory://tansu/"
    partitions: int = DEFAULT_PARTITIONS  # of every topic and table (RELAIS_PARTITIONS)
    #: processes of the MSSanté sender and of the notify sink, with ``mail`` (outcomes: one,
    #: its hold reminders live in its memory: docs/outcomes.md)
    copies: int = 1
    cda_xsd_dir: Path | None = None  # the CDA R2 schema folder, when the caller has one
    catalogue_dir: Path | None = None  # laboratories' catalogues (lab reports)
    loinc_table: Path | None = None
    ucum_units: Path | None = None
    workers: tuple[tuple[str, ...], ...] = (
        ("worker", "identity"),
        ("worker", "transcode"),
        ("worker", "route"),
        ("sink", "dmp"),
    )
    settings: Settings = field(init=False)
    keyring: Keyring = field(init=False)
    broker: LocalBroker = field(init=False)
    sandbox: DmpSandbox = field(init=False)
    insi: InsiSandbox = field(init=False)
    processes: list[Process] = field(default_factory=list)
    #: RELAIS_DMP_* of the sink: the sandbox's URL, its test CA, the structure's test cert
    dmp_environment: dict[str, str] = field(default_factory=dict)
    #: more RELAIS_* for the processes (mail servers of the MSSanté and notify sinks...)
    extra_environment: dict[str, str] = field(default_factory=dict)
    #: where clients reach the broker when it is not its own address (a TLS proxy in front:
    #: the broker advertises it; RELAIS_KAFKA_* in ``extra_environment`` say how to reach it)
    broker_advertise: str | None = None
    #: also run the MSSanté operator sandbox, the MSSanté and notification sinks, and outcomes
    mail: bool = False
    mail_sandbox: MailSandbox | None = None
    _runner: web.AppRunner | None = None
    _insi_runner: web.AppRunner | None = None

    async def start(self, broker_listen: str | None = None) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        keyring_file = self.work_dir / "keyring.json"
        keyring_file.unlink(missing_ok=True)
        Keyring.generate().write(keyring_file)
        bus = await self._start_broker(broker_listen or f"127.0.0.1:{free_port()}")
        pki = sandbox_pki(self.work_dir / "dmp-pki")
        self._runner, self.sandbox, dmp_port = await start_sandbox(
            "127.0.0.1", 0, self.work_dir / "dmp-sandbox", pki=pki
        )
        self.dmp_environment = client_environment(pki, f"https://127.0.0.1:{dmp_port}/repository")
        if self.mail:
            self._start_mail(pki)
        self._insi_runner, self.insi, insi_port = await start_insi("127.0.0.1", 0, pki=pki)
        base = Settings.from_env({**self.dmp_environment, **self.extra_environment})
        self.settings = replace(
            base,
            kafka=replace(
                base.kafka,
                bootstrap=bus.bootstrap,
                prefix=self.prefix,
                partitions=self.partitions,
            ),
            keys=replace(base.keys, file=keyring_file),
            insi=replace(base.insi, url=f"https://127.0.0.1:{insi_port}/lps", idam=SANDBOX_IDAM),
            process=replace(base.process, data_dir=self.work_dir / "data"),
        )
        # as the processes load it: with RELAIS_PATIENT_KEYS (the default), the patient key
        # vault over the stack's document store, so that what the harness publishes is sealed
        # under patients' keys and what it reads back opens
        self.keyring = load_keyring(self.settings)
        for args in self.workers:
            self.spawn(*args)
        for _ in range(self.copies if self.mail else 0):
            self.spawn("mss", "send-worker")
            self.spawn("sink", "notify")
        if self.mail:
            self.spawn("sink", "outcomes")  # what became of each document, told to its sender

    async def _start_broker(self, listen: str) -> KafkaConnection:
        """The broker and its topics; how clients reach it (through a proxy, perhaps)."""
        self.broker = LocalBroker(
            listen,
            self.broker_storage,
            log_path=self.work_dir / "broker.log",
            advertise=self.broker_advertise,
        )
        security = Settings.from_env(self.extra_environment).kafka.security
        bus = KafkaConnection(self.broker_advertise or listen, security)
        await self.broker.start(via=bus)
        await ensure_topics(bus, self.prefix, partitions=self.partitions)
        return bus

    def _start_mail(self, pki: SandboxPki) -> None:
        """The MSSanté operator sandbox, and the RELAIS_MSS_* that reach it with the test PKI."""
        port = free_port()
        self.mail_sandbox = MailSandbox(pki, port, store_dir=self.work_dir / "mail-sandbox")
        self.mail_sandbox.start()
        self.extra_environment = {
            "RELAIS_MSS_SMTP": f"127.0.0.1:{port}",
            "RELAIS_MSS_SMTP_TLS": "starttls",
            "RELAIS_MSS_CA_FILE": str(pki.ca_cert),
            "RELAIS_MSS_CLIENT_CERT": str(pki.client_cert),
            "RELAIS_MSS_CLIENT_KEY": str(pki.client_key),
            "RELAIS_MSS_SENDER": "relais@relais-demo.mssante.fr",
            "RELAIS_MSS_READ_RECEIPT": "no",
            **self.extra_environment,
        }

    async def __aenter__(self) -> LocalStack:
        """Start everything and wait until every process serves /metrics."""
        try:
            await self.start()
            await self.wait_for_metrics()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def environment(self, metrics_port: int) -> dict[str, str]:
        s = self.settings
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
        return {
            **inherited,
            "RELAIS_BROKER_KIND": os.environ.get("RELAIS_BROKER_KIND", "tansu"),
            "RELAIS_BOOTSTRAP_SERVERS": s.kafka.bootstrap,
            "RELAIS_TOPIC_PREFIX": s.kafka.prefix,
            "RELAIS_PARTITIONS": str(s.kafka.partitions),
            "RELAIS_KEYRING_FILE": str(s.keys.file),
            **self.dmp_environment,
            "RELAIS_INSI_URL": s.insi.url,
            "RELAIS_INSI_IDAM": s.insi.idam,
            "RELAIS_INSI_TIMEOUT_S": "2",
            "RELAIS_TABLE_STORE": self.table_store,
            "RELAIS_CDA_XSD_DIR": str(self.cda_xsd_dir or ""),
            "RELAIS_CATALOGUE_DIR": str(self.catalogue_dir or ""),
            "RELAIS_LOINC_TABLE": str(self.loinc_table or ""),
            "RELAIS_UCUM_UNITS": str(self.ucum_units or ""),
            "RELAIS_DATA_DIR": str(s.process.data_dir),
            "RELAIS_METRICS_HOST": "127.0.0.1",
            "RELAIS_METRICS_PORT": str(metrics_port),
            "RELAIS_SESSION_TIMEOUT_S": str(s.kafka.session_timeout_s),
            "RELAIS_LOG_LEVEL": "warn",
            **self.extra_environment,
        }

    def spawn(self, *args: str) -> Process:
        port = free_port()
        name = (
            "-".join(args[1:])
            if args[0] == "worker"
            else "-".join(
                a for a in args if not a.startswith("-") and not a.replace(".", "").isdigit()
            )
        )
        log_path = self.work_dir / f"{name}.log"
        popen = subprocess.Popen(
            [sys.executable, "-m", "ops", *args],
            env=self.environment(port),
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        process = Process(name, popen, port, log_path, args)
        self.processes.append(process)
        return process

    async def restart(self, name: str, *, kill: bool = False) -> Process:
        """Stop one worker process (SIGTERM, or SIGKILL: a crash) and start it again."""
        new = await self.replace(self.process(name), kill=kill)
        await self.wait_for_metrics()
        return new

    async def replace(self, old: Process, *, kill: bool = False) -> Process:
        """Stop ``old`` (SIGTERM or SIGKILL; nothing if it exited) and spawn its successor."""
        old.popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)  # no-op once exited
        await asyncio.to_thread(old.popen.wait, 30)
        self.processes.remove(old)
        return self.spawn(*old.args)

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    async def wait_for_metrics(self, timeout_s: float = 60.0) -> None:
        """Wait until every process serves /metrics (it has started)."""
        deadline = time.monotonic() + timeout_s
        for p in self.processes:
            if await self.serving(p, deadline - time.monotonic()):
                continue
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited: see {p.log_path}")
            raise TimeoutError(f"{p.name} serves no /metrics after {timeout_s} s")

    async def serving(self, process: Process, timeout_s: float = 60.0) -> bool:
        """Wait until one process serves /metrics; False if it exited or timed out first."""
        deadline = time.monotonic() + timeout_s
        while not _port_open(process.metrics_port):
            if process.popen.poll() is not None or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def stop(self) -> None:
        for p in self.processes:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                await asyncio.to_thread(p.popen.wait, 20)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()
        for runner in (self._runner, self._insi_runner):
            if runner is not None:
                await runner.cleanup()
        if self.mail_sandbox is not None:
            self.mail_sandbox.stop()
        with contextlib.suppress(AttributeError):
            self.broker.stop()


def scrape(port: int) -> dict[str, float]:
    """Relais samples of a process's /metrics, keyed ``name{label="value",...}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("relais_"):
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Landing:
    """Where documents landed, read from the status, pending and dead-letter topics."""

    #: the DMP status of each event (the demo's and most tests' question)
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: every status, by (event id, destination): DMP, MSSANTE, NOTIFY
    statuses: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    #: outcome records per ("status", request id) and ("held", event id): doubles show here
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def doubled(self) -> list[tuple[str, str]]:
        """(kind, id) pairs with more than one delivery status (per request) or hold (per event).

        A status a sink reports again after a crash for a request its ledger marks
        done ("already done ...") is a report, not a second delivery: not counted.
        """
        return [k for k, n in self.counts.items() if n > 1 and k[0] in {"status", "held"}]

    def where(self, event_id: str) -> str:
        if event_id in self.delivered:
            status = self.delivered[event_id]
            return f"{status['destination']} ({status['outcome'].lower()})"
        if event_id in self.held:
            return f"held: {self.held[event_id]['reason_code']}"
        for letter in self.dead:
            if letter["event_id"] == event_id:
                return f"dead letter ({letter['stage']}: {letter['reason_code']})"
        return "in flight"


async def read_landing(
    bootstrap: Target,
    prefix: str,
    *,
    until: Any = None,
    timeout_s: float = 60.0,
    settle_s: float = 1.0,
) -> Landing:
    """Read the outcome topics from the start until ``until(landing)`` or the timeout.

    Once ``until`` holds, reading goes on for ``settle_s`` so that a late
    duplicate shows up in :attr:`Landing.counts` instead of being missed.
    """
    codec = Codec()
    topics = [t.name(prefix) for t in (DELIVERY_STATUS, IDENTITY_PENDING, DEADLETTER, AUDIT)]
    consumer = kafka_clients.consumer(
        bootstrap,
        *topics,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    landing = Landing()
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            _absorb(codec, landing, (m for batch in batches.values() for m in batch))
            if until is not None and until(landing):
                settle_until = time.monotonic() + settle_s
                while time.monotonic() < settle_until:
                    batches = await consumer.getmany(timeout_ms=200)
                    _absorb(codec, landing, (m for b in batches.values() for m in b))
                break
    finally:
        await consumer.stop()
    return landing


#: the outcomes of a delivery status that end its request (RETRYING, scheduled ones do not)
FINAL_OUTCOMES = frozenset({"DELIVERED", "DUPLICATE", "REJECTED"})


def _absorb(codec: Codec, landing: Landing, messages: Iterable[Any]) -> None:
    for m in messages:
        try:
            name, record = codec.decode(m.value, topic=m.topic, offset=m.offset)
        except ContractError:
            continue
        if name == "DeliveryStatus":
            key = (record["event_id"], record["destination"])
            landing.statuses.setdefault(key, []).append(record)
            if record["destination"] == "DMP":
                landing.delivered[record["event_id"]] = record
            final = record["outcome"] in FINAL_OUTCOMES
            if final and not (record["detail"] or "").startswith("already done"):
                landing.counts["status", record["request_id"]] += 1
        elif name == "IdentityHeld":
            landing.held[record["event_id"]] = record
            landing.counts["held", record["event_id"]] += 1
        elif name == "DeadLetter":
            landing.dead.append(record)
        elif name == "AuditEvent":
            landing.audits.append(record)
