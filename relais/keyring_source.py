"""Where the process's keyring comes from: RELAIS_KEYRING (inline) or RELAIS_KEYRING_FILE."""

from __future__ import annotations

from relais.keyring import Keyring, KeyringError
from relais.settings import Settings


def load_keyring(settings: Settings) -> Keyring:
    if settings.keys.json:
        return Keyring.from_json(settings.keys.json, origin="RELAIS_KEYRING")
    if settings.keys.file:
        return Keyring.from_file(settings.keys.file)
    raise KeyringError(
        "no keyring: set RELAIS_KEYRING_FILE to a keyring file "
        "(create one with `relais keys generate --out PATH`) or RELAIS_KEYRING to its JSON"
    )
