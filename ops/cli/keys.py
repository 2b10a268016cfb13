"""``relais keys``: make and rotate the encryption keyring file.

Registered on the main group by :mod:`ops.cli.main`.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def keys() -> None:
    """Manage the encryption keyring (AES-256-GCM keys and the pseudonym key)."""


@keys.command("generate")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def keys_generate(out: Path) -> None:
    """Write a new keyring file (mode 0600); refuses to overwrite one."""
    from relais.keyring import Keyring  # noqa: PLC0415 - fast --help

    if out.exists():
        raise click.ClickException(f"{out} exists; use `relais keys rotate --file {out}`")
    keyring = Keyring.generate()
    keyring.write(out)
    click.echo(f"wrote {out} (active key {keyring.active_key_id})")


@keys.command("rotate")
@click.option("--file", "path", type=click.Path(exists=True, path_type=Path), required=True)
def keys_rotate(path: Path) -> None:
    """Add a new active key; old keys stay to decrypt existing records."""
    from relais.keyring import Keyring  # noqa: PLC0415 - fast --help

    keyring = Keyring.from_file(path).rotated()
    keyring.write(path)
    click.echo(f"{path}: active key is now {keyring.active_key_id} ({len(keyring.keys)} keys)")
