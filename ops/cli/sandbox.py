"""``relais sandbox``: the local stand-ins of national services (DMP, INSi).

Registered on the main group by :mod:`ops.cli.main`; heavy modules are imported inside
the commands so that ``relais --help`` answers at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click


@click.group()
def sandbox() -> None:
    """Run the local stand-ins of national services."""


@sandbox.command("dmp")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=39180, show_default=True, type=int)
@click.option("--store", type=click.Path(path_type=Path), help="also write documents here")
@click.option(
    "--pki",
    type=click.Path(path_type=Path),
    default=Path(".relais/dmp-sandbox-pki"),
    show_default=True,
    help="test CA, server and structure certificates (made when absent or expiring)",
)
@click.option(
    "--server-name",
    "server_names",
    multiple=True,
    help="host name the sinks reach the sandbox by (in its certificate), e.g. dmp-sandbox",
)
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
    import shlex  # noqa: PLC0415

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
    click.echo(f"DMP sandbox on {url} (mutual TLS, test PKI in {pki}); a DMP sink needs:")
    for name, value in client_environment(keys, url).items():
        click.echo(f"  export {name}={shlex.quote(value)}")
    asyncio.run(serve_forever(host, port, store, keys, data_dir))


@sandbox.command("insi")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=39181, show_default=True, type=int)
@click.option(
    "--pki",
    type=click.Path(path_type=Path),
    default=Path(".relais/insi-sandbox-pki"),
    show_default=True,
    help="test CA, server and structure certificates (made when absent or expiring)",
)
@click.option(
    "--server-name",
    "server_names",
    multiple=True,
    help="host name the identity stage reaches the sandbox by (in its certificate)",
)
def sandbox_insi(host: str, port: int, pki: Path, server_names: tuple[str, ...]) -> None:
    """Run the INSi sandbox: the récupération by traits over mutual TLS, on fictitious
    test identities (homonyms, conflicts included)."""
    import shlex  # noqa: PLC0415

    from sandboxes.insi import PATH, client_environment, sandbox_pki, serve_forever  # noqa: PLC0415

    keys = sandbox_pki(pki.resolve(), server_names=server_names)
    url = f"https://{server_names[0] if server_names else host}:{port}{PATH}"
    click.echo(f"INSi sandbox on {url} (mutual TLS, test PKI in {pki}); the identity stage needs:")
    for name, value in client_environment(keys, url).items():
        click.echo(f"  export {name}={shlex.quote(value)}")
    asyncio.run(serve_forever(host, port, keys))
