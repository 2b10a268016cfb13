"""``relais index rebuild`` checks the broker and the topics before it drops anything, and
the index's database errors say what the driver said, never the password."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from ops.cli.main import main as relais
from ops.index.rows import rows_of_all
from ops.index.store import IndexStore, IndexStoreError, _unusable
from tests.unit.index_samples import at, reads, received

AUDIT = "t.audit.v1"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_rebuild_without_the_broker_is_refused_and_keeps_the_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    store = IndexStore(url)
    store.create()
    record = received("ev-kept", "1.2.250.9", sender="LABO", msh10="M-1", when=at(0))
    store.apply(rows_of_all(reads([("AuditEvent", record)])), {(AUDIT, 0): 7})
    environment = {
        "RELAIS_INDEX_URL": url,
        "RELAIS_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",  # nothing listens there
        "RELAIS_DATA_DIR": str(tmp_path / "data"),
        "RELAIS_METRICS_PORT": "0",
    }
    result = CliRunner().invoke(relais, ["index", "rebuild", "--yes"], env=environment)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    assert "RELAIS_BOOTSTRAP_SERVERS" in errors[0]
    assert "not dropped" in errors[0]
    assert "Traceback" not in result.output
    assert store.positions() == {(AUDIT, 0): 7}
    assert store.state().documents == 1


def _refused(message: str) -> OperationalError:
    return OperationalError("SELECT 1", None, psycopg.OperationalError(message))


def test_the_driver_s_first_line_is_shown_and_a_failed_password_names_pgpassfile() -> None:
    url = "postgresql+psycopg://relais:s3cr3t-pw@db.example:5432/index"
    said = (
        'connection failed: connection to server at "10.0.0.1", port 5432 failed: FATAL:  '
        'password authentication failed for user "relais" s3cr3t-pw\nDETAIL:  more'
    )
    message = _unusable(url, _refused(said))
    assert message.startswith("the document index at db.example:5432/index cannot be used")
    assert 'password authentication failed for user "relais"' in message
    assert "PGPASSFILE" in message
    assert "RELAIS_INDEX_URL" in message
    assert "s3cr3t-pw" not in message
    assert "DETAIL" not in message
    assert "\n" not in message

    missing = _unusable(url, _refused("fe_sendauth: no password supplied"))
    assert "no password supplied" in missing
    assert "PGPASSFILE" in missing
    refused = _unusable(url, _refused("connection refused\nIs the server running?"))
    assert "connection refused" in refused
    assert "PGPASSFILE" not in refused
    assert "Is the server" not in refused


def test_an_sqlite_file_that_cannot_be_opened_says_so(tmp_path: Path) -> None:
    store = IndexStore(f"sqlite:///{tmp_path / 'missing' / 'index.sqlite3'}")
    with pytest.raises(IndexStoreError) as raised:
        store.state()
    assert "(OperationalError: unable to open database file)" in str(raised.value)
    assert "RELAIS_INDEX_URL" in str(raised.value)
