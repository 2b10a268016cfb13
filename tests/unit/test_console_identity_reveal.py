"""A document's patient identity revealed on its journey page (ops.console.identity_reveal)
over a real SQLite index: audited before anything is shown, refused when the audit cannot
be written, the reason checked, the roles, the keyring, the retention. The broker is absent:
:class:`RevealBus` stands in for the one Kafka read (``ConsoleBus.submitted``, a real
``DocumentSubmitted`` record sealed by the real keyring) and counts the audit writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ops.console.accounts import LocalAuthenticator, Operator, add_account
from ops.console.app import Console, make_app
from ops.console.bus import ConsoleBus
from ops.console.identity_reveal import (
    OUTCOME,
    identity_fields,
    may_reveal,
    past_retention,
    since_ms,
)
from ops.console.sessions import SessionStore, SignInLimiter
from ops.demo.samples import LAB, SARAH_LOU, sample
from ops.index.rows import rows_of_all
from ops.index.store import IndexStore
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Record
from relais.keyring import Keyring
from tests.unit.index_samples import reads, received

KEYRING = Keyring.generate("k-reveal")
PASSWORD = "correct horse battery"
NOW = datetime.now(UTC)
Client = TestClient[web.Request, web.Application]


def _document() -> Record:
    [record] = submissions(
        parse_message(sample(LAB, SARAH_LOU, 5)), sector="LAB", keyring=KEYRING, now=NOW
    )
    return record


DOCUMENT = _document()
EVENT = str(DOCUMENT["event_id"])
PATIENT = str(DOCUMENT["patient"]["patient_key"])


class RevealBus(ConsoleBus):
    """The console's bus, its one read answering the document's record (the seam), its
    audit writes recorded (and failing when ``fail``)."""

    done: list[str]
    audits: list[Record]
    fail: bool = False

    async def audit(self, record: Record) -> None:
        self.done.append("audit")
        self.audits.append(record)
        if self.fail:
            raise ConnectionError("no broker")

    async def submitted(
        self, patient_key: str, event_id: str, since_ms: int, *, limit: int, timeout_s: float
    ) -> Record | None:
        self.done.append("read")
        assert (patient_key, event_id) == (PATIENT, EVENT)
        return DOCUMENT


def _console(tmp_path: Path, *, keyring: Keyring | None = KEYRING) -> Console:
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = IndexStore(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    store.create()
    records: list[tuple[str, object]] = [
        ("AuditEvent", received(EVENT, "1.2.250.9", sender="LABO", msh10="M9", when=NOW)),
        ("AuditEvent", received("ev-old", "1.2.250.8", sender="LABO", msh10="M8",
                                when=NOW - timedelta(days=8))),
    ]  # fmt: skip
    store.apply(rows_of_all(reads(records, key=PATIENT.encode())), {})
    accounts = tmp_path / "accounts.json"
    add_account(accounts, "alice", PASSWORD, ["operator"])
    add_account(accounts, "ivy", PASSWORD, ["identitovigilance"])
    add_account(accounts, "rita", PASSWORD, [])  # reads only
    bus = RevealBus("127.0.0.1:1", "t", keyring)
    bus.done, bus.audits = [], []
    return Console(
        index=store,
        authenticator=LocalAuthenticator(accounts),
        bus=bus,
        sessions=SessionStore(session_s=3600),
        keyring_problem=None if keyring else "no keyring: set RELAIS_KEYRING_FILE to a file",
        failure_delay_s=0,
        limiter=SignInLimiter(),
    )


async def _sign_in(client: Client, name: str) -> str:
    response = await client.post(
        "/sign-in", data={"name": name, "password": PASSWORD, "next": "/"}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    found = re.search(r'name="csrf" value="([^"]+)"', await (await client.get("/")).text())
    assert found is not None
    return found.group(1)


async def _reveal(console: Console, name: str, reason: str, document: str = EVENT) -> Any:
    async with TestClient(TestServer(make_app(console))) as client:
        csrf = await _sign_in(client, name)
        journey = await (await client.get(f"/documents/{document}")).text()
        answer = await client.post(
            f"/documents/{document}/reveal", data={"csrf": csrf, "reason": reason}
        )
        return journey, answer.status, answer.headers, await answer.text()


def _bus(console: Console) -> RevealBus:
    assert isinstance(console.bus, RevealBus)
    return console.bus


async def test_the_identity_is_shown_only_after_its_audit_event_is_written(
    tmp_path: Path,
) -> None:
    for name in ("alice", "ivy"):  # either role may
        console = _console(tmp_path / name)
        journey, status, headers, text = await _reveal(console, name, "ticket 4411")
        assert 'data-testid="reveal-identity-form"' in journey
        assert SARAH_LOU.ins not in journey
        assert status == 200, text
        assert headers["Cache-Control"] == "no-store"
        box = text.split('data-testid="revealed-identity"')[1].split("</dl>")[0]
        assert SARAH_LOU.ins in box
        assert SARAH_LOU.family in box
        bus = _bus(console)
        assert bus.done == ["audit", "read"]  # audited first, then read and shown
        [audit] = bus.audits
        assert (audit["component"], audit["operator"], audit["event_id"]) == (
            "console",
            name,
            EVENT,
        )
        assert audit["outcome"] == OUTCOME
        assert EVENT in audit["detail"]
        assert "ticket 4411" in audit["detail"]
        assert SARAH_LOU.ins not in str(audit)
        assert SARAH_LOU.family not in str(audit)


async def test_a_reveal_whose_audit_cannot_be_written_shows_nothing(tmp_path: Path) -> None:
    console = _console(tmp_path)
    _bus(console).fail = True
    _, status, _, text = await _reveal(console, "ivy", "ticket 4411")
    assert status == 409
    assert "reveal refused: the audit event could not be written (ConnectionError)" in text
    assert "nothing was shown" in text
    assert SARAH_LOU.ins not in text
    assert _bus(console).done == ["audit"]  # never read


async def test_a_reason_with_patient_data_or_none_is_refused_before_any_audit(
    tmp_path: Path,
) -> None:
    for reason in ("NIR 2 85 03 75 123 456", "born 12 mars 1985", "   "):
        console = _console(tmp_path / str(len(reason)))
        _, status, _, text = await _reveal(console, "alice", reason)
        assert status == 409, reason
        assert "reason:" in text
        assert _bus(console).done == []


async def test_an_account_without_a_role_sees_no_form_and_is_refused(tmp_path: Path) -> None:
    console = _console(tmp_path)
    journey, status, _, text = await _reveal(console, "rita", "ticket 4411")
    assert 'data-testid="reveal-identity-form"' not in journey
    assert status == 403
    assert "lacks the role operator or identitovigilance" in text
    assert _bus(console).done == []


async def test_without_the_keyring_or_past_retention_one_line_and_nothing_audited(
    tmp_path: Path,
) -> None:
    console = _console(tmp_path / "nokeys", keyring=None)
    _, status, _, text = await _reveal(console, "ivy", "ticket 4411")
    assert status == 409
    assert "needs the keyring: no keyring: set RELAIS_KEYRING_FILE" in text
    assert _bus(console).done == []
    console = _console(tmp_path / "old")
    _, status, _, text = await _reveal(console, "ivy", "ticket 4411", document="ev-old")
    assert status == 409
    assert "past the retention of documents.submitted.v1 (7 days)" in text
    assert _bus(console).done == []


def test_the_pure_parts() -> None:
    assert may_reveal(Operator("a", ("operator",)))
    assert may_reveal(Operator("i", ("identitovigilance",)))
    assert not may_reveal(Operator("r", ()))
    assert past_retention(NOW - timedelta(days=7, seconds=1), NOW)
    assert not past_retention(NOW - timedelta(days=6), NOW)
    assert since_ms(NOW) == int(NOW.timestamp() * 1000) - 5000
    assert since_ms(NOW.replace(tzinfo=None)) == since_ms(NOW)  # the index keeps UTC
    fields = identity_fields({"ins": "1", "given_names": ["ANNE", "MARIE"], "sex": "F"})
    assert [label for label, _ in fields] == [
        "INS",
        "Birth name",
        "Given names",
        "Birth date",
        "Sex",
        "Birthplace code",
    ]
    assert dict(fields)["Given names"] == "ANNE MARIE"
    assert dict(fields)["Birth name"] == ""
