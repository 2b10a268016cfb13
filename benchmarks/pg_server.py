"""A throwaway PostgreSQL server for the index benchmarks: initdb in a temporary folder,
``pg_ctl start`` on 127.0.0.1 and a free port, ``pg_ctl stop`` on exit.

Debian's PostgreSQL 15 (``/usr/lib/postgresql/15/bin``, or ``--pg-bin``). As root, the
server runs as the ``postgres`` user (``runuser``) in a folder it owns. Durability is
PostgreSQL's default (fsync and synchronous commit on): the figures include the commits.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from ops.ports import free_port

DEFAULT_BIN = Path("/usr/lib/postgresql/15/bin")


class PgServerError(RuntimeError):
    """The benchmark's PostgreSQL could not be set up or started."""


@dataclass(frozen=True)
class PgServer:
    port: int
    data: Path
    postmaster_pid: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def processes(self) -> list[psutil.Process]:
        """The postmaster and every backend and helper it forked (they come and go)."""
        root = psutil.Process(self.postmaster_pid)
        return [root, *root.children(recursive=True)]

    def cpu_s(self) -> float:
        """User + system CPU of the server's processes alive now, plus what the postmaster
        reaped of its children that ended (``children_*`` of the postmaster's times)."""
        total = 0.0
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                t = process.cpu_times()
                total += t.user + t.system
                if process.pid == self.postmaster_pid:
                    total += t.children_user + t.children_system
        return total


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(_as_owner(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PgServerError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-400:]}")


@contextlib.contextmanager
def pg_server(pg_bin: Path = DEFAULT_BIN) -> Iterator[PgServer]:
    """A fresh server, stopped and deleted on exit."""
    if not (pg_bin / "initdb").is_file():
        raise PgServerError(f"no initdb in {pg_bin}: install postgresql-15 or pass --pg-bin")
    root = Path(tempfile.mkdtemp(prefix="relais-index-bench-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", free_port()
    try:
        _run([str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
              "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], "initdb")  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c shared_buffers=256MB"
        _run([str(pg_bin / "pg_ctl"), "-D", str(data), "-o", options, "-l",
              str(root / "server.log"), "-w", "start"], "pg_ctl start")  # fmt: skip
        pid = int((data / "postmaster.pid").read_text().split()[0])
        try:
            yield PgServer(port, data, pid)
        finally:
            _run([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
