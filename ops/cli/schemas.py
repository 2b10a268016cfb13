"""``relais schemas``: check and release the Avro record schemas.

Registered on the main group by :mod:`ops.cli.main`.
"""

from __future__ import annotations

import click


@click.group()
def schemas() -> None:
    """Check and release the Avro record schemas."""


@schemas.command("check")
def schemas_check() -> None:
    """Fail if a current schema cannot read data written with a released one."""
    from ops.schema_compat import check_registry  # noqa: PLC0415 - fast --help
    from relais.contracts import SchemaRegistry  # noqa: PLC0415
    from schemas import SCHEMA_DIR  # noqa: PLC0415

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
    from ops.schema_compat import freeze  # noqa: PLC0415 - fast --help
    from relais.contracts import SchemaRegistry  # noqa: PLC0415
    from schemas import SCHEMA_DIR  # noqa: PLC0415

    written = freeze(SchemaRegistry(), SCHEMA_DIR / "released")
    click.echo("\n".join(str(p) for p in written) or "nothing changed")
