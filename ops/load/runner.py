"""``relais load``: replay a vague-1 profile against a whole local stack, then account for it.

One run: plan and build every document (before the clock starts), start a
:class:`~ops.localstack.LocalStack` (broker, DMP and INSi sandboxes, N
processes per stage, the MLLP gateway), send each document at its planned
instant through MLLP or the producer library, show progress, optionally kill
workers and restart the broker (``chaos``), wait until every document has an
outcome (or the drain timeout), stop everything and read back what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ops.consumer_groups import wait_for_partitions
from ops.load.accounting import Accounting, Observed, Sent, account, settled
from ops.load.chaos import S3_BUCKET, Chaos, ChaosEvent, S3Store, exported
from ops.load.documents import build
from ops.load.procs import ProcessSampler, Usage, children_named
from ops.load.profile import Channel, PlannedDocument, Profile, plan
from ops.load.senders import Answer, Item, library_sender, mllp_sender, pace
from ops.localstack import Landing, LocalStack, read_landing
from ops.ports import free_port
from producers.publisher import Publisher
from relais.document_store.open import open_store
from relais.topics import DEFAULT_PARTITIONS

Echo = Callable[[str], None]
STAGES = ("identity", "transcode", "route")


@dataclass(frozen=True)
class LoadConfig:
    profile: Profile
    out_dir: Path
    workers: int = 1  # processes of every stage, sink and MLLP gateway (sharing its port)
    combined: bool = False  # one process runs identity, transcode and route
    connections: int = 4  # MLLP connections
    library_tasks: int = 4  # concurrent producer-library callers
    chaos: bool = False
    kills: int = 4
    drain_timeout_s: float = 300.0
    progress_s: float = 5.0
    cda_xsd_dir: Path | None = None
    prefix: str = "load"
    #: also run the MSSanté operator sandbox, the MSSanté sender and the notify sink, and
    #: account for the mails and notifications the route stage asked for
    mail: bool = True
    partitions: int = DEFAULT_PARTITIONS  # of every topic (RELAIS_PARTITIONS)
    patient_keys: bool = True  # RELAIS_PATIENT_KEYS of the processes (their cost: compare)

    def layout(self, mllp_port: int) -> tuple[tuple[str, ...], ...]:
        stages: list[tuple[str, ...]] = (
            [("worker", *STAGES)] if self.combined else [("worker", s) for s in STAGES]
        )
        # N gateways listen on one port (SO_REUSEPORT); one alone keeps the plain listener
        share = ("--reuse-port",) if self.workers > 1 else ()
        per_stage = [*stages, ("sink", "dmp"), ("mllp", "--port", str(mllp_port), *share)]
        return tuple(args for args in per_stage for _ in range(self.workers))


@dataclass
class LoadResult:
    config: LoadConfig
    documents: list[PlannedDocument]
    sent: list[Sent]
    answers: list[Answer]
    accounting: Accounting
    observed: Observed
    usage: list[Usage]
    chaos: list[ChaosEvent]
    sizes: dict[int, int]  # seq -> bytes sent
    build_s: float
    t0_epoch: float  # the replay's second 0, as epoch seconds
    send_s: float  # until the last answer
    drained_s: float  # until every document had an outcome (or the timeout)
    broker_storage: str
    notes: list[str] = field(default_factory=list)
    #: the CDAs the DMP sandbox holds at the end (CDA id -> bytes): what Relais filed
    filed: dict[str, bytes] = field(default_factory=dict)


async def run_load(config: LoadConfig, echo: Echo) -> LoadResult:
    """The whole replay; raises nothing for a bad outcome (see ``result.accounting``)."""
    batch = _build_all(config, echo)
    async with _stack(config, echo) as (run, store):
        stack = run.stack
        # the broker, started now and restarted by chaos, reads its S3 endpoint from these
        with exported(store.environment() if store else {}):
            await stack.start()
            await stack.wait_for_metrics(timeout_s=120)
            holders = await wait_for_partitions(stack.processes, config.partitions)
            echo(
                f"stack up: {len(stack.processes)} processes, {holders} holding partitions, "
                f"broker {stack.broker.bootstrap}"
            )
            answers = await run.send(batch.items)
        echo(f"all {len(answers)} documents answered at {run.clock():.1f} s; draining")
        by_seq = sorted(answers, key=lambda a: a.seq)
        sent = [_answered(s, a) for s, a in zip(batch.sent, by_seq, strict=True)]
        observed, drained_s = await run.drain(sent)
        filed = dict(stack.sandbox.content)
    return LoadResult(
        config=config,
        documents=batch.docs,
        sent=sent,
        answers=answers,
        accounting=account(sent, observed),
        observed=observed,
        usage=run.sampler.table(),
        chaos=run.chaos.events if run.chaos else [],
        sizes=batch.sizes,
        build_s=batch.build_s,
        t0_epoch=run.t0_epoch,
        send_s=max((a.answered_s for a in answers), default=0.0),
        drained_s=drained_s,
        broker_storage=stack.broker.storage,
        notes=[f"the broker stored on s3://{S3_BUCKET}/ over moto, which outlived it"]
        if store
        else [],
        filed=filed,
    )


@dataclass
class _Batch:
    """The replay's documents, planned and built before the clock starts."""

    docs: list[PlannedDocument]
    items: deque[Item]  # (planned, built), in send order: the pacer hands each to a sender
    sent: list[Sent]  # what each document is, before its answer
    sizes: dict[int, int]  # seq -> bytes sent
    build_s: float


def _build_all(config: LoadConfig, echo: Echo) -> _Batch:
    """Plan the replay and build every document (the built ones only in ``items``)."""
    docs = plan(config.profile)
    started = time.monotonic()
    built = [build(d) for d in docs]
    build_s = time.monotonic() - started
    sent = [
        Sent(b.seq, b.control_id, b.unique_id, d.defect, b.sha256, "", d.copy_of)
        for d, b in zip(docs, built, strict=True)
    ]
    sizes = {b.seq: b.size for b in built}
    echo(
        f"built {len(built)} documents ({sum(sizes.values()) / 1e6:.1f} MB) in {build_s:.1f} s; "
        f"replaying over {config.profile.wall_seconds():.0f} s"
    )
    return _Batch(docs, deque(zip(docs, built, strict=True)), sent, sizes, build_s)


@contextlib.asynccontextmanager
async def _stack(config: LoadConfig, echo: Echo) -> AsyncIterator[tuple[_Run, S3Store | None]]:
    """The replay on its stack (not started yet) and, with chaos, the S3 store of the
    broker; on the way out the replay's helpers, the stack and the store are stopped."""
    store = await _store(config, echo)
    mllp_port = free_port()
    stack = LocalStack(
        config.out_dir / "stack",
        prefix=config.prefix,
        workers=config.layout(mllp_port),
        cda_xsd_dir=config.cda_xsd_dir,
        broker_storage=f"s3://{S3_BUCKET}/" if store else "memory://tansu/",
        mail=config.mail,
        partitions=config.partitions,
        copies=config.workers,  # the MSSanté sender and notify sink too
        extra_environment={"RELAIS_PATIENT_KEYS": "yes" if config.patient_keys else "no"},
    )
    if config.workers > config.partitions:
        echo(
            f"--workers {config.workers} > RELAIS_PARTITIONS={config.partitions}: "
            f"{config.workers - config.partitions} process(es) of each stage will idle"
        )
    run = _Run(config, stack, echo, mllp_port)
    try:
        yield run, store
    finally:
        await run.finish()
        await stack.stop()
        if store:
            store.stop()


class _Run:
    """The replay: pacer, senders, progress, sampler and chaos side by side, then the drain."""

    def __init__(self, config: LoadConfig, stack: LocalStack, echo: Echo, mllp_port: int) -> None:
        self.config, self.stack, self.echo, self.mllp_port = config, stack, echo, mllp_port
        self.sampler = ProcessSampler()
        self.t0 = time.monotonic()
        self.t0_epoch = time.time()
        self.chaos: Chaos | None = None
        self.answers: list[Answer] = []
        self.drained = asyncio.Event()  # progress and the chaos watcher run until then
        self.helpers: list[asyncio.Task[None]] = []

    def clock(self) -> float:
        return time.monotonic() - self.t0

    def sample(self, *, baseline: bool = False) -> None:
        by_pid = {p.popen.pid: p.name for p in self.stack.processes}

        def classify(cmdline: list[str]) -> str | None:
            if any("tansu" in part for part in cmdline[:1]):
                return "broker"
            if "moto.server" in cmdline[:3]:
                return "S3 store (moto)"
            return None

        named = [(name, pid) for pid, name in by_pid.items()]
        named += children_named(classify)
        named.append(("load (senders, sandboxes)", os.getpid()))
        self.sampler.sample(named, baseline=baseline)

    async def send(self, items: deque[Item]) -> list[Answer]:
        total = len(items)
        queues: dict[Channel, asyncio.Queue[Item | None]] = {c: asyncio.Queue() for c in Channel}
        counts = {Channel.MLLP: self.config.connections, Channel.LIBRARY: self.config.library_tasks}
        self.sample(baseline=True)  # start-up CPU is not the replay's
        self.t0, self.t0_epoch = time.monotonic(), time.time()
        sent_all = asyncio.Event()
        async with Publisher(
            bootstrap=self.stack.settings.kafka.connection,
            keyring=self.stack.keyring,
            topic_prefix=self.stack.prefix,
            store=open_store(self.stack.settings),
        ) as publisher:
            senders = [
                asyncio.create_task(
                    mllp_sender(
                        "127.0.0.1", self.mllp_port, queues[Channel.MLLP], self.answers, self.clock
                    )
                )
                for _ in range(counts[Channel.MLLP])
            ] + [
                asyncio.create_task(
                    library_sender(publisher, queues[Channel.LIBRARY], self.answers, self.clock)
                )
                for _ in range(counts[Channel.LIBRARY])
            ]
            self.helpers.append(asyncio.create_task(self._progress(total, self.drained)))
            if self.config.chaos:
                self.helpers += self._start_chaos(sent_all)
            try:
                await pace(items, queues, counts, self.clock)
                await asyncio.gather(*senders)
            finally:
                sent_all.set()
                for task in senders:
                    task.cancel()
        return self.answers

    async def finish(self) -> None:
        """Once drained: stop the progress lines and the watcher restarting dead workers."""
        self.drained.set()
        for task in self.helpers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.helpers.clear()

    async def drain(self, sent: list[Sent]) -> tuple[Observed, float]:
        """Wait until every document has an outcome (or the drain timeout), stop the helpers,
        and read back what happened: (what was observed, the replay second it drained at)."""
        stack, mail = self.stack, self.config.mail
        landing = await read_landing(
            stack.settings.kafka.connection,
            stack.prefix,
            timeout_s=self.config.drain_timeout_s,
            settle_s=3.0,
            until=lambda lan: settled(sent, observe(lan, stack.sandbox.submissions, mail=mail)),
        )
        drained_s = self.clock()
        await self.finish()
        self.sample()
        observed = observe(landing, stack.sandbox.submissions, mail=mail)
        if stack.mail_sandbox is not None:
            observed.mails = mail_copies(stack.mail_sandbox.mailboxes())
        return observed, drained_s

    def _start_chaos(self, sent_all: asyncio.Event) -> list[asyncio.Task[None]]:
        """Kills and the broker restart while sending; the watcher until the drain is over."""
        self.chaos = Chaos(self.stack, self.clock, seed=self.config.profile.seed)
        window = self.config.profile.wall_seconds()
        broker_at = 0.5 * window if self.stack.broker.storage.startswith("s3://") else None

        async def chaos_run() -> None:
            assert self.chaos is not None
            await self.chaos.run(self.config.kills, window, broker_at)

        run = asyncio.create_task(chaos_run())
        stop_task = asyncio.create_task(_cancel_on(sent_all, run))
        return [run, stop_task, asyncio.create_task(self.chaos.watch(self.drained))]

    async def _progress(self, total: int, stop: asyncio.Event) -> None:
        last = -1.0
        while not stop.is_set():
            self.sample()
            now = self.clock()
            if now - last >= self.config.progress_s:
                last = now
                rate = len(self.answers) / now if now > 0 else 0.0
                chaos = f", chaos events {len(self.chaos.events)}" if self.chaos else ""
                self.echo(
                    f"{now:7.1f} s  answered {len(self.answers)}/{total} ({rate:.1f}/s)  "
                    f"filed at the DMP {len(self.stack.sandbox.filed)}{chaos}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def _cancel_on(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _store(config: LoadConfig, echo: Echo) -> S3Store | None:
    """With chaos, the S3 store the broker keeps its data in across its restart."""
    if not config.chaos:
        return None
    store = S3Store(config.out_dir / "s3.log")
    await store.start()
    echo(f"S3 store (moto) on {store.endpoint}: the broker stores on s3://{S3_BUCKET}/")
    return store


#: notify status codes of a notification under embargo (consumers.notify.schedule)
UNDER_EMBARGO: Final = frozenset({"EMBARGOED", "WAITING_FOR_DMP_VISIBILITY"})


def _other(seen: Observed, event_id: str, destination: str, statuses: list[Any]) -> None:
    """MSSanté and notification outcomes, per request (a notification under embargo counts:
    scheduled, or filed and waiting for the DMP's visibility update at its release date)."""
    for status in statuses:
        scheduled = status["code"] in UNDER_EMBARGO
        if status["outcome"] in {"DELIVERED", "DUPLICATE", "REJECTED"} or scheduled:
            outcome = "SCHEDULED" if scheduled else status["outcome"]
            by_request = seen.other.setdefault(event_id, {}).setdefault(destination, {})
            by_request.setdefault(status["request_id"], outcome)


def mail_copies(mailboxes: Mapping[str, Sequence[Any]]) -> tuple[int, int]:
    """(mails received, distinct Message-IDs): a resent mail keeps its Message-ID."""
    ids = [str(m.message["Message-ID"]) for mails in mailboxes.values() for m in mails]
    return len(ids), len(set(ids))


def _answered(s: Sent, a: Answer) -> Sent:
    return Sent(s.seq, s.control_id, s.unique_id, s.defect, s.sha256, a.answer, s.copy_of)


def observe(landing: Landing, submissions: Any, *, mail: bool = False) -> Observed:
    """What the outcome topics and the sandbox say, in the accounting's terms."""
    seen = Observed(filings=dict(submissions), doubled=landing.doubled())
    seen.checked = frozenset({"MSSANTE", "NOTIFY"}) if mail else frozenset()
    for audit in landing.audits:
        event_id, action = audit["event_id"], audit["action"]
        stamps = seen.stamps.setdefault(event_id, {})
        stamps.setdefault(action, audit["at"].timestamp())
        if action == "RECEIVED":
            seen.receive(audit["detail"] or "", event_id)
        elif action == "DUPLICATE_IGNORED":
            seen.duplicates.add(event_id)
        elif action == "ROUTED":
            seen.routed[event_id] = tuple(audit["outcome"].split(","))
    for (event_id, destination), statuses in landing.statuses.items():
        if destination != "DMP":
            _other(seen, event_id, destination, statuses)
            continue
        for status in statuses:
            final = status["outcome"] in {"DELIVERED", "DUPLICATE", "REJECTED"}
            if final and not (status["detail"] or "").startswith("already done"):
                seen.dmp.setdefault(event_id, []).append(status["outcome"])
            if status["outcome"] in {"DELIVERED", "DUPLICATE"}:
                stamps = seen.stamps.setdefault(event_id, {})
                at = status["at"].timestamp()
                stamps["DELIVERED"] = min(stamps.get("DELIVERED", at), at)
    seen.held = {e: h["reason_code"] for e, h in landing.held.items()}
    for letter in landing.dead:
        where = f"{letter['stage']}: {letter['reason_code']}"
        if letter["event_id"]:
            seen.dead[letter["event_id"]] = where
        else:
            seen.dead_by_sha[letter["original_sha256"]] = where
    return seen
