"""The console's local accounts, sessions and sign-in limit (ops.console.accounts, .sessions)
and ``relais console account``."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import main
from ops.console.accounts import (
    LocalAuthenticator,
    Operator,
    add_account,
    authenticator_for,
    load_accounts,
    new_account,
    password_matches,
    remove_account,
)
from ops.console.errors import AccountError
from ops.console.sessions import PasswordChecks, Refusal, SessionStore, SignInLimiter

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_password_is_kept_as_a_salted_scrypt_hash_never_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    add_account(path, "alice", PASSWORD, ["operator"])
    add_account(path, "bob", PASSWORD, ["operator", "identitovigilance"])
    text = path.read_text()
    assert PASSWORD not in text
    accounts = load_accounts(path)
    assert accounts["alice"].salt != accounts["bob"].salt
    assert accounts["alice"].hash != accounts["bob"].hash  # same password, other salt
    assert password_matches(accounts["alice"], PASSWORD)
    assert not password_matches(accounts["alice"], PASSWORD + "!")
    assert accounts["bob"].roles == ("operator", "identitovigilance")
    assert json.loads(text)["accounts"][0]["n"] == 2**14


def test_the_accounts_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "accounts.json"
    add_account(path, "alice", PASSWORD, ["operator"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    remove_account(path, "alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_accounts(path) == {}


def test_bad_names_short_passwords_unknown_roles_and_duplicates_are_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(AccountError, match="account name"):
        new_account("al ice", PASSWORD, ["operator"])
    with pytest.raises(AccountError, match="12 characters"):
        new_account("alice", "short", ["operator"])
    with pytest.raises(AccountError, match="unknown role 'admin'"):
        new_account("alice", PASSWORD, ["admin"])
    path = tmp_path / "accounts.json"
    add_account(path, "alice", PASSWORD, ["operator"])
    with pytest.raises(AccountError, match="exists"):
        add_account(path, "alice", PASSWORD, ["operator"])
    with pytest.raises(AccountError, match="no account carol"):
        remove_account(path, "carol")


def test_a_broken_accounts_file_names_its_setting(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text("{not json")
    with pytest.raises(AccountError, match="RELAIS_CONSOLE_ACCOUNTS"):
        load_accounts(path)


def test_the_local_authenticator_signs_in_the_right_password_only(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    add_account(path, "alice", PASSWORD, ["identitovigilance"])
    auth = LocalAuthenticator(path)
    fingerprint = load_accounts(path)["alice"].fingerprint()
    assert auth.sign_in({"name": "alice", "password": PASSWORD}) == Operator(
        "alice", ("identitovigilance",), fingerprint
    )
    assert auth.sign_in({"name": "alice", "password": "wrong password!!"}) is None
    assert auth.sign_in({"name": "mallory", "password": PASSWORD}) is None
    assert auth.sign_in({}) is None
    remove_account(path, "alice")  # read at each sign-in: a removal counts at once
    assert auth.sign_in({"name": "alice", "password": PASSWORD}) is None


def test_five_failures_in_a_minute_refuse_the_name_until_the_window_moves() -> None:
    clock = Clock()
    limiter = SignInLimiter(clock=clock)
    for _ in range(4):
        limiter.failed("alice")
    assert limiter.refused("alice") is None
    limiter.failed("alice")
    assert limiter.refused("alice") == Refusal("name", 60.0)
    assert limiter.refused("bob") is None  # per name
    clock.now += 30
    assert limiter.refused("alice") == Refusal("name", 30.0)
    assert Refusal("name", 30.0).message("alice") == (
        "too many failed sign-ins for alice: try again in 30 s"
    )
    clock.now += 30.5
    assert limiter.refused("alice") is None
    for _ in range(5):
        limiter.failed("alice")
    limiter.succeeded("alice")  # a good password forgets the failures
    assert limiter.refused("alice") is None


def test_sessions_expire_and_end_and_check_their_csrf_token() -> None:
    clock = Clock()
    store = SessionStore(session_s=100, clock=clock)
    session = store.begin(Operator("alice", ("operator",)))
    other = store.begin(Operator("bob", ()))
    assert len(session.token) >= 43
    assert session.token != other.token
    assert store.get(session.token) == session
    assert store.get("forged") is None
    assert store.get(None) is None
    assert session.csrf_matches(session.csrf)
    assert not session.csrf_matches(other.csrf)
    assert not session.csrf_matches(None)
    store.end(other.token)
    assert store.get(other.token) is None
    clock.now += 100
    assert store.get(session.token) is None


def test_a_password_reset_ends_the_sessions_of_the_account_before_it(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    add_account(path, "alice", PASSWORD, ["operator"])
    auth, store = LocalAuthenticator(path), SessionStore(session_s=3600)
    signed_in = auth.sign_in({"name": "alice", "password": PASSWORD})
    assert signed_in is not None
    session = store.begin(signed_in)
    assert store.renew(session, auth.current(session.operator)) == session  # unchanged
    account = load_accounts(path)["alice"]
    assert signed_in.fingerprint == account.fingerprint()
    assert account.hash not in signed_in.fingerprint
    assert account.salt not in repr(signed_in)
    remove_account(path, "alice")
    add_account(path, "alice", PASSWORD + "!", ["operator"])  # same name, same roles
    now = auth.current(session.operator)
    assert now is not None
    assert now == Operator("alice", ("operator",), load_accounts(path)["alice"].fingerprint())
    assert store.renew(session, now) is None
    assert store.get(session.token) is None  # ended, not merely refused once
    again = store.begin(now)
    promoted = Operator("alice", ("operator", "identitovigilance"), now.fingerprint)
    renewed = store.renew(again, promoted)  # the same account, other roles: kept, updated
    assert renewed is not None
    assert renewed.operator == promoted
    assert store.get(again.token) == renewed


def test_relais_console_account_add_list_remove(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    env = {"RELAIS_CONSOLE_ACCOUNTS": str(path), "RELAIS_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    added = runner.invoke(
        main,
        ["console", "account", "add", "alice", "--role", "identitovigilance", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
    )
    assert added.exit_code == 0, added.output
    assert "account alice (identitovigilance)" in added.output
    assert LocalAuthenticator(path).sign_in({"name": "alice", "password": PASSWORD})
    short = runner.invoke(
        main, ["console", "account", "add", "bob", "--password-stdin"], input="short\n", env=env
    )
    assert short.exit_code == 1
    assert "12 characters" in short.output
    listed = runner.invoke(main, ["console", "account", "list"], env=env)
    assert listed.output.strip() == "alice  identitovigilance"
    assert PASSWORD not in listed.output
    removed = runner.invoke(main, ["console", "account", "remove", "alice"], env=env)
    assert removed.exit_code == 0
    assert load_accounts(path) == {}


def test_relais_console_serve_without_an_account_says_how_to_make_one(tmp_path: Path) -> None:
    env = {"RELAIS_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["console", "serve"], env=env)
    assert result.exit_code == 1
    assert "no operator account" in result.output
    assert "relais console account add NAME (RELAIS_CONSOLE_ACCOUNTS)" in result.output


def test_concurrent_adds_keep_every_account_and_leave_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    names = [f"op{i}" for i in range(8)]
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda n: add_account(path, n, PASSWORD, ["operator"]), names))
    assert sorted(load_accounts(path)) == names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accounts.json", "accounts.json.lock"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_shared_limits_refuse_only_names_that_failed_lately() -> None:
    clock = Clock()
    limiter = SignInLimiter(per_client=3, in_all=5, clock=clock)
    for name in ("a1", "a2", "a3"):  # three failures through the proxy
        assert limiter.attempt(name, "proxy") is None
    refused = limiter.attempt("a1", "proxy")
    assert refused == Refusal("client", 60.0)  # a1 failed lately: that client's limit
    assert "from this network address" in refused.message("a1")
    assert "a1 failed lately" in refused.message("a1")
    assert limiter.attempt("alice", "proxy") is None  # no failure of hers: never locked out
    limiter.succeeded("alice", "proxy")  # and her success takes her attempt back
    assert limiter.attempt("a1", "10.0.0.2") is None  # another client: its own count
    assert limiter.attempt("a2", "10.0.0.3") is None  # the fifth in all
    assert limiter.attempt("a3", "10.0.0.6") == Refusal("all", 60.0)  # a3 failed lately
    assert "everyone together" in Refusal("all", 60.0).message("a2")
    for fresh in ("bob", "carol", "dave"):  # the global limit is hit, yet they may try
        assert limiter.attempt(fresh, "10.0.0.4") is None
    limiter.failed("alice", "10.0.0.5")  # now she failed once: the global limit holds
    assert limiter.attempt("alice", "10.0.0.5") == Refusal("all", 60.0)
    assert len(limiter) == 13  # 7 names, 5 clients (none for refused ones), everyone
    clock.now += 61
    assert limiter.attempt("a1", "proxy") is None
    assert len(limiter) == 3  # the windows gone by are swept: only this attempt's are kept


def test_a_flood_of_new_names_does_not_sweep_a_guessed_names_window() -> None:
    limiter = SignInLimiter(kept=12, clock=Clock())
    for _ in range(5):
        assert limiter.attempt("alice", "attacker") is None
    assert limiter.attempt("alice", "attacker") == Refusal("name", 60.0)
    for i in range(40):  # each new name never failed: not refused, but remembered
        assert limiter.attempt(f"spray{i}", "attacker") is None
        assert len(limiter) <= 12
    assert limiter.refused("alice") == Refusal("name", 60.0)  # the fewest attempts went


def test_password_checks_run_on_their_own_pool_and_say_when_busy() -> None:
    checks = PasswordChecks(workers=1, pending=2)
    release = threading.Event()

    async def scenario() -> list[str]:
        first = asyncio.ensure_future(checks.run(lambda: release.wait(5) and "a"))
        second = asyncio.ensure_future(checks.run(lambda: threading.current_thread().name))
        await asyncio.sleep(0.05)
        busy = checks.busy()
        release.set()
        return [str(busy), *(str(r) for r in await asyncio.gather(first, second))]

    busy, first, thread = asyncio.run(scenario())
    assert (busy, first) == ("True", "a")
    assert thread.startswith("console-scrypt")
    assert not checks.busy()


def test_the_authenticator_is_chosen_by_its_setting(tmp_path: Path) -> None:
    local = authenticator_for("local", tmp_path / "accounts.json")
    assert isinstance(local, LocalAuthenticator)
    assert local.start("/") is None  # the form, no redirect
    assert local.callback({"code": "x", "state": "y"}, "y") is None
    with pytest.raises(AccountError, match="RELAIS_CONSOLE_AUTH"):
        authenticator_for("oidc", tmp_path / "accounts.json")
