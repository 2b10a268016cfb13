"""``relais patient erase``: destroy a patient's data key and stored bodies (audited).

Registered on the main group by :mod:`ops.cli.main`. Needs per-patient keys
(RELAIS_PATIENT_KEYS=yes; docs/keys-and-erasure.md).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from ops.cli.context import settings_of
from ops.cli.identity import OPERATOR_HELP, _bus, _operator

if TYPE_CHECKING:
    from relais.contracts import Record
    from relais.keyring import Keyring


@click.group()
def patient() -> None:
    """A patient's data across Relais: erasure (right to erasure, RGPD article 17).

    With RELAIS_PATIENT_KEYS=yes each patient's sealed data (identity traits, document
    bodies, recipients, dead-lettered originals) is encrypted under that patient's own
    data key. Erasing the patient destroys that key and removes their stored bodies:
    what remains on the topics and in dead letters can no longer be decrypted.

    \b
    relais patient erase --patient-key KEY      by pseudonym (relais identity list, trace)
    relais patient erase --ins 1234567890123    by INS (pseudonymised here, never sent)
    """


@patient.command("erase")
@click.option(
    "--patient-key",
    "patient_keys",
    multiple=True,
    metavar="KEY",
    help="the patient's pseudonym (64 hex, the records' key); repeat for several, e.g. "
    "both patients of an A40 merge",
)
@click.option("--ins", help="the patient's INS instead: pseudonymised here, never printed")
@click.option(
    "--ins-oid",
    help="the INS's OID [default: each INS OID (NIR, NIA, test, demo): the same number "
    "under any of them is the same person]",
)
@click.option("--operator", help=OPERATOR_HELP)
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
def patient_erase(
    ctx: click.Context,
    *,
    patient_keys: tuple[str, ...],
    ins: str | None,
    ins_oid: str | None,
    operator: str | None,
    yes: bool,
) -> None:
    """Destroy the patient's data key and stored bodies, and audit it. Irreversible.

    Afterwards the patient's sealed fields on the topics, their dead letters and any
    copy of their bodies cannot be decrypted by any process (a running process may
    still hold the key in memory for RELAIS_PATIENT_KEY_CACHE_S seconds). Copies
    already delivered (the DMP, MSSanté mailboxes, the sender's own systems) are out
    of Relais's reach. The audit event names the operator and the pseudonym's prefix.
    """
    who = _operator(ctx, operator)
    if not patient_keys and not ins:
        raise click.UsageError("name the patient: --patient-key KEY or --ins INS")
    if odd := [k for k in patient_keys if not re.fullmatch(r"[0-9a-f]{64}", k)]:
        raise click.UsageError(f"--patient-key {odd[0][:20]!r}: a pseudonym is 64 hex digits")
    keyring = _keyring(ctx)
    targets = list(patient_keys) + (_by_ins(keyring, ins, ins_oid) if ins else [])
    if not yes:
        click.confirm("Erase this patient's data? This cannot be undone", abort=True)
    asyncio.run(_erase(ctx, keyring, targets, who))


def _by_ins(keyring: Keyring, ins: str, oid: str | None) -> list[str]:
    """The patient keys of an INS: under its OID, or under each INS OID (those with a key)."""
    from domain.ins import INS_OIDS  # noqa: PLC0415
    from relais.keyring import pseudonymise  # noqa: PLC0415
    from relais.patient_keys.vault import PatientVault  # noqa: PLC0415

    keys = [pseudonymise(keyring, f"{o}|{ins.strip()}") for o in ([oid] if oid else INS_OIDS)]
    if oid:
        return keys
    vault = keyring.patients
    assert isinstance(vault, PatientVault)
    found = [k for k in keys if vault.current_key_id(k) is not None]
    if not found:
        raise click.ClickException(
            "no data key for this INS under any INS OID: the patient was never seen, was "
            "already erased, or is known only by a local id (give --patient-key, from "
            "`relais identity list` or `relais trace`)"
        )
    return found


def _keyring(ctx: click.Context) -> Keyring:
    from relais.keyring_source import load_keyring  # noqa: PLC0415 - fast --help

    settings = settings_of(ctx)
    if not settings.keys.patient_keys:
        raise click.ClickException(
            "per-patient keys are off: there is no patient key to destroy. Set "
            "RELAIS_PATIENT_KEYS=yes (and the RELAIS_DOCUMENT_STORE the processes use)"
        )
    return load_keyring(settings)


async def _erase(ctx: click.Context, keyring: Keyring, targets: list[str], who: str) -> None:
    """Each patient in turn: the audit of the request (naming the key about to go), the
    erasure, the audit of what went; the first failure stops the run (run it again)."""
    from relais.document_store.open import open_store  # noqa: PLC0415
    from relais.patient_keys.erasure import (  # noqa: PLC0415
        erase_patient,
        erasure_audit,
        erasure_requested_audit,
    )
    from relais.patient_keys.vault import PatientVault  # noqa: PLC0415

    vault = keyring.patients
    assert isinstance(vault, PatientVault)  # load_keyring attaches one when the keys are on
    store = open_store(settings_of(ctx))
    try:
        for patient_key in targets:
            key_id = vault.current_key_id(patient_key)
            now = datetime.now(UTC)
            asked = erasure_requested_audit(patient_key, key_id, operator=who, now=now)
            await _audit(ctx, asked, patient_key, done=False)
            erased = await erase_patient(vault, store, patient_key)
            key = f"key {erased.key_id} destroyed" if erased.key_id else "no data key left"
            if erased.key_id and erased.key_id.endswith("(corrupt record)"):
                key += " (its record was corrupt: deleted, every earlier version marked erased)"
            click.echo(f"patient {patient_key[:16]}: {erased.bodies} stored bodies erased, {key}")
            audit = erasure_audit(erased, operator=who, now=datetime.now(UTC))
            await _audit(ctx, audit, patient_key, done=True)
            click.echo(f"audited (operator {who}, audit {audit['audit_id']})")
    finally:
        await store.close()


async def _audit(ctx: click.Context, audit: Record, patient_key: str, *, done: bool) -> None:
    try:
        await _bus(ctx).send("AuditEvent", audit, key=audit["event_id"])
    except Exception as exc:
        state = "is erased" if done else "was not erased"
        raise click.ClickException(
            f"patient {patient_key[:16]} {state} and the audit event was not written "
            f"({type(exc).__name__}): run the same command again once the broker answers "
            "(erasing again is harmless; the audit written before the erasure names the key)"
        ) from None
