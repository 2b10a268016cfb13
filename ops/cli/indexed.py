"""The document index as the operator's commands read it (``relais trace``, ``explain``,
``dlq list``): opened from the settings, and first brought up to date when it is only a
little behind the topics, so that a command run right after an event sees it even where no
``relais index run`` follows the bus (the demo, a laptop).

Far behind (more than :data:`CATCH_UP_LIMIT` records: the index process is down at
national volume), the command says so on stderr and answers from what the index holds;
``--from-topics`` on ``relais trace`` reads the topics themselves instead. So it does when
the broker cannot be reached, and when it has no keyring: a writer without it would index
dead letters without the document their sealed original names, so it leaves the index to
``relais index run`` (which has the keyring).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ops.index.store import IndexStore
    from relais.keyring import Keyring
    from relais.settings import Settings

#: records a command reads into the index itself before answering, at most
CATCH_UP_LIMIT = 50_000


def fresh_index(s: Settings, keyring: Keyring | None) -> IndexStore:
    """The index of ``s``, its tables created, caught up with the topics when it can be;
    an unusable database is a one-line error naming RELAIS_INDEX_URL."""
    from ops.index.store import IndexStore, IndexStoreError  # noqa: PLC0415 - fast --help

    store = IndexStore.from_settings(s)
    try:
        store.create()
        asyncio.run(_catch_up(s, store, keyring))
    except IndexStoreError as exc:
        raise click.ClickException(str(exc)) from None
    return store


async def _catch_up(s: Settings, store: IndexStore, keyring: Keyring | None) -> None:
    """Catch the index up when it can be: with a keyring and a reachable broker."""
    from aiokafka.errors import KafkaConnectionError  # noqa: PLC0415

    if keyring is None:
        click.echo(
            "no keyring (RELAIS_KEYRING_FILE): the document index is not brought up to date "
            "with the topics, answering from the index as it is",
            err=True,
        )
        return
    try:
        await _catch_up_with(s, store, keyring)
    except (KafkaConnectionError, OSError):
        click.echo(
            "cannot reach the broker (RELAIS_BOOTSTRAP_SERVERS): answering from the index as it is",
            err=True,
        )


async def _catch_up_with(s: Settings, store: IndexStore, keyring: Keyring) -> None:
    from ops.index.feeder import INDEX_TOPICS, Feeder  # noqa: PLC0415
    from relais.tansu_quirks import true_end_offsets  # noqa: PLC0415
    from relais.topic_reader import partitions_of  # noqa: PLC0415

    bootstrap = s.kafka.connection
    ends = await true_end_offsets(
        bootstrap, await partitions_of(bootstrap, INDEX_TOPICS, s.kafka.prefix)
    )
    positions = await asyncio.to_thread(store.positions)
    behind = sum(max(end - positions.get(tp, 0), 0) for tp, end in ends.items())
    if behind > CATCH_UP_LIMIT:
        click.echo(
            f"the document index is {behind} records behind the topics: answering from what "
            "it holds (is `relais index run` running on RELAIS_INDEX_URL?)",
            err=True,
        )
    elif behind:
        await Feeder(s, store, keyring).catch_up()


def optional_keyring(s: Settings) -> Keyring | None:
    """The keyring when one is configured (dead letters' originals then name their event
    and sender), else None."""
    from relais.keyring import KeyringError  # noqa: PLC0415
    from relais.keyring_source import load_keyring  # noqa: PLC0415

    try:
        return load_keyring(s)
    except KeyringError:
        return None
