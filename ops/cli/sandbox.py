"""``relais sandbox``: the local stand-ins of national services (DMP, INSi).

Registered on the main group by :mod:`ops.cli.main`; heavy modules are imported inside
the commands so that ``relais --help`` answers at once.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from pathlib import Path

import click

PKI_HELP = "test CA, server and structure certificates (made when absent or expiring)"


@click.group()
def sandbox() -> None:
    """Run the local stand-ins of national services."""


def _served_over_mtls(
    port: int, pki: str, reached_by: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options every sandbox shares: where it listens, its test PKI, its host names."""

    def options(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(
            (
                click.option("--host", default="127.0.0.1", show_default=True),
                click.option("--port", default=port, show_default=True, type=int),
                click.option(
                    "--pki",
                    type=click.Path(path_type=Path),
                    default=Path(pki),
                    show_default=True,
                    help=PKI_HELP,
                ),
                click.option(
                    "--server-name",
                    "server_names",
                    multiple=True,
                    help=f"host name {reached_by} (in its certificate)",
                ),
            )
        ):
            command = option(command)
        return command

    return options


def _announce(what: str, url: str, pki: Path, who: str, environment: dict[str, str]) -> None:
    """Where the sandbox listens, and the variables its client needs, as shell exports."""
    click.echo(f"{what} on {url} (mutual TLS, test PKI in {pki}); {who} needs:")
    for name, value in environment.items():
        click.echo(f"  export {name}={shlex.quote(value)}")


@sandbox.command("dmp")
@_served_over_mtls(
    39180, ".relais/dmp-sandbox-pki", "the sinks reach the sandbox by, e.g. dmp-sandbox"
)
@click.option("--store", type=click.Path(path_type=Path), help="also write documents here")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="IHE schemas (ihe-xsd/) and ANS value sets (jdv/) it judges with  "
    "[default: ../shared/data from the project root]",
)
def sandbox_dmp(
    *,
    host: str,
    port: int,
    store: Path | None,
    pki: Path,
    server_names: tuple[str, ...],
    data_dir: Path | None,
) -> None:
    """Run the DMP sandbox: an ITI-41 repository over mutual TLS that checks, stores and lists."""
    from sandboxes import SandboxSetupError  # noqa: PLC0415
    from sandboxes.dmp import (  # noqa: PLC0415
        DEFAULT_DATA_DIR,
        client_environment,
        oracle_of,
        sandbox_pki,
        serve_forever,
    )

    keys = sandbox_pki(pki.resolve(), server_names=server_names)
    try:
        oracle_of(keys.ca_cert, data_dir or DEFAULT_DATA_DIR, require_signed_submission=True)
    except SandboxSetupError as exc:
        raise click.ClickException(str(exc)) from None
    url = f"https://{server_names[0] if server_names else host}:{port}/repository"
    _announce("DMP sandbox", url, pki, "a DMP sink", client_environment(keys, url))
    asyncio.run(serve_forever(host, port, store, keys, data_dir))


@sandbox.command("insi")
@_served_over_mtls(39181, ".relais/insi-sandbox-pki", "the identity stage reaches it by")
def sandbox_insi(host: str, port: int, pki: Path, server_names: tuple[str, ...]) -> None:
    """Run the INSi sandbox: the récupération by traits over mutual TLS, on fictitious
    test identities (homonyms, conflicts included)."""
    from sandboxes.insi import PATH, client_environment, sandbox_pki, serve_forever  # noqa: PLC0415

    keys = sandbox_pki(pki.resolve(), server_names=server_names)
    url = f"https://{server_names[0] if server_names else host}:{port}{PATH}"
    _announce("INSi sandbox", url, pki, "the identity stage", client_environment(keys, url))
    asyncio.run(serve_forever(host, port, keys))
