"""CPU seconds and peak RSS of every process of a replay, sampled with psutil.

A process is known by a name (``identity``, ``broker``, ``load`` for this one);
when a name's process is killed and started again, the CPU of each incarnation
adds up and the peak RSS is the largest seen. Sampling costs about 0.1 ms per
process and second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil


@dataclass
class Usage:
    name: str
    cpu_s: float = 0.0  # user + system, every incarnation
    peak_rss_mb: float = 0.0
    incarnations: int = 0
    _last: dict[int, float] = field(default_factory=dict)  # pid -> CPU s at the last sample


class ProcessSampler:
    """Call :meth:`sample` regularly with the current (name, pid) pairs."""

    def __init__(self) -> None:
        self.usage: dict[str, Usage] = {}

    def sample(self, processes: Iterable[tuple[str, int]], *, baseline: bool = False) -> None:
        """Add the CPU used since the last sample; ``baseline`` only notes where each
        process stands (CPU used before, e.g. at start-up, is not counted)."""
        for name, pid in processes:
            usage = self.usage.setdefault(name, Usage(name))
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    times, rss = p.cpu_times(), p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            cpu = float(times.user + times.system)
            if pid not in usage._last:
                usage.incarnations += 1
            if not baseline:
                usage.cpu_s += cpu - usage._last.get(pid, 0.0)
            usage._last[pid] = cpu
            usage.peak_rss_mb = max(usage.peak_rss_mb, rss / 1e6)

    def table(self) -> list[Usage]:
        return sorted(self.usage.values(), key=lambda u: -u.cpu_s)


def children_named(classify: Callable[[list[str]], str | None]) -> list[tuple[str, int]]:
    """This process's children that ``classify`` names from their command line."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            name = classify(child.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if name:
            found.append((name, child.pid))
    return found
