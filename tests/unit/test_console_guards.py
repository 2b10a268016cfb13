"""The console's guards against a stale index, guessed passwords, floods, foreign forms and
failures shown with their internals (ops.console.app, .signin, .bus, .sessions), over a
real SQLite index. The broker is absent (127.0.0.1:1): where a page must read a dead
letter, :class:`LetterAt` stands in for the one Kafka read (``ConsoleBus.record_at``), a
real ``DeadLetter`` record, encoded by the real codec; :class:`Identity` for the identity
stage's reads and commands (real ``PatientState``); a broker would make these slow."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ops.console.accounts import add_account, load_accounts, remove_account, save_accounts
from ops.console.app import Console, local_path, make_app
from ops.console.bus import STALE, ConsoleBus
from ops.console.errors import Refused
from ops.console.sessions import SignInLimiter
from ops.index.model import LetterRow, Search
from ops.index.store import IndexStore, IndexStoreError
from relais.audit import audit_event
from relais.contracts import Codec
from relais.deadletter import Failure, Origin, dead_letter
from relais.keyring import Keyring
from streams.identity.state import Held, PatientState
from tests.unit.index_samples import letter
from tests.unit.test_console_pages import PASSWORD, PATIENT, _console, _sign_in

KEYRING = Keyring.generate("k-console")
NOW = datetime(2026, 3, 2, tzinfo=UTC)


def _letter(dead_letter_id: str) -> bytes:
    record = dead_letter(
        KEYRING,
        stage="transcode",
        failure=Failure("cda-not-well-formed", "the CDA is not well-formed XML"),
        origin=Origin("t.documents.qualified.v1", 3, 17, "ev-dead"),
        original=b"<ClinicalDocument/>",
        now=NOW,
        dead_letter_id=dead_letter_id,
    )
    return Codec().encode("DeadLetter", record)


class LetterAt(ConsoleBus):
    """The console's bus, its dead-letter read answering ``found`` (the seam), its audit
    writes counted; the rest (replays, identity) goes to the absent broker."""

    found: bytes = b""
    audits: list[Any]

    async def record_at(self, row: LetterRow, *, timeout_s: float) -> tuple[bytes, bytes | None]:
        return self.found, PATIENT.encode()

    async def audit(self, record: Any) -> None:
        self.audits.append(record)
        raise ConnectionError("no broker")


def _with_letter(tmp_path: Path, found: bytes) -> Console:
    console = _console(tmp_path)
    bus = LetterAt("127.0.0.1:1", "t", KEYRING)
    bus.found, bus.audits = found, []
    console.bus = bus
    return console


async def test_a_letter_the_index_misplaces_is_refused_before_any_audit(tmp_path: Path) -> None:
    console = _with_letter(tmp_path, _letter("dl-someone-else"))
    assert isinstance(console.bus, LetterAt)
    async with TestClient(TestServer(make_app(console))) as client:
        csrf = await _sign_in(client)
        for action in ("reveal", "replay"):
            refused = await client.post(
                f"/dead-letters/dl-dead-0001/{action}", data={"csrf": csrf, "reason": "ticket 4411"}
            )
            text = await refused.text()
            assert refused.status == 409, text
            assert "the index is stale: relais index rebuild (RELAIS_INDEX_URL)" in text
            assert 'data-testid="revealed-original"' not in text
    assert console.bus.audits == []  # nothing audited, nothing sent


def test_only_the_letter_the_index_names_is_trusted() -> None:
    bus = ConsoleBus("127.0.0.1:1", "t", KEYRING)
    row = LetterRow(letter("dl-dead-0001", "ev-dead", "1.2.250.3", NOW), 0, 7, 0)
    assert bus.view_of(row, _letter("dl-dead-0001"), None).dead_letter_id == "dl-dead-0001"
    audit = audit_event(
        event_id="ev-dead", component="x", action="OTHER", outcome="o", now=NOW, detail=None
    )
    for wrong in (_letter("dl-other"), Codec().encode("AuditEvent", audit), b"junk"):
        with pytest.raises(Refused) as refused:
            bus.view_of(row, wrong, None)
        assert str(refused.value) == STALE


async def test_a_reveal_whose_audit_cannot_be_written_shows_nothing(tmp_path: Path) -> None:
    console = _with_letter(tmp_path, _letter("dl-dead-0001"))
    assert isinstance(console.bus, LetterAt)
    async with TestClient(TestServer(make_app(console))) as client:
        csrf = await _sign_in(client)
        refused = await client.post(
            "/dead-letters/dl-dead-0001/reveal", data={"csrf": csrf, "reason": "ticket 4411"}
        )
        text = await refused.text()
    assert refused.status == 409
    assert "reveal refused: the audit event could not be written" in text
    assert "nothing was shown" in text
    assert 'data-testid="revealed-original"' not in text
    assert len(console.bus.audits) == 1  # it was tried, once, after the letter was checked


async def test_parallel_guesses_count_before_the_password_is_checked(tmp_path: Path) -> None:
    async with TestClient(TestServer(make_app(_console(tmp_path)))) as client:
        form = {"name": "alice", "password": "nope nope nope"}
        answers = await asyncio.gather(*(client.post("/sign-in", data=form) for _ in range(20)))
        statuses = sorted(a.status for a in answers)
    assert statuses.count(401) == 5
    assert statuses.count(429) == 15


async def test_names_no_account_could_have_cost_nothing_and_are_not_kept(tmp_path: Path) -> None:
    console = _console(tmp_path)
    async with TestClient(TestServer(make_app(console))) as client:
        for name in ("x" * 65, "é" * 10, "a b", "alice/bob"):
            wrong = await client.post("/sign-in", data={"name": name, "password": "guess guess"})
            assert wrong.status == 401
            assert "wrong name or password" in await wrong.text()
        assert len(console.limiter) == 0
        await _sign_in(client)
        assert console.limiter.refused("alice", "127.0.0.1") is None


async def test_failures_through_one_address_lock_out_no_name_that_did_not_fail(
    tmp_path: Path,
) -> None:
    console = _console(tmp_path)
    console.limiter = SignInLimiter(per_client=3)  # behind a proxy: everyone is one address
    async with TestClient(TestServer(make_app(console))) as client:
        for name in ("bob", "carol", "ivy"):
            wrong = await client.post("/sign-in", data={"name": name, "password": "guess guess"})
            assert wrong.status == 401
        again = await client.post("/sign-in", data={"name": "ivy", "password": PASSWORD})
        text = await again.text()
        assert again.status == 429  # ivy failed lately: the address's limit holds for her
        assert "too many failed sign-ins from this network address" in text
        assert "too many failed sign-ins for ivy" not in text
        await _sign_in(client, "alice")  # alice never failed: she signs in all the same


async def test_failures_say_what_to_fix_and_never_show_internals(tmp_path: Path) -> None:
    console = _console(tmp_path)
    index = console.index
    assert isinstance(index, IndexStore)

    def broken(search: Search) -> Any:
        if search.message_control_id == "down":
            raise IndexStoreError("the index cannot be reached: db.example:5432 refused")
        raise RuntimeError(f"SELECT * FROM documents WHERE patient_key = '{PATIENT}'")

    index.search = broken  # type: ignore[method-assign]
    async with TestClient(TestServer(make_app(console))) as client:
        await _sign_in(client)
        down = await client.get("/", params={"msh10": "down"})
        assert down.status == 503
        assert "RELAIS_INDEX_URL" in await down.text()
        failed = await client.get("/", params={"msh10": "other"})
        text = await failed.text()
        assert failed.status == 500
        assert re.search(r"incident [0-9a-f]{12}", text)
        assert PATIENT[:16] not in text
        assert "SELECT" not in text
        holds = await client.get("/holds")  # the broker is not there
        assert holds.status == 503
        assert "RELAIS_BOOTSTRAP_SERVERS" in await holds.text()


async def test_control_characters_are_refused_as_form_errors(tmp_path: Path) -> None:
    async with TestClient(TestServer(make_app(_console(tmp_path)))) as client:
        signing = await client.post("/sign-in", data={"name": "ali\x00ce", "password": "x"})
        assert signing.status == 400
        csrf = await _sign_in(client)
        for path, params in (("/", {"msh10": "M0\x00"}), ("/documents/ev%01ok", {})):
            answer = await client.get(path, params=params)
            assert answer.status == 400, path
            assert "control character" in await answer.text()
        posted = await client.post(
            "/dead-letters/dl-dead-0001/reveal", data={"csrf": csrf, "reason": "ticket\x00 4411"}
        )
        assert posted.status == 400


async def test_an_account_removed_made_again_or_given_other_roles_counts_at_once(
    tmp_path: Path,
) -> None:
    console = _console(tmp_path)
    accounts = tmp_path / "accounts.json"
    async with TestClient(TestServer(make_app(console))) as client:
        csrf = await _sign_in(client, "alice")
        alice = load_accounts(accounts)["alice"]  # other roles, the same password (by hand)
        save_accounts(accounts, {"alice": replace(alice, roles=("identitovigilance",))})
        refused = await client.post("/dead-letters/dl-dead-0001/replay", data={"csrf": csrf})
        assert refused.status == 403
        assert "lacks the role operator" in await refused.text()
        remove_account(accounts, "alice")  # a password reset: the same name and roles
        add_account(accounts, "alice", PASSWORD, ["identitovigilance"])
        reset = await client.get("/", allow_redirects=False)
        assert reset.status == 303  # a stolen session does not survive it
        assert reset.headers["Location"].startswith("/sign-in")
        assert (await client.get("/", allow_redirects=False)).status == 303  # ended for good
        await _sign_in(client, "alice")
        assert (await client.get("/", allow_redirects=False)).status == 200
        remove_account(accounts, "alice")
        gone = await client.get("/", allow_redirects=False)
        assert gone.status == 303
        assert gone.headers["Location"].startswith("/sign-in")
        (tmp_path / "accounts.json").write_text("{not json")
        broken = await client.post("/sign-in", data={"name": "ivy", "password": PASSWORD})
        text = await broken.text()
        assert broken.status == 503
        assert "RELAIS_CONSOLE_ACCOUNTS" in text
        assert str(tmp_path) not in text


async def test_forms_come_from_the_consoles_public_origin(tmp_path: Path) -> None:
    console = _console(tmp_path)
    async with TestClient(TestServer(make_app(console))) as client:
        own = f"http://{client.host}:{client.port}"
        form = {"name": "alice", "password": PASSWORD}
        for origin, status in ((f"https://{client.host}:{client.port}", 403), (own, 303)):
            answer = await client.post(
                "/sign-in", data=form, headers={"Origin": origin}, allow_redirects=False
            )
            assert answer.status == status, origin
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            foreign = await client.post("/sign-in", data=form, headers=headers)
            assert foreign.status == 403, headers
        # its own pages ask for the real Origin on its own forms; a stricter policy (a
        # proxy's) makes browsers send "null": accepted when Sec-Fetch-Site says same-origin
        assert answer.headers["Referrer-Policy"] == "same-origin"
        own_form = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        answer = await client.post("/sign-in", data=form, headers=own_form, allow_redirects=False)
        assert answer.status == 303
        console.origin = "https://console.chu.example"  # behind a TLS proxy
        behind = await client.post(
            "/sign-in",
            data=form,
            headers={"Origin": "https://console.chu.example"},
            allow_redirects=False,
        )
        assert behind.status == 303
        direct = await client.post(
            "/sign-in", data=form, headers={"Origin": own}, allow_redirects=False
        )
        assert direct.status == 403
        assert "RELAIS_CONSOLE_ORIGIN" in await direct.text()


def test_after_sign_in_only_a_path_of_this_site() -> None:
    for fine in ("/", "/senders", "/documents/ev-ok?x=1", "/a//b"):
        assert local_path(fine) == fine
    for elsewhere in (
        "//evil.example/",
        "/\\evil.example/",
        "/a\\b",
        "/\t/evil.example",
        "/\r\nSet-Cookie: x=1",
        "https://evil.example/",
        "evil",
        "",
    ):
        assert local_path(elsewhere) == "/", elsewhere


class CountedIndex(IndexStore):
    """The real index, its totals' queries counted."""

    states = 0

    def state(self) -> Any:
        CountedIndex.states += 1
        return super().state()


async def test_the_index_totals_are_asked_once_in_a_while(tmp_path: Path) -> None:
    console = _console(tmp_path)
    index = CountedIndex(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    console.index = index
    async with TestClient(TestServer(make_app(console))) as client:
        await _sign_in(client)
        for _ in range(3):
            page = await (await client.get("/")).text()
            assert 'data-testid="index-state"' in page
    assert CountedIndex.states == 1


async def test_failed_sign_ins_are_logged_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with TestClient(TestServer(make_app(_console(tmp_path)))) as client:
        for _ in range(6):
            await client.post("/sign-in", data={"name": "alice", "password": "hunter2 hunter2"})
    lines = [r.getMessage() for r in caplog.records if r.name == "ops.console.signin"]
    assert "console: sign-in of alice from 127.0.0.1 failed" in lines
    assert any("refused for" in line for line in lines)  # the lockout
    assert not any("hunter2" in r.getMessage() for r in caplog.records)


class Identity:
    """The identity stage's side of the bus (the seam): one blocked patient holding one
    document; what is sent is written down in ``done``, in order."""

    def __init__(self, done: list[str]) -> None:
        self.done = done

    async def changelogs(self) -> list[tuple[str, int]]:
        return [("t.identity-changelog", 0)]

    async def states(self) -> dict[str, PatientState]:
        held = Held(b"", "ev-h1", "ins-unqualified", 1_772_438_400_000, "LABO")
        return {PATIENT: PatientState(held=(held,), blocked="traits-mismatch")}

    async def alerts(self) -> list[Any]:
        return []

    async def send(self, record_type: str, record: Any, *, key: str) -> None:
        self.done.append(f"sent {record['action']}")


class HoldsBus(ConsoleBus):
    done: list[str]

    @property
    def identity(self) -> Any:
        return Identity(self.done)

    async def audit(self, record: Any) -> None:
        self.done.append(f"audit {record['outcome']}")
        raise ConnectionError("no broker")


async def test_identity_decisions_are_sent_then_audited_and_traits_need_their_audit(
    tmp_path: Path,
) -> None:
    console = _console(tmp_path)
    bus = HoldsBus("127.0.0.1:1", "t", KEYRING)
    bus.done = []
    console.bus = bus
    async with TestClient(TestServer(make_app(console))) as client:
        csrf = await _sign_in(client, "ivy")
        unblocked = await client.post(f"/holds/{PATIENT[:16]}/unblock", data={"csrf": csrf})
        text = await unblocked.text()
        assert unblocked.status == 409
        assert "UNBLOCK was sent" in text
        assert bus.done == ["sent UNBLOCK", "audit identity-command:unblock"]
        revealed = await client.post(
            f"/holds/{PATIENT[:16]}/reveal", data={"csrf": csrf, "reason": "ticket 4411"}
        )
        text = await revealed.text()
    assert revealed.status == 409
    assert "reveal refused: the audit event could not be written" in text
    assert "nothing was shown" in text
    assert 'data-testid="trait"' not in text
