"""Where the process's keyring comes from: RELAIS_KEYRING (inline) or RELAIS_KEYRING_FILE;
with RELAIS_PATIENT_KEYS, the patients' data key vault attached."""

from __future__ import annotations

from relais.keyring import Keyring, KeyringError
from relais.settings import Settings


def load_keyring(settings: Settings) -> Keyring:
    """The keyring; with RELAIS_PATIENT_KEYS, it seals and opens with patients' data keys."""
    if settings.keys.patient_keys:
        from relais.patient_keys.open import with_patient_keys  # noqa: PLC0415 - boto3

        return with_patient_keys(settings, _base(settings))
    return _base(settings)


def _base(settings: Settings) -> Keyring:
    if settings.keys.json:
        return Keyring.from_json(settings.keys.json, origin="RELAIS_KEYRING")
    if settings.keys.file:
        return Keyring.from_file(settings.keys.file)
    raise KeyringError(
        "no keyring: set RELAIS_KEYRING_FILE to a keyring file "
        "(create one with `relais keys generate --out PATH`) or RELAIS_KEYRING to its JSON"
    )
