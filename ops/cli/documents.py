"""``relais`` commands that move documents: publish, mllp, catalogue, explain.

Registered on the main group by :mod:`ops.cli.main`; split out to keep each module small.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ops.cli.context import settings_of as _settings
from relais.settings import SettingsError
from relais.settings_parts import SECTORS

if TYPE_CHECKING:
    from collections.abc import Callable

    from producers.publish_files import FileOutcome
    from relais.keyring import Keyring
    from relais.settings import Settings
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
    from relais.keyring_source import load_keyring

    s = _settings(ctx)
    keyring = load_keyring(s)
    report = _PublishReport(len(paths))
    outcomes = asyncio.run(_publish_all(s, keyring, paths, sector, report.progress))
    report.finish(outcomes)
    if any(not o.accepted for o in outcomes):
        sys.exit(1)


async def _publish_all(
    s: Settings,
    keyring: Keyring,
    paths: tuple[Path, ...],
    sector: str | None,
    progress: Callable[[FileOutcome], None],
) -> list[FileOutcome]:
    from producers.publish_files import publish_files
    from producers.publisher import Publisher
    from relais.document_store.open import open_store

    async with Publisher(
        bootstrap=s.kafka.connection,
        keyring=keyring,
        topic_prefix=s.kafka.prefix,
        store=open_store(s),
    ) as publisher:
        return await publish_files(publisher, paths, sector, progress)


class _PublishReport:
    """What ``relais publish`` tells the operator: a line per file, or a bar over 20 files."""

    def __init__(self, files: int) -> None:
        self.bar = (
            click.progressbar(length=files, label="publishing", file=sys.stderr)
            if files > 20
            else None
        )

    def progress(self, outcome: FileOutcome) -> None:
        if self.bar is not None:
            self.bar.update(1)
        elif outcome.accepted:
            click.echo(f"accepted {outcome.path}: {', '.join(outcome.event_ids)}")
        else:
            click.echo(f"REJECTED {outcome.path}: {outcome.error}", err=True)

    def finish(self, outcomes: list[FileOutcome]) -> None:
        """The rejections (after the bar: it hid them) and the summary line."""
        rejected = [o for o in outcomes if not o.accepted]
        if self.bar is not None:
            self.bar.render_finish()
            for outcome in rejected:
                click.echo(f"REJECTED {outcome.path}: {outcome.error}", err=True)
        documents = sum(len(o.event_ids) for o in outcomes)
        click.echo(
            f"{len(outcomes) - len(rejected)} file(s) accepted ({documents} event(s)), "
            f"{len(rejected)} rejected"
        )


@click.command()
@click.option("--host", help="address to listen on [RELAIS_MLLP_HOST, default 127.0.0.1]")
@click.option("--port", type=int, help="MLLP port [RELAIS_MLLP_PORT, default 2575]")
@click.option(
    "--sector",
    type=click.Choice(SECTORS),
    help="sector of every sender on this listener [RELAIS_MLLP_SECTOR]; "
    "default: implied by the document type",
)
@click.option(
    "--max-frame-bytes",
    type=click.IntRange(min=1),
    help="larger messages get an AE (refused for good) and the connection is closed "
    "[RELAIS_MLLP_MAX_FRAME_BYTES, default 16777216]",
)
@click.option(
    "--idle-timeout",
    "idle_timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    help="seconds without a byte before a connection is closed "
    "[RELAIS_MLLP_IDLE_TIMEOUT_S, default 60]",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, path_type=Path),
    help="server certificate (PEM) [RELAIS_MLLP_TLS_CERT]",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, path_type=Path),
    help="server key (PEM) [RELAIS_MLLP_TLS_KEY]",
)
@click.option(
    "--client-ca",
    type=click.Path(exists=True, path_type=Path),
    help="require client certificates signed by this CA (PEM) [RELAIS_MLLP_CLIENT_CA]",
)
@click.option(
    "--reuse-port/--no-reuse-port",
    default=None,
    help="SO_REUSEPORT: share the port with other `relais mllp` processes started so, the "
    "kernel spreading the connections [RELAIS_MLLP_REUSE_PORT, default no]",
)
@click.pass_context
def mllp(ctx: click.Context, /, **flags: Any) -> None:
    """Receive HL7 v2 over MLLP and acknowledge each message.

    AA only once the broker acknowledged the event (acks=all); AE with an ERR
    segment naming the field and the rule for a message the door refuses (also
    dead-lettered; docs/door.md lists every case); AR when the bus cannot take it
    now. Per-peer limits, frame deadlines, the worker pool and the test-message
    policy are RELAIS_MLLP_* settings (relais --help lists them). TLS with
    --tls-cert/--tls-key, client certificates with --client-ca. Each flag overrides
    its RELAIS_MLLP_* variable.
    Runs until Ctrl-C / SIGTERM.
    """
    from producers.mllp_intake import run_gateway
    from relais.keyring_source import load_keyring

    s = _settings(ctx)
    given = {name: value for name, value in flags.items() if value is not None}
    listener = dataclasses.replace(s.mllp, **given)
    if bool(listener.tls_cert) != bool(listener.tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    settings = dataclasses.replace(s, mllp=listener)
    keyring = load_keyring(settings)
    try:
        run_gateway(settings, keyring)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


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
    from streams.transcode.lab_catalogue import catalogue_report, format_report, load_directory
    from streams.transcode.lab_codes import CatalogueError, LoincTable, UcumUnits

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
                s.kafka.connection,
                s.kafka.prefix,
                lambda r: r["component"] == "transcode" and PREFIX in (r["detail"] or ""),
            )
        )
    except KafkaError as exc:
        raise click.ClickException(
            f"cannot read the audit topic at {s.kafka.bootstrap} ({exc}): "
            "is the broker running (RELAIS_BOOTSTRAP_SERVERS)?"
        ) from None
    return seen_in_traffic((r["detail"] for r in records), facility)


@click.command("explain")
@click.argument("document")
@click.pass_context
def explain_cmd(ctx: click.Context, document: str) -> None:
    """Say which rules decided what for DOCUMENT (a document unique id or an event id):
    routing, destinations, and the release policy (who may see it, from when). Reads the
    audit steps of the document index (RELAIS_INDEX_URL), brought up to date first."""
    from ops.cli.indexed import fresh_index, optional_keyring

    s = _settings(ctx)
    journey = fresh_index(s, optional_keyring(s)).journey(document)
    said = [step for step in journey.steps if step.source == "audit"]
    if not said:
        raise click.ClickException(f"no audit record for {document} under '{s.kafka.prefix}.'")
    for step in said:
        click.echo(f"{step.at:%Y-%m-%d %H:%M:%S} {step.component}: {step.action} -> {step.outcome}")
        for line in (step.detail or "").splitlines():
            click.echo(f"    {line}")
