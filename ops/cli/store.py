"""``relais store``: what the document store holds, and its retention.

Registered on the main group by :mod:`ops.cli.main`. The store is the one the settings name
(RELAIS_DOCUMENT_STORE, default ``<RELAIS_DATA_DIR>/documents``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import click

from ops.cli.context import settings_of


@click.group()
def store() -> None:
    """The document store: each body written once at intake (claim check).

    \b
    relais store usage     objects and bytes held
    relais store expire    remove bodies older than RELAIS_DOCUMENT_RETENTION_DAYS
    """


@store.command("usage")
@click.pass_context
def store_usage(ctx: click.Context) -> None:
    """Objects and bytes the store holds."""
    from relais.document_store.open import open_store  # noqa: PLC0415 - fast --help

    documents = open_store(settings_of(ctx))

    async def count() -> None:
        try:
            usage = await documents.usage()
        finally:
            await documents.close()
        click.echo(f"{documents.description}: {usage.objects} objects, {usage.bytes} bytes")

    asyncio.run(count())


@store.command("expire")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Retention in days (default: RELAIS_DOCUMENT_RETENTION_DAYS).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.pass_context
def store_expire(ctx: click.Context, days: float | None, dry_run: bool) -> None:
    """Remove the bodies written more than the retention ago (run it daily, e.g. from cron).

    A body is needed until every destination has its document; keep the retention above the
    identity hold expiry (RELAIS_IDENTITY_HOLD_EXPIRY_S) and the longest delivery retry."""
    from relais.document_store.open import open_store  # noqa: PLC0415 - fast --help

    settings = settings_of(ctx)
    retention = days if days is not None else settings.store.retention_days
    before = datetime.now(UTC) - timedelta(days=retention)
    documents = open_store(settings)

    async def expire() -> int:
        try:
            if dry_run:
                return await documents.count_older(before)
            return await documents.expire(before)
        finally:
            await documents.close()

    removed = asyncio.run(expire())
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{documents.description}: {verb} {removed} bodies written before "
        f"{before:%Y-%m-%d %H:%M} UTC ({retention:g} days)"
    )
