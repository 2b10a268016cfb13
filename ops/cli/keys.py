"""``relais keys``: make and rotate the encryption keyring file; re-wrap and retire master keys.

Registered on the main group by :mod:`ops.cli.main`. With per-patient keys
(RELAIS_PATIENT_KEYS=yes) the keyring's keys are also the master keys that wrap each
patient's data key (docs/keys-and-erasure.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ops.cli.context import settings_of

if TYPE_CHECKING:
    from relais.keyring import Keyring
    from relais.patient_keys.vault import PatientVault

FILE_HELP = "the keyring file (RELAIS_KEYRING_FILE of the processes)"


@click.group()
def keys() -> None:
    """Manage the encryption keyring (AES-256-GCM keys and the pseudonym key).

    \b
    relais keys generate --out F     a new keyring file (mode 0600)
    relais keys rotate --file F      a new active key (then restart every process with F)
    relais keys rewrap --file F      re-wrap the data keys still under an older key
    relais keys retire KEY --file F  destroy an old key once nothing needs it
    """


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
@click.option(
    "--file", "path", type=click.Path(exists=True, path_type=Path), required=True, help=FILE_HELP
)
@click.option(
    "--rewrap/--no-rewrap",
    default=False,
    help="also re-wrap the patients' data keys now [default: no: a process still on the old "
    "file could not unwrap them until restarted; run `relais keys rewrap` once every "
    "process runs with the new file]",
)
@click.pass_context
def keys_rotate(ctx: click.Context, path: Path, rewrap: bool) -> None:
    """Add a new active key; old keys stay to decrypt existing records.

    \b
    The order, with RELAIS_PATIENT_KEYS=yes:
    1. relais keys rotate --file F       (this command)
    2. give F to every process and restart each one
    3. relais keys rewrap --file F       patients' data keys under the new key
    4. relais keys retire OLD --file F   refused while any data key is still under OLD
    """
    from relais.keyring import Keyring  # noqa: PLC0415 - fast --help

    old = Keyring.from_file(path)
    keyring = old.rotated()
    keyring.write(path)
    click.echo(f"{path}: active key is now {keyring.active_key_id} ({len(keyring.keys)} keys)")
    if rewrap and (vault := _vault(ctx, keyring)) is not None:
        _rewrap(vault, keyring.active_key_id)
        return
    click.echo(
        "next: give this file to every process and restart each one; then "
        f"`relais keys rewrap --file {path}`; then, once it says nothing is left under "
        f"{old.active_key_id}, `relais keys retire {old.active_key_id} --file {path}`"
    )


@keys.command("rewrap")
@click.option(
    "--file", "path", type=click.Path(exists=True, path_type=Path), required=True, help=FILE_HELP
)
@click.pass_context
def keys_rewrap(ctx: click.Context, path: Path) -> None:
    """Re-wrap every patient's data key under the active key (RELAIS_PATIENT_KEYS=yes)."""
    from relais.keyring import Keyring  # noqa: PLC0415 - fast --help

    keyring = Keyring.from_file(path)
    vault = _vault(ctx, keyring)
    if vault is None:
        raise click.ClickException("RELAIS_PATIENT_KEYS is off: there are no data keys to re-wrap")
    _rewrap(vault, keyring.active_key_id)


@keys.command("retire")
@click.argument("key_id")
@click.option(
    "--file", "path", type=click.Path(exists=True, path_type=Path), required=True, help=FILE_HELP
)
@click.pass_context
def keys_retire(ctx: click.Context, key_id: str, path: Path) -> None:
    """Destroy an old key's material; it stays listed as retired and is refused.

    Refused while any patient's data key is still wrapped under it (run `relais keys
    rewrap` first, once every process runs with the new file: a process still on the old
    one wraps the keys it makes under the old key, which this re-counts). Records sealed
    directly under it (before per-patient keys, or tied
    to no patient) can no longer be opened: retire a key once the topics' retention has
    passed since it stopped being active. A backup of the key store made before the
    re-wrap (which could hold an erased patient's key) is unreadable from then on.
    """
    from relais.keyring import Keyring  # noqa: PLC0415 - fast --help

    keyring = Keyring.from_file(path)
    vault = _vault(ctx, keyring, quiet=True)
    if vault is not None and (left := vault.wrapped_under().get(key_id, 0)):
        raise click.ClickException(
            f"{left} patient data key(s) are still wrapped under {key_id!r}: run "
            f"`relais keys rewrap --file {path}` first"
        )
    retired = keyring.retire(key_id)
    retired.write(path)
    click.echo(f"{path}: key {key_id} retired ({len(retired.keys)} left, refused from now on)")


def _vault(ctx: click.Context, keyring: Keyring, *, quiet: bool = False) -> PatientVault | None:
    from relais.patient_keys.open import open_vault  # noqa: PLC0415 - fast --help

    settings = settings_of(ctx)
    if not settings.keys.patient_keys:
        if not quiet:
            click.echo("RELAIS_PATIENT_KEYS is off: no patient data keys to re-wrap")
        return None
    return open_vault(settings, keyring)


def _rewrap(vault: PatientVault, active: str) -> None:
    done = vault.rewrap()
    click.echo(
        f"patients' data keys: {done.rewrapped} re-wrapped under {active}, "
        f"{done.current} already under it, {done.refused} refused"
    )
    if done.refused:
        raise click.ClickException(
            f"{done.refused} data key(s) could not be unwrapped (wrapped under a retired or "
            "unknown master key): their patients' data cannot be read again"
        )
