"""A process finds its keyring in RELAIS_KEYRING (inline JSON) or RELAIS_KEYRING_FILE."""

from __future__ import annotations

from pathlib import Path

import pytest

from relais.keyring import Keyring, KeyringError
from relais.keyring_source import load_keyring
from relais.settings import Settings


def test_inline_json_wins(tmp_path: Path) -> None:
    inline, on_disk = Keyring.generate(), Keyring.generate()
    on_disk.write(tmp_path / "k.json")
    settings = Settings.from_env(
        {"RELAIS_KEYRING": inline.to_json(), "RELAIS_KEYRING_FILE": str(tmp_path / "k.json")}
    )
    assert load_keyring(settings).active_key_id == inline.active_key_id


def test_file(tmp_path: Path) -> None:
    keyring = Keyring.generate()
    keyring.write(tmp_path / "k.json")
    settings = Settings.from_env({"RELAIS_KEYRING_FILE": str(tmp_path / "k.json")})
    assert load_keyring(settings).keys == keyring.keys


def test_none_says_how_to_make_one() -> None:
    with pytest.raises(KeyringError, match="relais keys generate"):
        load_keyring(Settings.from_env({}))
