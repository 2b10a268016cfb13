"""``python -m benchmarks.ack_latency``: small-message ACK latency, alone and under attack.

Issue 15, "One sender can stall all": starts a fresh broker (tansu, memory://) and a
real ``relais mllp`` gateway process (``python -m ops mllp``), then on one connection
sends small valid messages one after the other (the ANS ADT^A01 sample, AA), one every
``--interval-ms`` (20), and prints their ACK p50/p99/max:

(a) alone;
(b) while another connection sends 5 MB pathological frames one after the other
    (``MSH|^~\\&|`` then 5 million ``~``, ``^`` or ``|``, in turn; each gets an AE);

with the CPU seconds the gateway used in each phase (the gateway process alone, and
with its worker processes). Target: p99 < 100 ms in both. ``--workers 0`` runs the
checks in the gateway's event loop, as before issue 15, for comparison.

Latency is counted from the moment a message was *due* (its slot in the schedule),
not from when it could be sent: a message that had to wait for the previous ACK is
charged that wait, so a stall of the gateway shows in every message it delayed
(no "coordinated omission").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.latency import Latency, summarise
from benchmarks.mllp_ingest import fresh_broker, machine_info
from ops.ports import free_port
from producers.mllp.framing import MllpDecoder, frame
from relais.keyring import Keyring
from relais.topic_admin import ensure_topics

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "hl7v2" / "ADT_A01_PAMFR_INS_admission.er7"
PREFIX = "bench-ack"
FILLERS = (b"~", b"^", b"|")


HEADER = b"MSH|^~\\&|SIL|LAB|RELAIS|RELAIS|20240301101530||ORU^R01^ORU_R01|BIG-1|P|2.5\r"
#: where the 5 MB of delimiters go: right after MSH-2 (the issue's frames), or in a PID
SHAPES = {"msh": b"MSH|^~\\&|", "pid": HEADER + b"PID|1||"}


def pathological(filler: bytes, shape: str = "msh", size: int = 5_000_000) -> bytes:
    return SHAPES[shape] + filler * size


def tree_cpu_s(root: int) -> tuple[float, float]:
    """CPU seconds (user + system) of ``root`` alone, and of it with all its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[int, float] = {}
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            pid = int(entry.name)
            parent[pid] = int(fields[1])
            cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    family, grew = {root}, True
    while grew:
        children = {pid for pid, ppid in parent.items() if ppid in family} - family
        family |= children
        grew = bool(children)
    return cpu.get(root, 0.0), sum(cpu.get(pid, 0.0) for pid in family)


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = MllpDecoder(64 << 20)
        self.pending: list[bytes] = []

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def exchange(self, payload: bytes, due: float | None = None) -> tuple[bytes, float]:
        """Send one frame, wait for its ACK: (MSA-1, seconds from ``due`` or now to the ACK)."""
        started = time.perf_counter() if due is None else due
        self.writer.write(frame(payload))
        await self.writer.drain()
        while not self.pending:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the gateway closed the connection")
            self.pending += self.decoder.feed(data)
        ack = self.pending.pop(0)
        msa = next(s for s in ack.split(b"\r") if s.startswith(b"MSA|"))
        return msa.split(b"|")[1], time.perf_counter() - started

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@dataclass(frozen=True)
class Phase:
    name: str
    latency: Latency
    codes: dict[bytes, int]
    attack_frames: int
    gateway_cpu_s: float
    with_workers_cpu_s: float


async def small_messages(
    port: int, count: int, interval_s: float
) -> tuple[list[float], dict[bytes, int]]:
    """``count`` messages, one due every ``interval_s``; latency counted from when it was due."""
    sample = SAMPLE.read_bytes()
    connection = await Connection.open(port)
    seconds: list[float] = []
    codes: dict[bytes, int] = {}
    start = time.perf_counter()
    try:
        for n in range(count):
            due = start + n * interval_s
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            code, took = await connection.exchange(sample, due)
            seconds.append(took)
            codes[code] = codes.get(code, 0) + 1
    finally:
        await connection.close()
    return seconds, codes


async def attack(port: int, stop: asyncio.Event, sent: list[bytes], shape: str) -> None:
    """5 MB pathological frames one after the other until ``stop``; each gets an ACK."""
    frames = [pathological(filler, shape) for filler in FILLERS]
    connection = await Connection.open(port)
    try:
        while not stop.is_set():
            code, _ = await connection.exchange(frames[len(sent) % len(frames)])
            sent.append(code)
    finally:
        await connection.close()


async def measure(
    name: str, pid: int, port: int, count: int, interval_s: float, attack_shape: str | None
) -> Phase:
    stop, sent = asyncio.Event(), list[bytes]()
    attacker = None
    if attack_shape is not None:
        attacker = asyncio.create_task(attack(port, stop, sent, attack_shape))
    if attacker is not None:
        await asyncio.sleep(0.5)  # the first 5 MB frame is being received and checked
    before = tree_cpu_s(pid)
    seconds, codes = await small_messages(port, count, interval_s)
    after = tree_cpu_s(pid)
    if attacker is not None:
        stop.set()
        await attacker
    return Phase(
        name,
        summarise(seconds),
        codes,
        len(sent),
        after[0] - before[0],
        after[1] - before[1],
    )


@contextlib.asynccontextmanager
async def gateway(bootstrap: str, workers: int | None) -> AsyncIterator[tuple[int, int]]:
    """A ``relais mllp`` process on a free port: (pid, port); stopped with SIGTERM."""
    folder = Path(tempfile.mkdtemp(prefix="relais-ack-bench-"))
    keyring = folder / "keyring.json"
    Keyring.generate().write(keyring)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")},
        "RELAIS_BOOTSTRAP_SERVERS": bootstrap,
        "RELAIS_TOPIC_PREFIX": PREFIX,
        "RELAIS_KEYRING_FILE": str(keyring),
        "RELAIS_MLLP_PORT": str(port),
        "RELAIS_METRICS_PORT": str(free_port()),
        "RELAIS_DATA_DIR": str(folder / "data"),
        "RELAIS_LOG_LEVEL": "warn",
        **({"RELAIS_MLLP_WORKERS": str(workers)} if workers is not None else {}),
    }
    with (folder / "gateway.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ops", "mllp", env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            await until_listening(process, port, folder / "gateway.log")
            yield process.pid, port
        finally:
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await process.wait()


async def until_listening(process: asyncio.subprocess.Process, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"relais mllp exited: see {log}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"relais mllp is not listening after 60 s: see {log}")


async def run(count: int, interval_s: float, workers: int | None, shape: str) -> list[Phase]:
    async with fresh_broker() as broker:
        await ensure_topics(broker.bootstrap, PREFIX)
        async with gateway(broker.bootstrap, workers) as (pid, port):
            await small_messages(port, 20, 0.0)  # warm-up: connections, producer, workers
            alone = await measure("alone", pid, port, count, interval_s, None)
            attacked = await measure(
                f"with 5 MB frames ({shape})", pid, port, count, interval_s, shape
            )
    return [alone, attacked]


def report(phases: list[Phase], workers: int | None) -> list[str]:
    lines = [*machine_info(), f"RELAIS_MLLP_WORKERS: {'default' if workers is None else workers}"]
    lines += [
        "",
        "| small messages | count | ACK p50 ms | ACK p99 ms | ACK max ms | ACKs "
        "| 5 MB frames answered | gateway CPU s | gateway + workers CPU s |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for p in phases:
        codes = " ".join(f"{c.decode()}:{n}" for c, n in sorted(p.codes.items()))
        lines.append(
            f"| {p.name} | {p.latency.count} | {p.latency.p50_ms:.1f} | {p.latency.p99_ms:.1f} "
            f"| {p.latency.max_ms:.1f} | {codes} | {p.attack_frames} "
            f"| {p.gateway_cpu_s:.2f} | {p.with_workers_cpu_s:.2f} |"
        )
    met = all(p.latency.p99_ms < 100 for p in phases)
    lines.append(f"\ntarget p99 < 100 ms in both: {'met' if met else 'NOT met'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ack_latency")
    parser.add_argument("--messages", type=int, default=300, help="small messages per phase")
    parser.add_argument(
        "--interval-ms", type=float, default=20.0, help="one small message due every ... ms"
    )
    parser.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="msh",
        help="msh: MSH|^~\\&| then the delimiters (default); pid: a valid MSH, then PID|1||...",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="RELAIS_MLLP_WORKERS (default: its default)"
    )
    args = parser.parse_args()
    if not SAMPLE.is_file():
        raise SystemExit(f"{SAMPLE}: the ANS samples (../shared/data) are needed")
    phases = asyncio.run(run(args.messages, args.interval_ms / 1000, args.workers, args.shape))
    print("\n".join(report(phases, args.workers)))


if __name__ == "__main__":
    main()
