"""``relais index run|rebuild|status``: the document index the console and the operator's
commands search (derived data, rebuilt from the topics at will).

Registered on the main group by :mod:`ops.cli.main`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import click

from ops.cli.context import settings_of
from ops.cli.indexed import opened_index, optional_keyring, progress_lines

if TYPE_CHECKING:
    from ops.index.offsets import Extents
    from ops.index.store import IndexStore
    from relais.settings import Settings


@click.group("index")
def index() -> None:
    """The document index: every document's sender, MSH-10, type, patient key (pseudonymised),
    status and journey, read from the audit, deliveries.status, deadletter and acks.business
    topics into PostgreSQL (RELAIS_INDEX_URL) or SQLite under RELAIS_DATA_DIR (the demo).
    The console and `relais trace` search it; it can always be rebuilt from the topics."""


def _claimed(s: Settings) -> IndexStore:
    """The index, its runner lock held: a rebuild while `relais index run` writes is refused."""
    store = opened_index(s)
    if not store.claim():
        raise click.ClickException(
            "`relais index run` is running on this index (RELAIS_INDEX_URL): stop it, then rebuild"
        )
    return store


_WITHOUT_KEYRING = "dead letters naming no event are indexed without their document and sender"


@index.command("run")
@click.pass_context
def index_run(ctx: click.Context) -> None:
    """Keep the index up to date until Ctrl-C / SIGTERM: follow the four topics from where
    the index stands (each batch and its positions in one transaction), and export the
    per-sender and per-destination gauges of the last 24 hours on /metrics."""
    from ops.index.feeder import Feeder  # noqa: PLC0415
    from relais.health import broker_reachable  # noqa: PLC0415
    from relais.process import Process, run_process  # noqa: PLC0415

    s = settings_of(ctx)
    store, keyring = opened_index(s), optional_keyring(s)
    if not store.claim():
        click.echo(
            "another `relais index run` is running on this index (RELAIS_INDEX_URL)", err=True
        )

    async def main(process: Process) -> None:
        await Feeder(process.settings, store, keyring).run(process.stop)

    what = f"document index of '{s.kafka.prefix}' topics"
    run_process(s, main, what=what, checks={"broker": broker_reachable(s.kafka.connection)})


def _extents(s: Settings) -> Extents:
    """The partitions of the indexed topics and their offsets, asked before anything is
    dropped: a broker that cannot be reached, or no indexed topic under the prefix, is a
    one-line refusal naming the setting, the index left as it is."""
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from ops.index.offsets import extents_of  # noqa: PLC0415

    try:
        found = asyncio.run(extents_of(s))
    except (KafkaError, OSError) as exc:
        raise click.ClickException(
            f"cannot reach the broker ({type(exc).__name__}): check RELAIS_BOOTSTRAP_SERVERS; "
            "the index was not dropped"
        ) from None
    if not found.ends:
        raise click.ClickException(
            f"no indexed topic under the prefix '{s.kafka.prefix}': check RELAIS_TOPIC_PREFIX "
            "(or run `relais topics create`); the index was not dropped"
        )
    return found


@index.command("rebuild")
@click.option("--yes", is_flag=True, help="do not ask: drop the index and rebuild it")
@click.pass_context
def index_rebuild(ctx: click.Context, yes: bool) -> None:
    """Drop the index, then read the four topics from their start to their current end into
    it again, and exit. What the topics no longer hold (past their retention) is lost from
    the index. Stop `relais index run` first. The broker and the topics are checked first:
    without them nothing is dropped."""
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from ops.index.feeder import Feeder  # noqa: PLC0415
    from ops.index.store import IndexStoreError  # noqa: PLC0415

    s = settings_of(ctx)
    if not yes:
        click.confirm(
            f"drop the document index and rebuild it from '{s.kafka.prefix}' topics?", abort=True
        )
    store = _claimed(s)
    extents, keyring = _extents(s), optional_keyring(s)
    if keyring is None:
        click.echo(f"no keyring (RELAIS_KEYRING_FILE): {_WITHOUT_KEYRING}", err=True)
    try:
        store.drop()
        store.create()
    except IndexStoreError as exc:
        raise click.ClickException(str(exc)) from None
    began, feeder = time.monotonic(), Feeder(s, store, keyring)
    try:
        read = asyncio.run(feeder.catch_up(progress=progress_lines(), extents=extents))
    except IndexStoreError as exc:
        raise click.ClickException(f"{exc}, then rebuild again") from None
    except (KafkaError, OSError) as exc:
        raise click.ClickException(
            f"the broker failed during the rebuild ({type(exc).__name__}): check "
            "RELAIS_BOOTSTRAP_SERVERS, then rebuild again"
        ) from None
    state = store.state()
    click.echo(
        f"rebuilt: {read} records read ({feeder.undecodable} undecodable skipped) in "
        f"{time.monotonic() - began:.1f} s; {state.documents} documents, {state.steps} steps, "
        f"{state.letters} dead letters"
    )


@index.command("status")
@click.option("--json", "as_json", is_flag=True, help="the state as JSON, for machines")
@click.pass_context
def index_status(ctx: click.Context, as_json: bool) -> None:
    """How far the index has read: documents, steps and dead letters it holds, its position
    on each topic partition and how many records it still has to read there (lag)."""
    from ops.index.feeder import lag_of  # noqa: PLC0415

    s = settings_of(ctx)
    state = opened_index(s).state()
    lag = asyncio.run(lag_of(s, state.positions))
    found: dict[str, Any] = {
        "documents": state.documents,
        "steps": state.steps,
        "letters": state.letters,
        "last_at": state.last_at.isoformat() if state.last_at else None,
        "approximate": state.approximate,  # the counts are PostgreSQL's estimates
        "positions": state.positions,
        "lag": lag,
        "lag_total": sum(lag.values()),
    }
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    about = "about " if state.approximate else ""
    click.echo(
        f"{about}{state.documents} documents, {state.steps} steps, {state.letters} dead letters"
    )
    click.echo(f"newest step {found['last_at'] or '-'}; {found['lag_total']} records to read")
    for name in sorted(set(state.positions) | {k for k, n in lag.items() if n}):
        click.echo(f"  {name:<48} at {state.positions.get(name, 0):>8}  lag {lag.get(name, 0)}")
