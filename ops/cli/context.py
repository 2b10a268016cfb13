"""The settings every ``relais`` command reads, built once by the main group, and the
one way a command runs a long-running component."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

import click

from relais.settings import Settings

if TYPE_CHECKING:  # the keyring (cryptography) is loaded by the command, not by --help
    from relais.keyring import Keyring

#: a component's entry: settings in, runs until ``stop`` (set on SIGINT/SIGTERM)
Component: TypeAlias = "Callable[[Settings, Keyring, asyncio.Event], Awaitable[None]]"


def settings_of(ctx: click.Context) -> Settings:
    """The :class:`Settings` the main group put on the context."""
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        raise click.UsageError("settings were not loaded")
    return settings


def run_component(ctx: click.Context, run: Component, *, what: str) -> None:
    """Load the keyring, then run ``run`` under :func:`relais.process.run_process`."""
    from relais.keyring_source import load_keyring  # noqa: PLC0415 - fast --help
    from relais.process import Process, run_process  # noqa: PLC0415

    settings = settings_of(ctx)
    keyring = load_keyring(settings)

    async def main(process: Process) -> None:
        await run(process.settings, keyring, process.stop)

    run_process(settings, main, what=what)
