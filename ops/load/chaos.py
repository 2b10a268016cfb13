"""Chaos for a replay: SIGKILL random workers and restart them; restart the broker once.

The broker keeps its data across a restart only on a durable store: tansu on
``s3://`` (../shared/LOCAL-STACK.md §2) over an S3 server that honours
conditional PUTs, which :class:`S3Store` starts on a free port of 127.0.0.1.
:func:`kill_times` is the pure schedule; :class:`Chaos` the shell that carries
it out against a :class:`~ops.localstack.LocalStack`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ops.localstack import LocalStack, Process
from ops.ports import free_port

S3_BUCKET: Final = "tansu"
S3_HINT: Final = "pip install 'moto[server]' (or pip install -e '.[load]')"
#: the worker kinds chaos may kill (the MLLP gateway and the broker are handled apart)
KILLABLE: Final = ("identity", "transcode", "route", "identity-transcode-route", "sink-dmp")


def kill_times(kills: int, window_s: float, seed: int) -> list[float]:
    """``kills`` instants spread over the middle 80 % of the window, one per equal slice."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible schedule, not a secret)
    start, width = 0.1 * window_s, 0.8 * window_s
    return [start + width * (i + rng.random()) / max(kills, 1) for i in range(kills)]


class S3Error(RuntimeError):
    """The S3 store is not installed or did not start."""


@dataclass
class S3Store:
    """An S3 server (moto) that holds the broker's data and outlives the broker's restarts.

    tansu keeps each partition's offsets in a ``watermark.json`` object that it
    updates with conditional PUTs (If-None-Match / If-Match); a restarted broker
    learns where a partition ends from the 412 its first PUT gets. moto enforces
    conditional PUTs; npm ``s3rver@3.7.1`` ignores them, and a tansu restarted
    on it starts every partition again at offset 0, overwriting the records
    already there (measured: see docs/performance.md). moto keeps the objects in
    memory: they survive the broker, not moto itself.
    """

    log_path: Path
    port: int = 0
    popen: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        """What tansu reads to reach the store (AmazonS3Builder::from_env)."""
        return {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if importlib.util.find_spec("moto") is None:
            raise S3Error(f"moto is not installed: {S3_HINT}")
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.popen = _spawn(command, self.log_path)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise S3Error(f"moto exited ({self.popen.returncode}): see {self.log_path}")
            try:
                await asyncio.to_thread(self._create_bucket)
                return
            except OSError:
                await asyncio.sleep(0.3)
        self.stop()
        raise S3Error(f"moto did not answer within 30 s: see {self.log_path}")

    def _create_bucket(self) -> None:
        url = f"http://127.0.0.1:{self.port}/{S3_BUCKET}"
        request = urllib.request.Request(url, method="PUT")
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (http to 127.0.0.1)
            response.read()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextlib.contextmanager
def exported(extra: dict[str, str]) -> Iterator[None]:
    """Variables the broker process inherits (tansu reads its S3 endpoint from them)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@dataclass
class ChaosEvent:
    at_s: float  # replay seconds
    what: str  # "SIGKILL identity", "broker restart", "transcode exited by itself"
    recovered_s: float | None = None  # until it served /metrics (or answered) again


@dataclass
class Chaos:
    """Carries out the kills and the broker restart; restarts any worker that dies."""

    stack: LocalStack
    clock: Callable[[], float]  # replay seconds
    seed: int = 1
    events: list[ChaosEvent] = field(default_factory=list)
    _killing: set[int] = field(default_factory=set)

    def killable(self) -> list[Process]:
        """Running workers of the killable kinds (not one being restarted already)."""
        return [
            p
            for p in self.stack.processes
            if p.name in KILLABLE and p.popen.poll() is None and p.popen.pid not in self._killing
        ]

    async def kill_one(self, rng: random.Random) -> None:
        victims = self.killable()
        if not victims:
            return
        victim = victims[rng.randrange(len(victims))]
        await self._respawn(victim, f"SIGKILL {victim.name}", kill=True)

    async def _respawn(self, old: Process, what: str, *, kill: bool) -> None:
        """Start ``old`` again; the event says when it served /metrics (None: it did not)."""
        if old.popen.pid in self._killing:
            return  # the schedule and the watcher both saw it: one restart is enough
        event = ChaosEvent(self.clock(), what)
        self.events.append(event)
        self._killing.add(old.popen.pid)
        new = await self.stack.replace(old, kill=kill)
        # one that exits again (the broker is restarting) is the watcher's to restart
        if await self.stack.serving(new, timeout_s=120):
            event.recovered_s = self.clock() - event.at_s

    async def restart_broker(self) -> None:
        """Stop the broker (SIGTERM) and start it again on the same port and store."""
        event = ChaosEvent(self.clock(), f"broker restart ({self.stack.broker.storage})")
        self.events.append(event)
        self.stack.broker.stop()
        await self.stack.broker.start(timeout_s=60)
        event.recovered_s = self.clock() - event.at_s

    async def run(self, kills: int, window_s: float, broker_at_s: float | None) -> None:
        rng = random.Random(self.seed)  # noqa: S311 (which worker: reproducible, not secret)
        plan: list[tuple[float, str]] = [
            (t, "kill") for t in kill_times(kills, window_s, self.seed)
        ]
        if broker_at_s is not None:
            plan.append((broker_at_s, "broker"))
        for at_s, action in sorted(plan):
            await asyncio.sleep(max(0.0, at_s - self.clock()))
            if action == "kill":
                await self.kill_one(rng)
            else:
                await self.restart_broker()

    async def watch(self, stop: asyncio.Event) -> None:
        """Restart a worker that exited by itself (e.g. lost the broker for too long)."""
        while not stop.is_set():
            for p in list(self.stack.processes):
                if p.popen.poll() is not None and p.popen.pid not in self._killing:
                    what = f"{p.name} exited by itself ({p.popen.returncode})"
                    await self._respawn(p, what, kill=False)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                continue
