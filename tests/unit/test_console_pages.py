"""The console's pages over a real SQLite document index (ops.console.app, .pages, .letters):
sign-in, CSRF, search, journeys, stats, dead letters, and no patient identity shown."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ops.console.accounts import LocalAuthenticator, add_account
from ops.console.app import Console, make_app
from ops.console.bus import ConsoleBus
from ops.console.sessions import SessionStore, SignInLimiter
from ops.index.rows import rows_of_all
from ops.index.store import IndexStore
from relais.audit import audit_event
from tests.unit.index_samples import at, journeys, reads

PASSWORD = "correct horse battery"
PATIENT = "9f" * 32  # a pseudonymised key: 64 hex characters
EXPLANATION = "release policy rule lab-result: the patient sees it after 7 days"
Client = TestClient[web.Request, web.Application]


def _index(path: Path) -> IndexStore:
    store = IndexStore(f"sqlite:///{path}")
    store.create()
    records = [r for journey in journeys().values() for r in journey]
    records.append(
        (
            "AuditEvent",
            audit_event(
                event_id="ev-ok",
                component="route",
                action="ROUTED",
                outcome="DMP",
                now=at(3),
                document_unique_id="1.2.250.0",
                detail=f"{EXPLANATION}\nDMP: the document type is fed to the DMP",
                # a second ROUTED audit (another component id) carries the explanation
            )
            | {"audit_id": "routed-explained"},
        )
    )
    store.apply(rows_of_all(reads(records, key=PATIENT.encode())), {})
    return store


def _console(tmp_path: Path, *, keyring_problem: str | None = None) -> Console:
    accounts = tmp_path / "accounts.json"
    add_account(accounts, "alice", PASSWORD, ["operator"])
    add_account(accounts, "ivy", PASSWORD, ["identitovigilance"])
    return Console(
        index=_index(tmp_path / "index.sqlite3"),
        authenticator=LocalAuthenticator(accounts),
        bus=ConsoleBus("127.0.0.1:1", "t", None),  # no broker: these pages never ask it
        sessions=SessionStore(session_s=3600),
        keyring_problem=keyring_problem,
        failure_delay_s=0,
        limiter=SignInLimiter(),
    )


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    problem = "no keyring: set RELAIS_KEYRING_FILE to a keyring file"
    async with TestClient(TestServer(make_app(_console(tmp_path, keyring_problem=problem)))) as c:
        yield c


async def _sign_in(client: Client, name: str = "alice") -> str:
    """Sign in; the CSRF token of the session."""
    response = await client.post(
        "/sign-in", data={"name": name, "password": PASSWORD, "next": "/"}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    page = await (await client.get("/")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def test_every_page_but_sign_in_and_healthz_needs_a_session(client: Client) -> None:
    health = await client.get("/healthz")
    assert health.status == 200
    assert health.headers["X-Frame-Options"] == "DENY"
    for path in ("/", "/senders", "/dead-letters", "/holds", "/documents/ev-ok"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"].startswith("/sign-in")
    redirected = await client.get("/documents/ev-ok", allow_redirects=False)
    assert unquote(redirected.headers["Location"]) == "/sign-in?next=/documents/ev-ok"
    posted = await client.post("/dead-letters/dl-dead-0001/replay", allow_redirects=False)
    assert posted.status == 401
    sign_in = await client.get("/sign-in")
    assert sign_in.status == 200
    assert "default-src 'self'" in sign_in.headers["Content-Security-Policy"]
    assert sign_in.headers["Cache-Control"] == "no-store"
    assert "<script" not in await sign_in.text()


async def test_a_wrong_password_is_refused_and_five_lock_the_name(client: Client) -> None:
    for _ in range(5):
        wrong = await client.post("/sign-in", data={"name": "alice", "password": "nope nope nope"})
        assert wrong.status == 401
        assert "wrong name or password" in await wrong.text()
    locked = await client.post("/sign-in", data={"name": "alice", "password": PASSWORD})
    assert locked.status == 429
    assert "too many failed sign-ins for alice" in await locked.text()
    assert (await client.get("/", allow_redirects=False)).status == 303  # not signed in


async def test_sign_in_goes_where_it_was_asked_on_this_site_only(client: Client) -> None:
    form = {"name": "alice", "password": PASSWORD, "next": "/senders"}
    response = await client.post("/sign-in", data=form, allow_redirects=False)
    assert response.headers["Location"] == "/senders"
    for elsewhere in ("//evil.example/", "/\\evil.example/", "https://evil.example/"):
        form["next"] = elsewhere
        response = await client.post("/sign-in", data=form, allow_redirects=False)
        assert response.headers["Location"] == "/"


async def test_a_form_without_the_sessions_csrf_token_is_refused(client: Client) -> None:
    csrf = await _sign_in(client)
    for data in ({"reason": "checking"}, {"reason": "checking", "csrf": "forged"}):
        refused = await client.post("/dead-letters/dl-dead-0001/reveal", data=data)
        assert refused.status == 403
        assert "CSRF" in await refused.text()
    foreign = await client.post(
        "/dead-letters/dl-dead-0001/reveal",
        data={"reason": "checking", "csrf": csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status == 403
    # with the token the form is heard, and refused for what it says
    no_reason = await client.post("/dead-letters/dl-dead-0001/reveal", data={"csrf": csrf})
    assert no_reason.status == 409
    assert "reason: say why" in await no_reason.text()
    no_key = await client.post(
        "/dead-letters/dl-dead-0001/reveal", data={"csrf": csrf, "reason": "ticket 4411"}
    )
    assert no_key.status == 409
    assert "RELAIS_KEYRING_FILE" in await no_key.text()


async def test_actions_need_their_role(client: Client) -> None:
    csrf = await _sign_in(client, "alice")  # operator, not identitovigilance
    refused = await client.post("/holds/abcdef0123456789/release", data={"csrf": csrf})
    assert refused.status == 403
    assert "lacks the role identitovigilance" in await refused.text()


async def test_search_by_msh10_finds_the_document_and_links_its_journey(client: Client) -> None:
    await _sign_in(client)
    page = await (await client.get("/", params={"msh10": "M0"})).text()
    rows = re.findall(r'data-testid="result-row" data-event-id="([^"]+)"', page)
    assert rows == ["ev-ok"]
    assert 'href="/documents/ev-ok"' in page
    assert PATIENT[:16] in page
    assert PATIENT not in page
    every = await (await client.get("/")).text()
    assert len(re.findall(r'data-testid="result-row"', every)) == 5
    held = await (await client.get("/", params={"status": "held"})).text()
    assert re.findall(r'data-event-id="([^"]+)"', held) == ["ev-held"]
    bad = await client.get("/", params={"patient": "9f9f", "since": "yesterday"})
    text = await bad.text()
    assert "8 characters at least" in text
    assert "received since" in text


async def test_the_journey_lists_its_steps_in_order_and_the_release_explanation(
    client: Client,
) -> None:
    await _sign_in(client)
    page = await (await client.get("/documents/ev-ok")).text()
    actions = re.findall(
        r'data-testid="journey-step" data-branch="[^"]+" data-action="(\w+)"', page
    )
    assert actions == [
        "RECEIVED",
        "IDENTITY_DECIDED",
        "TRANSCODED",
        "ROUTED",
        "ROUTED",
        "DELIVERED",
        "ACKNOWLEDGED",
    ]
    indexes = re.findall(r'data-index="(\d+)"', page)
    assert indexes == [str(i) for i in range(len(actions))]
    box = page.split('data-testid="release-explanation"')[1].split("</section>")[0]
    assert EXPLANATION in box
    assert re.search(r'data-destination="DMP"><strong>DMP</strong>: DELIVERED', page)
    assert 'data-branch="DMP"' in page
    assert PATIENT not in page


async def test_a_dead_letter_in_a_journey_links_its_page_and_a_replay_shows_who(
    client: Client,
) -> None:
    await _sign_in(client)
    dead = await (await client.get("/documents/ev-dead")).text()
    assert 'href="/dead-letters/dl-dead-0001"' in dead
    replayed = await (await client.get("/documents/ev-replayed")).text()
    assert 'data-testid="step-operator">by alice<' in replayed
    letter = await (await client.get("/dead-letters/dl-repl-0002")).text()
    assert 'data-testid="replay"' in letter
    assert "by alice" in letter
    assert 'data-testid="replay-button"' in letter
    assert 'data-testid="reveal-button"' in letter
    assert "RELAIS_KEYRING_FILE" in letter  # says at once why replay and reveal cannot work
    unknown = await client.get("/documents/nothing-like-it")
    assert unknown.status == 404


async def test_the_dead_letters_list_filters(client: Client) -> None:
    await _sign_in(client)
    every = await (await client.get("/dead-letters")).text()
    ids = re.findall(r'data-testid="letter-row" data-letter-id="([^"]+)"', every)
    assert set(ids) == {"dl-dead-0001", "dl-repl-0002", "dl-door-0003"}
    fresh = await (await client.get("/dead-letters", params={"unreplayed": "on"})).text()
    assert "dl-repl-0002" not in fresh
    assert "dl-dead-0001" in fresh
    door = await (await client.get("/dead-letters", params={"stage": "door"})).text()
    assert re.findall(r'data-letter-id="([^"]+)"', door) == ["dl-door-0003"]


async def test_senders_and_destinations_count_the_window(client: Client) -> None:
    await _sign_in(client)
    senders = await (await client.get("/senders", params={"since": "2026-03-01"})).text()
    assert set(re.findall(r'data-testid="sender-row" data-sender="([^"]+)"', senders)) >= {
        "LABO",
        "CHU",
    }
    assert "DMPERR-42" in senders or "REJECTED" in senders
    none = await (await client.get("/senders")).text()  # last 24 h: the samples are older
    assert 'data-testid="sender-row"' not in none
    destinations = await (await client.get("/destinations", params={"since": "2026-03-01"})).text()
    assert 'data-destination="DMP"' in destinations


async def test_sign_out_ends_the_session(client: Client) -> None:
    csrf = await _sign_in(client)
    out = await client.post("/sign-out", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    assert (await client.get("/", allow_redirects=False)).status == 303
