"""The pipeline: the real Relais stack on the documents, from MLLP to the DMP sandbox.

A fresh :class:`~ops.localstack.LocalStack` (broker, DMP and INSi sandboxes in this
process; identity, transcode, route, the DMP sink and ``relais mllp``: ``workers``
processes each, the gateways sharing one port). One warm-up document goes through
every stage; then the load generator sends the others over MLLP (each ACK awaited) and
the clock stops at the last DELIVERED status.

See benchmarks/README.md (``pipeline_limit``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from benchmarks.limit_bus import Cpu, Message, broker_pid, consumer, send_all
from benchmarks.limit_runs import Run, Timed, finish_run, listening
from benchmarks.mllp_ingest import PREFIX
from ops.localstack import LocalStack
from ops.ports import free_port
from relais.contracts import Codec
from relais.topics import DELIVERY_STATUS

XSD_DEFAULT = Path("../shared/data/cda-xsd")


async def count_delivered(bootstrap: str, topic: str, count: int, timeout_s: float) -> float:
    """Monotonic time at which ``count`` documents have a DELIVERED (or DUPLICATE) DMP status."""
    codec, reader = Codec(), consumer(bootstrap, topic, None)
    await reader.start()
    done: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(done) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)}/{count} documents delivered")
            batches = await reader.getmany(timeout_ms=200)
            for m in (m for b in batches.values() for m in b):
                _, status = codec.decode(m.value, topic=m.topic, offset=m.offset)
                if status["destination"] == "DMP" and status["outcome"] in {
                    "DELIVERED",
                    "DUPLICATE",
                }:
                    done.add(status["event_id"])
        return time.monotonic()
    finally:
        await reader.stop()


def layout(workers: int, port: int) -> tuple[tuple[str, ...], ...]:
    share = ("--reuse-port",) if workers > 1 else ()
    per_stage = [
        ("worker", "identity"),
        ("worker", "transcode"),
        ("worker", "route"),
        ("sink", "dmp"),
        ("mllp", "--port", str(port), *share),
    ]
    return tuple(args for args in per_stage for _ in range(workers))


def named_processes(stack: LocalStack) -> list[tuple[str, int]]:
    """Every process of the stack by name, the gateways' worker pools and the broker."""
    named = [(p.name, p.popen.pid) for p in stack.processes]
    for p in stack.processes:
        if p.name == "mllp":
            named += [("mllp workers", c.pid) for c in psutil.Process(p.popen.pid).children(True)]
    return [*named, ("broker", broker_pid(stack.broker.listen) or 0)]


async def measure_pipeline(
    messages: Sequence[Message], connections: int, workers: int, work: Path, xsd: Path | None
) -> Run:
    port = free_port()
    stack = LocalStack(work, prefix=PREFIX, cda_xsd_dir=xsd, workers=layout(workers, port))
    async with stack:
        bootstrap, status = stack.broker.bootstrap, DELIVERY_STATUS.name(PREFIX)
        await listening(port)
        await send_all(port, messages[:1], 1)  # warm-up: every stage ready
        await count_delivered(bootstrap, status, 1, 180)
        cpu = Cpu(named_processes(stack))
        counter = asyncio.create_task(count_delivered(bootstrap, status, len(messages), 900))
        cpu.start()
        started = await send_all(port, messages[1:], connections)
        entered = time.monotonic()
        ended = await counter
        run = Timed(len(messages) - 1, ended - started, cpu.stop(), entered - started)
        filed = len(stack.sandbox.submissions)
        if filed != len(messages):
            raise RuntimeError(f"the DMP sandbox holds {filed} documents, not {len(messages)}")
        label = f"pipeline ({workers} process(es) per stage)"
        return await finish_run(label, stack.broker, run)
