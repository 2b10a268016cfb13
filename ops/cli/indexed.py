"""The document index as the operator's commands read it (``relais trace``, ``explain``,
``dlq list``): opened from the settings, and first brought up to date when it is only a
little behind the topics, so that a command run right after an event sees it even where no
``relais index run`` follows the bus (the demo, a laptop). It says so on stderr ("catching
the document index up: N records", then every :data:`PROGRESS_EVERY_S` how far it is).

Far behind (more than :data:`CATCH_UP_LIMIT` records: the index process is down at
national volume), the command says so on stderr and answers from what the index holds;
``--from-topics`` on ``relais trace`` reads the topics themselves instead. So it does when
the broker cannot be reached. Without a keyring a command brings up to date all but the
dead letters: a writer without it would index them without the document their sealed
original names, so it leaves them to ``relais index run`` (which has the keyring).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ops.index.feeder import Progress
    from ops.index.store import IndexStore
    from relais.keyring import Keyring
    from relais.settings import Settings

#: records a command reads into the index itself before answering, at most
CATCH_UP_LIMIT = 50_000
#: a long catch-up or rebuild says how far it is this often (stderr)
PROGRESS_EVERY_S = 3.0


def progress_lines() -> Progress:
    """A feeder progress callback printing "indexed N of M records" on stderr every
    :data:`PROGRESS_EVERY_S` seconds."""
    shown = [time.monotonic()]

    def progress(read: int, total: int) -> None:
        if time.monotonic() - shown[0] >= PROGRESS_EVERY_S:
            shown[0] = time.monotonic()
            click.echo(f"indexed {read} of {total} records", err=True)

    return progress


def opened_index(s: Settings) -> IndexStore:
    """The index of ``s``, its tables created; an unusable database is a one-line error
    naming RELAIS_INDEX_URL."""
    from ops.index.store import IndexStore, IndexStoreError  # noqa: PLC0415 - fast --help

    store = IndexStore.from_settings(s)
    try:
        store.create()
    except IndexStoreError as exc:
        raise click.ClickException(str(exc)) from None
    return store


def fresh_index(s: Settings, keyring: Keyring | None) -> IndexStore:
    """:func:`opened_index`, caught up with the topics when it can be."""
    from ops.index.store import IndexStoreError  # noqa: PLC0415 - fast --help

    store = opened_index(s)
    try:
        asyncio.run(_catch_up(s, store, keyring))
    except IndexStoreError as exc:
        raise click.ClickException(str(exc)) from None
    return store


async def _catch_up(s: Settings, store: IndexStore, keyring: Keyring | None) -> None:
    """Catch the index up when the broker can be reached; without a keyring, all but the
    dead letters (their sealed originals name their document: left to the index process)."""
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    try:
        await _catch_up_with(s, store, keyring)
    except (KafkaError, OSError):
        click.echo(
            "cannot reach the broker (RELAIS_BOOTSTRAP_SERVERS): answering from the index as it is",
            err=True,
        )


async def _catch_up_with(s: Settings, store: IndexStore, keyring: Keyring | None) -> None:
    from ops.index.feeder import Feeder  # noqa: PLC0415
    from ops.index.offsets import extents_of  # noqa: PLC0415
    from relais.topics import DEADLETTER  # noqa: PLC0415

    extents = await extents_of(s)
    if keyring is None:
        click.echo(
            "no keyring (RELAIS_KEYRING_FILE): dead letters are left to `relais index run`; "
            "the rest of the index is brought up to date",
            err=True,
        )
        extents = extents.without(DEADLETTER.name(s.kafka.prefix))
    behind = sum(extents.behind(await asyncio.to_thread(store.positions)).values())
    if behind > CATCH_UP_LIMIT:
        click.echo(
            f"the document index is {behind} records behind the topics: answering from what "
            "it holds (is `relais index run` running on RELAIS_INDEX_URL?)",
            err=True,
        )
    elif behind:
        click.echo(f"catching the document index up: {behind} records", err=True)
        await Feeder(s, store, keyring).catch_up(progress=progress_lines(), extents=extents)


def optional_keyring(s: Settings) -> Keyring | None:
    """The keyring when one is configured (dead letters' originals then name their event
    and sender), else None."""
    from relais.keyring import KeyringError  # noqa: PLC0415
    from relais.keyring_source import load_keyring  # noqa: PLC0415

    try:
        return load_keyring(s)
    except KeyringError:
        return None
