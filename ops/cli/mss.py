"""``relais mss``: the MSSanté send worker, the mailbox watcher, the LPS delivery to DPIs.

Heavy modules are imported inside the commands so that ``relais --help`` answers at once.
"""

from __future__ import annotations

import click

from ops.cli.context import run_component, settings_of


@click.group()
def mss() -> None:
    """MSSanté secure mail: send documents, watch Relais's mailbox (RELAIS_MSS_*)."""


@mss.command("send-worker")
@click.pass_context
def send_worker(ctx: click.Context) -> None:
    """Mail MSSanté delivery requests through RELAIS_MSS_SMTP until Ctrl-C / SIGTERM."""
    from mss_bridge.service import run_send_worker  # noqa: PLC0415 - fast --help

    run_component(ctx, run_send_worker, what=f"mss send-worker -> {settings_of(ctx).mss.smtp}")


@mss.command("watch")
@click.pass_context
def watch(ctx: click.Context) -> None:
    """Take mail from RELAIS_MSS_IMAP (DSN, MDN, documents) until Ctrl-C / SIGTERM."""
    from mss_bridge.service import run_watch  # noqa: PLC0415 - fast --help

    mss = settings_of(ctx).mss
    run_component(ctx, run_watch, what=f"mss watch {mss.imap} [{', '.join(mss.mailboxes)}]")


@mss.command("deliver")
@click.pass_context
def deliver(ctx: click.Context) -> None:
    """Send documents received by mail to the DPIs as LPS MDM^T02 over MLLP (RELAIS_ACK_ROUTES:
    MAILBOX-or-DOMAIN=host:port,...), then the MDN, until Ctrl-C / SIGTERM."""
    from mss_bridge.service import run_lps_delivery  # noqa: PLC0415 - fast --help
    from producers.mllp.ack_routes import AckRouteError, routes_from  # noqa: PLC0415

    try:
        routes = routes_from(settings_of(ctx).acks)
    except AckRouteError as exc:
        raise click.ClickException(str(exc)) from None
    run_component(ctx, run_lps_delivery, what=f"mss deliver -> {len(routes)} DPI route(s)")
