"""The console's audited reveal of a document's patient identity on the real broker: one
document published, indexed into a SQLite index, revealed from its journey page; the
record found on its patient's partition of documents.submitted, its traits opened with the
stack's keyring, and the audit event (read back from the audit topic) naming the operator
and carrying no identity."""

from __future__ import annotations

import re
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from ops.console.accounts import LocalAuthenticator, add_account
from ops.console.app import Console, make_app
from ops.console.bus import ConsoleBus
from ops.console.identity_reveal import OUTCOME
from ops.console.sessions import SessionStore
from ops.demo.samples import LAB, SARAH_LOU, sample
from ops.dlq.shell import decoded
from ops.index.feeder import Feeder
from ops.index.store import IndexStore
from ops.localstack import LocalStack
from producers.publisher import Publisher
from relais.contracts import Codec, Record
from relais.topic_reader import partitions_of, read_to_end
from relais.topics import AUDIT

PASSWORD = "correct horse battery"


async def _indexed(stack: LocalStack, tmp_path: Path) -> tuple[str, IndexStore]:
    s = stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        [event_id] = await publisher.submit_lab_result(sample(LAB, SARAH_LOU, 97))
    store = IndexStore(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    store.create()
    feeder = Feeder(s, store, stack.keyring)
    deadline = time.monotonic() + 15
    while (row := store.document(event_id)) is None or not row.patient_key:
        assert time.monotonic() < deadline, f"{event_id} not indexed with its patient key"
        await feeder.catch_up()
    return event_id, store


async def _console_audits(stack: LocalStack, event_id: str) -> list[Record]:
    s = stack.settings
    found = await partitions_of(s.kafka.connection, (AUDIT,), s.kafka.prefix)
    messages = await read_to_end(s.kafka.connection, found)
    return [
        record
        for name, record, _ in decoded(Codec(), messages)
        if name == "AuditEvent"
        and record["event_id"] == event_id
        and record["component"] == "console"
    ]


async def test_a_document_s_patient_identity_is_revealed_once_audited(
    stack: LocalStack, tmp_path: Path
) -> None:
    event_id, store = await _indexed(stack, tmp_path)
    accounts = tmp_path / "accounts.json"
    add_account(accounts, "ivy", PASSWORD, ["identitovigilance"])
    s = stack.settings
    console = Console(
        index=store,
        authenticator=LocalAuthenticator(accounts),
        bus=ConsoleBus(s.kafka.connection, s.kafka.prefix, stack.keyring),
        sessions=SessionStore(session_s=3600),
        failure_delay_s=0,
    )
    async with TestClient(TestServer(make_app(console))) as client:
        signed = await client.post("/sign-in", data={"name": "ivy", "password": PASSWORD})
        journey = await (await client.get(f"/documents/{event_id}")).text()
        assert signed.status == 200
        assert SARAH_LOU.ins not in journey
        csrf = re.search(r'name="csrf" value="([^"]+)"', journey)
        assert csrf is not None
        answer = await client.post(
            f"/documents/{event_id}/reveal", data={"csrf": csrf.group(1), "reason": "ticket 77"}
        )
        page = await answer.text()
    assert answer.status == 200, page
    assert answer.headers["Cache-Control"] == "no-store"
    box = page.split('data-testid="revealed-identity"')[1].split("</dl>")[0]
    assert f'<dt>INS</dt><dd data-testid="identity-0">{SARAH_LOU.ins}</dd>' in box
    assert SARAH_LOU.family in box

    [audit] = await _console_audits(stack, event_id)
    assert audit["operator"] == "ivy"
    assert audit["outcome"] == OUTCOME
    assert "reason: ticket 77" in audit["detail"]
    assert SARAH_LOU.ins not in str(audit)
    assert SARAH_LOU.family not in str(audit)
