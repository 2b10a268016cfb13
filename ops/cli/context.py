"""The settings every ``relais`` command reads, built once by the main group."""

from __future__ import annotations

import click

from relais.settings import Settings


def settings_of(ctx: click.Context) -> Settings:
    """The :class:`Settings` the main group put on the context."""
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        raise click.UsageError("settings were not loaded")
    return settings
