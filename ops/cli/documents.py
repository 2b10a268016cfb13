"""``relais`` commands that move documents: publish, mllp, catalogue, explain.

Registered on the main group by :mod:`ops.cli.main`; split out to keep each module small.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ops.cli.context import settings_of as _settings

if TYPE_CHECKING:
    from streams.transcode.lab_findings import SeenLine


@click.command()
@click.argument(
    "paths",
    metavar="PATH...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--sector",
    type=click.Choice(["HOSPITAL", "LAB", "RADIOLOGY"]),
    help="sector of every file; default: the sidecar's, else implied by the document type",
)
@click.pass_context
def publish(ctx: click.Context, paths: tuple[Path, ...], sector: str | None) -> None:
    """Publish HL7 v2 messages, CDA R2 documents and PDFs (with a JSON sidecar).

    HL7 files (ORU^R01, MDM^T02/T10/T04, ADT) carry everything; a CDA file
    takes its sender, identity status and flags from an optional sidecar
    NAME.json; a PDF needs the sidecar's "document" and "patient" parts (see
    producers/document_files.py). Each file is accepted once the broker has it
    (acks=all) or rejected with the reason; the exit code is 1 if any file
    was rejected.
    """
    from producers.publish_files import FileOutcome, publish_files
    from producers.publisher import Publisher
    from relais.keyring_source import load_keyring

    s = _settings(ctx)
    keyring = load_keyring(s)
    bar = (
        click.progressbar(length=len(paths), label="publishing", file=sys.stderr)
        if len(paths) > 20
        else None
    )

    def progress(outcome: FileOutcome) -> None:
        if bar is not None:
            bar.update(1)
        elif outcome.accepted:
            click.echo(f"accepted {outcome.path}: {', '.join(outcome.event_ids)}")
        else:
            click.echo(f"REJECTED {outcome.path}: {outcome.error}", err=True)

    async def run() -> list[FileOutcome]:
        async with Publisher(
            bootstrap=s.bootstrap_servers, keyring=keyring, topic_prefix=s.topic_prefix
        ) as publisher:
            return await publish_files(publisher, paths, sector, progress)

    outcomes = asyncio.run(run())
    if bar is not None:
        bar.render_finish()
    rejected = [o for o in outcomes if not o.accepted]
    if bar is not None:
        for outcome in rejected:
            click.echo(f"REJECTED {outcome.path}: {outcome.error}", err=True)
    documents = sum(len(o.event_ids) for o in outcomes)
    click.echo(
        f"{len(outcomes) - len(rejected)} file(s) accepted ({documents} event(s)), "
        f"{len(rejected)} rejected"
    )
    if rejected:
        sys.exit(1)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=2575, show_default=True, type=int, help="MLLP port")
@click.option(
    "--sector",
    type=click.Choice(["HOSPITAL", "LAB", "RADIOLOGY"]),
    help="sector of every sender on this listener; default: implied by the document type",
)
@click.option(
    "--max-frame-bytes",
    default=16 << 20,
    show_default=True,
    type=int,
    help="larger messages get an AR and the connection is closed",
)
@click.option(
    "--idle-timeout",
    "idle_timeout_s",
    default=300.0,
    show_default=True,
    type=float,
    help="seconds without a byte before a connection is closed",
)
@click.option(
    "--tls-cert", type=click.Path(exists=True, path_type=Path), help="server certificate (PEM)"
)
@click.option("--tls-key", type=click.Path(exists=True, path_type=Path), help="server key (PEM)")
@click.option(
    "--client-ca",
    type=click.Path(exists=True, path_type=Path),
    help="require client certificates signed by this CA (PEM)",
)
@click.pass_context
def mllp(
    ctx: click.Context,
    *,
    host: str,
    port: int,
    sector: str | None,
    max_frame_bytes: int,
    idle_timeout_s: float,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
) -> None:
    """Receive HL7 v2 over MLLP and acknowledge each message.

    AA only once the broker acknowledged the event (acks=all); AE with an ERR
    segment naming the field and the rule for a bad message (also dead-lettered);
    AR when the bus cannot take it now. TLS with --tls-cert/--tls-key, client
    certificates with --client-ca. Runs until Ctrl-C / SIGTERM.
    """
    from producers.ingest import Ingest
    from producers.mllp.gateway import GatewayConfig, MllpGateway, server_tls_context
    from producers.mllp.metrics import PrometheusGatewayObserver, PrometheusIngestObserver
    from producers.publisher import Publisher
    from relais.health import READINESS, broker_reachable, serve_health_and_metrics
    from relais.keyring_source import load_keyring
    from relais.signals import stop_on_signals

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    s = _settings(ctx)
    keyring = load_keyring(s)
    tls = server_tls_context(tls_cert, tls_key, client_ca) if tls_cert and tls_key else None
    config = GatewayConfig(
        host=host,
        port=port,
        max_frame_bytes=max_frame_bytes,
        idle_timeout_s=idle_timeout_s,
        tls=tls,
    )

    async def run() -> None:
        stop = stop_on_signals()
        async with Publisher(
            bootstrap=s.bootstrap_servers, keyring=keyring, topic_prefix=s.topic_prefix
        ) as publisher:
            handler = Ingest(publisher, sector=sector, observer=PrometheusIngestObserver())
            gateway = MllpGateway(config, handler, PrometheusGatewayObserver())
            bound = await gateway.start()
            READINESS.register("broker", broker_reachable(s.bootstrap_servers))
            metrics_port = serve_health_and_metrics(s.metrics_host, s.metrics_port)
            click.echo(
                f"MLLP{'S' if tls else ''} on {host}:{bound} -> {s.bootstrap_servers}; "
                f"metrics on http://{s.metrics_host}:{metrics_port}/metrics"
            )
            await stop.wait()
            await gateway.stop()
        click.echo("MLLP gateway stopped")

    asyncio.run(run())


@click.group()
def catalogue() -> None:
    """Laboratory exam catalogues (local code -> LOINC), one versioned CSV per laboratory."""


@catalogue.command("report")
@click.argument("facility", required=False)
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="catalogue directory: <dir>/<FACILITY>/<version>.csv",
)
@click.option(
    "--loinc",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="LOINC table with French labels (CSV: loinc_code,display_name_fr)",
)
@click.option(
    "--ucum",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="UCUM unit list (the ANS JDV XML)",
)
@click.option(
    "--seen",
    is_flag=True,
    help="also list the codes laboratories sent that were unmapped or suspicious "
    "(unit mismatch...), with counts: reads the audit topic of RELAIS_BOOTSTRAP_SERVERS",
)
@click.pass_context
def catalogue_report_cmd(
    ctx: click.Context,
    *,
    facility: str | None,
    directory: Path,
    loinc: Path,
    ucum: Path,
    seen: bool,
) -> None:
    """List each laboratory's missing and suspicious mappings: unmapped local codes,
    unknown LOINC codes, units that are not UCUM; with --seen, also what the traffic
    showed (codes missing from the catalogue, units differing from it).
    FACILITY limits it to one laboratory. Exit code 1 when there is anything to fix."""
    from streams.transcode.lab_catalogue import (
        CatalogueError,
        LoincTable,
        UcumUnits,
        catalogue_report,
        format_report,
        load_directory,
    )

    try:
        store = load_directory(directory)
        table = LoincTable.from_csv(loinc.read_text(encoding="utf-8"))
        units = UcumUnits.from_xml(ucum.read_bytes())
        lines = catalogue_report(store, table, units, facility)
    except CatalogueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("## Catalogue\n\n" + format_report(lines) if seen else format_report(lines))
    traffic: list[SeenLine] = []
    if seen:
        from streams.transcode.lab_findings import format_seen

        traffic = _seen_in_traffic(ctx, facility)
        click.echo("## Seen in traffic\n\n" + format_seen(traffic))
    if lines or traffic:
        sys.exit(1)


def _seen_in_traffic(ctx: click.Context, facility: str | None) -> list[SeenLine]:
    from aiokafka.errors import KafkaError

    from relais.audit_trail import read_audits
    from streams.transcode.lab_findings import PREFIX, seen_in_traffic

    s = _settings(ctx)
    try:
        records = asyncio.run(
            read_audits(
                s.bootstrap_servers,
                s.topic_prefix,
                lambda r: r["component"] == "transcode" and PREFIX in (r["detail"] or ""),
            )
        )
    except KafkaError as exc:
        raise click.ClickException(
            f"cannot read the audit topic at {s.bootstrap_servers} ({exc}): "
            "is the broker running (RELAIS_BOOTSTRAP_SERVERS)?"
        ) from None
    return seen_in_traffic((r["detail"] for r in records), facility)


@click.command("explain")
@click.argument("document")
@click.pass_context
def explain_cmd(ctx: click.Context, document: str) -> None:
    """Say which rules decided what for DOCUMENT (a document unique id or an event id):
    routing, destinations, and the release policy (who may see it, from when)."""
    from relais.audit_trail import audits_for

    s = _settings(ctx)
    records = asyncio.run(audits_for(s.bootstrap_servers, s.topic_prefix, document))
    if not records:
        raise click.ClickException(f"no audit record for {document} under '{s.topic_prefix}.'")
    for record in records:
        click.echo(
            f"{record['at']:%Y-%m-%d %H:%M:%S} {record['component']}: "
            f"{record['action']} -> {record['outcome']}"
        )
        for line in (record["detail"] or "").splitlines():
            click.echo(f"    {line}")
