"""``relais console serve|account``: the operators' web application and its accounts.

Registered on the main group by :mod:`ops.cli.main`. The server reads the document
index (RELAIS_INDEX_URL), writes its audit events and acts (replays, identity commands)
on the broker (RELAIS_BOOTSTRAP_SERVERS), and opens sealed originals with the keyring
(RELAIS_KEYRING_FILE) when it has one (docs/console.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ops.cli.context import settings_of

if TYPE_CHECKING:
    from ops.console.app import Console
    from relais.settings import Settings

ROLE_CHOICE = click.Choice(["operator", "identitovigilance"])


def _accounts_path(ctx: click.Context) -> Path:
    s = settings_of(ctx)
    return s.console.accounts_file(s.process.data_dir)


@click.group()
def console() -> None:
    """The operators' web console: search documents, follow a journey, watch senders
    and destinations, replay dead letters, decide on held patients (docs/console.md).

    \b
    relais console account add NAME [--role ...]   create a local operator account
    relais console serve                           serve it on RELAIS_CONSOLE_HOST:PORT
    """


@console.command("serve")
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Serve the console on RELAIS_CONSOLE_HOST:RELAIS_CONSOLE_PORT until Ctrl-C / SIGTERM.

    Needs an operator account (relais console account add), the document index
    (RELAIS_INDEX_URL, filled by the index feeder) and the broker; without a keyring
    (RELAIS_KEYRING_FILE) it shows everything but cannot replay or reveal."""
    from aiohttp import web  # noqa: PLC0415 - fast --help

    from ops.console.app import make_app  # noqa: PLC0415
    from relais.process import Process, run_process  # noqa: PLC0415

    s = settings_of(ctx)
    app = make_app(_console(s, _accounts_path(ctx)))

    async def main(process: Process) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, s.console.host, s.console.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise click.ClickException(
                f"cannot listen on {s.console.host}:{s.console.port}: {exc.strerror} "
                "(RELAIS_CONSOLE_HOST, RELAIS_CONSOLE_PORT)"
            ) from None
        url = f"http://{s.console.host}:{_bound_port(runner, s.console.port)}/"
        process.serve(lambda metrics: f"relais console on {url} (metrics on {metrics})")
        try:
            await process.stop.wait()
        finally:
            await runner.cleanup()

    run_process(s, main, what=None)


def _bound_port(runner: object, asked: int) -> int:
    for address in getattr(runner, "addresses", []):
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked


def _console(s: Settings, accounts: Path) -> Console:
    """The console's parts, or one line naming the setting to fix."""
    from ops.cli.indexed import opened_index  # noqa: PLC0415
    from ops.console.accounts import authenticator_for, load_accounts  # noqa: PLC0415
    from ops.console.app import Console  # noqa: PLC0415
    from ops.console.bus import ConsoleBus  # noqa: PLC0415
    from ops.console.errors import AccountError  # noqa: PLC0415
    from ops.console.sessions import SessionStore  # noqa: PLC0415
    from relais.keyring import KeyringError  # noqa: PLC0415
    from relais.keyring_source import load_keyring  # noqa: PLC0415

    try:
        authenticator = authenticator_for(s.console.auth, accounts)
        if s.console.auth == "local" and not load_accounts(accounts):
            raise click.ClickException(
                f"no operator account in {accounts}: run relais console account add NAME "
                "(RELAIS_CONSOLE_ACCOUNTS)"
            )
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    store = opened_index(s)  # an empty index until the feeder fills it
    keyring, problem = None, None
    try:
        keyring = load_keyring(s)
    except KeyringError as exc:
        problem = str(exc)
        click.echo(f"note: {problem}\n      the console cannot replay nor reveal", err=True)
    return Console(
        index=store,
        authenticator=authenticator,
        bus=ConsoleBus(s.kafka.connection, s.kafka.prefix, keyring),
        sessions=SessionStore(s.console.session_s),
        keyring_problem=problem,
        secure_cookies=s.console.secure_cookies,
        origin=s.console.origin,
    )


@console.group("account")
def account() -> None:
    """Local operator accounts (RELAIS_CONSOLE_ACCOUNTS, by default
    console-accounts.json under RELAIS_DATA_DIR; written readable by its owner only)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


@account.command("add")
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=ROLE_CHOICE,
    help="operator: replay and reveal dead letters; identitovigilance: release, reject, "
    "unblock held patients and reveal their traits. Repeat for both [default: operator]",
)
@click.option("--password-stdin", is_flag=True, help="read the password from stdin (scripts)")
@click.pass_context
def account_add(
    ctx: click.Context, name: str, roles: tuple[str, ...], password_stdin: bool
) -> None:
    """Create the account NAME (the name the audit trail writes for its actions); the
    password is asked twice (12 characters at least), or read from stdin."""
    from ops.console.accounts import add_account  # noqa: PLC0415
    from ops.console.errors import AccountError  # noqa: PLC0415

    path = _accounts_path(ctx)
    try:
        made = add_account(path, name, _password(password_stdin), roles or ("operator",))
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"account {made.name} ({', '.join(made.roles)}) written to {path}")


@account.command("list")
@click.pass_context
def account_list(ctx: click.Context) -> None:
    """The accounts and their roles (never their hashes)."""
    from ops.console.accounts import load_accounts  # noqa: PLC0415
    from ops.console.errors import AccountError  # noqa: PLC0415

    path = _accounts_path(ctx)
    try:
        found = load_accounts(path)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    if not found:
        click.echo(f"no account in {path}: relais console account add NAME")
    for name, a in sorted(found.items()):
        click.echo(f"{name}  {', '.join(a.roles) or '-'}")


@account.command("remove")
@click.argument("name")
@click.pass_context
def account_remove(ctx: click.Context, name: str) -> None:
    """Remove the account NAME (its open sessions end at their next request, even when it
    is added again: a password reset signs the old sessions out)."""
    from ops.console.accounts import remove_account  # noqa: PLC0415
    from ops.console.errors import AccountError  # noqa: PLC0415

    try:
        remove_account(_accounts_path(ctx), name)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"account {name} removed")
