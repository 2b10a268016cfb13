"""A real PostgreSQL server for the document index's tests (Debian's PostgreSQL 15).

:func:`postgres_url` (session) runs ``initdb`` and ``postgres`` in a directory of its own
under /tmp, listening on 127.0.0.1 and a free port (its unix socket in that directory),
trust authentication on 127.0.0.1 only, and yields the URL of a database made for the
session; the server stops at the end. As root it runs as the ``postgres`` user (initdb
refuses root). :func:`index_store` gives each test a fresh database of its own, so tests
never see each other's documents. ``make system-deps`` installs the package.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ops.index.store import IndexStore

BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    """The command as the ``postgres`` user when running as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_postgres(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stderr or done.stdout}")


def _prepare(work: Path) -> Path:
    """An initdb'd data directory in ``work`` owned by whoever runs the server."""
    work.chmod(0o755)
    data = work / "data"
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(work, user.pw_uid, user.pw_gid)
    _run([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
          "--locale=C.UTF-8"])  # fmt: skip
    with (data / "pg_hba.conf").open("w") as hba:
        hba.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    return data


def _wait_ready(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres"):
                return
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise RuntimeError(f"postgres did not answer on 127.0.0.1:{port} within 30 s")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The server's URL without a database (``postgresql://postgres@127.0.0.1:PORT``)."""
    if not (BIN / "postgres").exists():
        raise RuntimeError("PostgreSQL 15 is not installed: run `make system-deps`")
    work = Path(tempfile.mkdtemp(prefix="relais-pg-", dir="/tmp"))
    data, port = _prepare(work), _free_port()
    log = work / "postgres.log"
    command = [str(BIN / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
               "-k", str(work), "-c", "fsync=off", "-c", "synchronous_commit=off",
               "-c", "full_page_writes=off"]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(_as_postgres(command), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(port, server, log)
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


def create_database(server: str) -> str:
    """A new empty database on ``server``; its URL."""
    name = f"index_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> str:
    """A database of the session's PostgreSQL server."""
    return create_database(postgres_server)


@pytest.fixture
def index_store(postgres_server: str) -> Iterator[IndexStore]:
    """An :class:`IndexStore` on a fresh PostgreSQL database of its own, tables created."""
    store = IndexStore(create_database(postgres_server))
    store.create()
    try:
        yield store
    finally:
        store.close()
