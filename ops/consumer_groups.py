"""Wait until a stack's consumers hold their partitions, before a replay's clock starts.

A process serving ``/metrics`` has started, not joined its group: on tansu a group's first
join waits ``session_timeout/2`` (3 s with the stack's 6 s), so documents sent at once wait
that long in the first topic and a replay's p95/p99 would show the start-up, not the
pipeline. Each stage worker and sink reports ``relais_consumer_assigned_partitions`` once
its partitions flow (after a Faust worker's table recovery); :func:`wait_for_partitions`
scrapes them until each command's processes hold partitions (as many of its copies as
there are partitions to share).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence

from ops.localstack import Process, scrape

_METRIC = "relais_consumer_assigned_partitions"


def consuming(process: Process) -> bool:
    """Stage workers and sinks consume in a group; the MLLP gateway reads without one."""
    args = process.args
    return bool(args) and (
        args[0] in {"worker", "sink"} or tuple(args[:2]) == ("mss", "send-worker")
    )


def holding(process: Process) -> bool:
    """Whether the process reports partitions in hand (False while it cannot be scraped)."""
    try:
        samples = scrape(process.metrics_port)
    except OSError:
        return False
    return any(k.startswith(_METRIC) and v > 0 for k, v in samples.items())


async def wait_for_partitions(
    processes: Sequence[Process], partitions: int, *, timeout_s: float = 120.0
) -> int:
    """How many consuming processes hold partitions, once every command has
    ``min(copies, partitions)`` of them doing so; TimeoutError naming the others."""
    by_command: dict[tuple[str, ...], list[Process]] = defaultdict(list)
    for p in filter(consuming, processes):
        by_command[tuple(p.args)].append(p)
    deadline = time.monotonic() + timeout_s
    late: list[str] = []
    while time.monotonic() < deadline:
        late, ready = [], 0
        for command, copies in by_command.items():
            holders = sum([await asyncio.to_thread(holding, p) for p in copies])
            ready += holders
            if holders < min(len(copies), partitions):
                late.append(" ".join(command))
        if not late:
            return ready
        await asyncio.sleep(0.3)
    raise TimeoutError(f"after {timeout_s:.0f} s these hold no partitions yet: {', '.join(late)}")
