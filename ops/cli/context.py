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


def serve_metrics_and_say(settings: Settings, what: str) -> None:
    """Serve /metrics (and /healthz, /readyz) on RELAIS_METRICS_HOST:RELAIS_METRICS_PORT,
    then print ``<what>: metrics on <address>`` for the operator."""
    from relais.health import serve_health_and_metrics  # noqa: PLC0415 - fast --help

    port = serve_health_and_metrics(settings.metrics_host, settings.metrics_port)
    click.echo(f"{what}: metrics on http://{settings.metrics_host}:{port}/metrics")
