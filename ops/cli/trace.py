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
@click.option(
    "--from-topics",
    is_flag=True,
    help="read the four topics themselves instead of the document index (slow at volume: "
    "for when the index is down)",
)
@click.pass_context
def trace_cmd(ctx: click.Context, document: str, as_json: bool, from_topics: bool) -> None:
    """Show DOCUMENT's whole journey in time order, across every branch: received
    (from which sender), identity decision, transcoding, routing, then each
    destination's deliveries and acknowledgements, duplicates ignored, dead letters,
    replays and operators' actions. DOCUMENT is a document unique id or an event id.
    Reads the document index (RELAIS_INDEX_URL), brought up to date with the audit,
    deliveries.status, deadletter and acks.business topics first; no patient data is
    shown. Exit code 1 when nothing is known about DOCUMENT."""
    from ops.cli.indexed import fresh_index, optional_keyring  # noqa: PLC0415
    from ops.trace.journey import journey_lines  # noqa: PLC0415
    from ops.trace.shell import read_journey  # noqa: PLC0415

    s = settings_of(ctx)
    keyring = optional_keyring(s)  # without it, dead letters without an event id stay unlinked
    if from_topics:
        click.echo(
            f"reading the audit, status, dead-letter and ack topics of {s.kafka.bootstrap}",
            err=True,
        )
        found = asyncio.run(
            read_journey(s.kafka.connection, s.kafka.prefix, document, keyring=keyring)
        )
    else:
        found = fresh_index(s, keyring).journey(document)
    if not found.steps:
        raise click.ClickException(f"nothing is known about {document} under '{s.kafka.prefix}.'")
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(journey_lines(found)))
