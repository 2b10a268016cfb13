"""Ports for the servers a test or a local stack starts on 127.0.0.1."""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: ports this process handed out: never twice
_GIVEN: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now, below the kernel's ephemeral range when it can: a port
    taken from that range may become the local end of another process's outgoing connection
    (a worker's Kafka client) before the server it was meant for binds it."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10_000, low) if low > 10_000 else _os_port()  # noqa: S311
        if port not in _GIVEN and _bindable(port):
            _GIVEN.add(port)
            return port
    port = _os_port()
    _GIVEN.add(port)
    return port


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _os_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
