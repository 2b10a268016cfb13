"""``relais mss``: the MSSanté send worker and the mailbox watcher.

Heavy modules are imported inside the commands so that ``relais --help`` answers at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ops.cli.context import settings_of

if TYPE_CHECKING:
    from relais.process import Process


@click.group()
def mss() -> None:
    """MSSanté secure mail: send documents, watch Relais's mailbox (RELAIS_MSS_*)."""


@mss.command("send-worker")
@click.pass_context
def send_worker(ctx: click.Context) -> None:
    """Mail MSSanté delivery requests through RELAIS_MSS_SMTP until Ctrl-C / SIGTERM."""
    from mss_bridge.service import run_send_worker  # noqa: PLC0415 - fast --help
    from relais.keyring_source import load_keyring  # noqa: PLC0415
    from relais.process import run_process  # noqa: PLC0415

    s = settings_of(ctx)
    keyring = load_keyring(s)

    async def main(process: Process) -> None:
        await run_send_worker(process.settings, keyring, process.stop)

    run_process(s, main, what=f"mss send-worker -> {s.mss.smtp}")


@mss.command("watch")
@click.pass_context
def watch(ctx: click.Context) -> None:
    """Take mail from RELAIS_MSS_IMAP (DSN, MDN, documents) until Ctrl-C / SIGTERM."""
    from mss_bridge.service import run_watch  # noqa: PLC0415 - fast --help
    from relais.keyring_source import load_keyring  # noqa: PLC0415
    from relais.process import run_process  # noqa: PLC0415

    s = settings_of(ctx)
    keyring = load_keyring(s)

    async def main(process: Process) -> None:
        await run_watch(process.settings, keyring, process.stop)

    run_process(s, main, what=f"mss watch {s.mss.imap} [{', '.join(s.mss.mailboxes)}]")
