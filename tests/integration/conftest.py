"""Session fixtures: the real broker, the DMP sandbox and worker processes on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops.localstack import LocalStack
from tests.shared_data import shared


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    work = Path(tmp_path_factory.mktemp("stack"))
    async with LocalStack(
        work, prefix=f"t{uuid.uuid4().hex[:8]}", cda_xsd_dir=shared("cda-xsd")
    ) as local:
        yield local


# mss_bridge: real Dovecot + Postfix and a broker of its own (session fixtures).
from tests.integration.mail_servers import mss_broker, mss_mail_servers  # noqa: E402, F401

# the document index: a real PostgreSQL 15 server (session), a fresh database per test.
from tests.integration.postgres import index_store, postgres_server, postgres_url  # noqa: E402, F401
