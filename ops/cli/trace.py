"""``relais trace DOCUMENT``: one document's journey, for the operator.

Registered on the main group by :mod:`ops.cli.main`.
"""

from __future__ import annotations

import asyncio
import json

import click

from ops.cli.context import settings_of


@click.command("trace")
@click.argument("document")
@click.option("--json", "as_json", is_flag=True, help="the journey as JSON, for machines")
@click.pass_context
def trace_cmd(ctx: click.Context, document: str, as_json: bool) -> None:
    """Show DOCUMENT's whole journey in time order, across every branch: received
    (from which sender), identity decision, transcoding, routing, then each
    destination's deliveries and acknowledgements, duplicates ignored, dead letters
    and replays. DOCUMENT is a document unique id or an event id. Reads the audit,
    deliveries.status, deadletter and acks.business topics; no patient data is shown.
    Exit code 1 when nothing is known about DOCUMENT."""
    from ops.trace.journey import journey_lines  # noqa: PLC0415
    from ops.trace.shell import read_journey  # noqa: PLC0415
    from relais.keyring import KeyringError  # noqa: PLC0415
    from relais.keyring_source import load_keyring  # noqa: PLC0415

    s = settings_of(ctx)
    try:
        keyring = load_keyring(s)
    except KeyringError:
        keyring = None  # dead letters without an event id stay unlinked
    click.echo(
        f"reading the audit, status, dead-letter and ack topics of {s.kafka.bootstrap}", err=True
    )
    found = asyncio.run(read_journey(s.kafka.connection, s.kafka.prefix, document, keyring=keyring))
    if not found.steps:
        raise click.ClickException(f"nothing is known about {document} under '{s.kafka.prefix}.'")
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(journey_lines(found)))
