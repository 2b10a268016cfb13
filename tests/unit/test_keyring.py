"""Keyring: generation, rotation, the JSON file format, file safety, pseudonyms."""

from __future__ import annotations

import base64
import json
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from relais.keyring import KEY_SIZE, Keyring, KeyringError, pseudonymise

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
PSEUDO = bytes(range(64, 96))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def document(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "active": "kb",
        "keys": {"ka": b64(KEY_A), "kb": b64(KEY_B)},
        "pseudonym_key": b64(PSEUDO),
    }
    doc.update(changes)
    return doc


def secrets_in(message: str) -> list[str]:
    """Any key material (raw-ish or base64, whole or in part) that leaked into a message."""
    leaks = []
    for key in (KEY_A, KEY_B, PSEUDO):
        for form in (b64(key), b64(key)[:12], b64(key[:16]), key.hex()[:16]):
            if form in message:
                leaks.append(form)
    return leaks


def test_generate_default_id_is_dated_and_keys_are_random() -> None:
    first = Keyring.generate(now=NOW)
    second = Keyring.generate(now=NOW)
    assert re.fullmatch(r"k20261122-[0-9a-f]{4}", first.active_key_id)
    assert list(first.keys) == [first.active_key_id]
    assert len(first.key(first.active_key_id)) == KEY_SIZE
    assert len(first.pseudonym_key) == KEY_SIZE
    assert first.key(first.active_key_id) != second.key(second.active_key_id)
    assert first.pseudonym_key != second.pseudonym_key


def test_generate_with_explicit_id_validates_it() -> None:
    assert Keyring.generate("k1").active_key_id == "k1"
    with pytest.raises(KeyringError, match="not a valid key id"):
        Keyring.generate("has space")


def test_keys_are_read_only_and_repr_hides_them() -> None:
    keyring = Keyring(active_key_id="kb", keys={"ka": KEY_A, "kb": KEY_B}, pseudonym_key=PSEUDO)
    with pytest.raises(TypeError):
        keyring.keys["kc"] = KEY_A  # type: ignore[index]
    assert repr(keyring) == "Keyring(active_key_id='kb', key_ids=('ka', 'kb'))"
    assert not secrets_in(repr(keyring))
    assert str(KEY_A) not in repr(keyring)


def test_keyring_copies_the_mapping_it_is_given() -> None:
    keys = {"ka": KEY_A}
    keyring = Keyring(active_key_id="ka", keys=keys, pseudonym_key=PSEUDO)
    keys["kb"] = KEY_B
    assert list(keyring.keys) == ["ka"]


def test_rotated_adds_an_active_key_and_keeps_the_rest() -> None:
    keyring = Keyring.generate("k1")
    rotated = keyring.rotated("k2")
    assert rotated.active_key_id == "k2"
    assert list(rotated.keys) == ["k1", "k2"]
    assert rotated.key("k1") == keyring.key("k1")
    assert rotated.key("k2") != keyring.key("k1")
    assert rotated.pseudonym_key == keyring.pseudonym_key
    assert keyring.active_key_id == "k1"  # the original is untouched


def test_rotated_default_ids_never_collide() -> None:
    keyring = Keyring.generate(now=NOW)
    for _ in range(20):
        keyring = keyring.rotated(now=NOW)
    assert len(keyring.keys) == 21
    assert all(key_id.startswith("k20261122-") for key_id in keyring.keys)


def test_rotating_to_an_existing_id_is_refused() -> None:
    keyring = Keyring.generate("k1").rotated("k2")
    with pytest.raises(KeyringError, match="'k1' is already in the keyring"):
        keyring.rotated("k1")


def test_json_round_trip() -> None:
    keyring = Keyring.generate("k1").rotated("k2")
    text = keyring.to_json()
    assert set(json.loads(text)) == {"active", "keys", "pseudonym_key"}
    assert Keyring.from_json(text) == keyring


def test_from_json_reads_the_documented_format() -> None:
    keyring = Keyring.from_json(json.dumps(document()))
    assert keyring.active_key_id == "kb"
    assert dict(keyring.keys) == {"ka": KEY_A, "kb": KEY_B}
    assert keyring.pseudonym_key == PSEUDO


BAD_DOCUMENTS = [
    pytest.param("{not json", "not valid JSON", id="syntax"),
    pytest.param(json.dumps([1, 2]), "expected a JSON object", id="not-object"),
    pytest.param(
        json.dumps({k: v for k, v in document().items() if k != "active"}),
        "missing ['active']",
        id="no-active",
    ),
    pytest.param(json.dumps(document(activ="kb")), "unexpected ['activ']", id="unknown-field"),
    pytest.param(json.dumps(document(keys={})), "'keys' must be a non-empty", id="no-keys"),
    pytest.param(json.dumps(document(keys=[b64(KEY_A)])), "'keys' must be", id="keys-list"),
    pytest.param(
        json.dumps(document(keys={"ka": b64(KEY_A)[:-4] + "!!!!", "kb": b64(KEY_B)})),
        "key 'ka' is not valid base64",
        id="bad-base64",
    ),
    pytest.param(
        json.dumps(document(keys={"ka": 42, "kb": b64(KEY_B)})),
        "key 'ka' must be a base64 string",
        id="key-not-string",
    ),
    pytest.param(
        json.dumps(document(keys={"ka": b64(KEY_A[:16]), "kb": b64(KEY_B)})),
        "key 'ka' is 16 bytes; it must be exactly 32 bytes",
        id="short-key",
    ),
    pytest.param(
        json.dumps(document(keys={"ka": b64(KEY_A + KEY_B), "kb": b64(KEY_B)})),
        "key 'ka' is 64 bytes",
        id="long-key",
    ),
    pytest.param(
        json.dumps(document(pseudonym_key=b64(PSEUDO[:31]))),
        "'pseudonym_key' is 31 bytes",
        id="short-pseudonym-key",
    ),
    pytest.param(
        json.dumps(document(active="kz")),
        "'active' names key 'kz', which is not in 'keys'; set 'active' to one of: ka, kb",
        id="active-not-in-keys",
    ),
    pytest.param(
        json.dumps(document(active=None)), "'active' is not a valid key id", id="active-null"
    ),
    pytest.param(
        # A key pasted where its id belongs: the message must not echo it.
        json.dumps(document(keys={b64(KEY_A): b64(KEY_A), "kb": b64(KEY_B)})),
        "a key id in 'keys' is not a valid key id",
        id="key-as-id",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_DOCUMENTS)
def test_from_json_errors_say_what_and_where_without_key_material(text: str, expected: str) -> None:
    with pytest.raises(KeyringError) as caught:
        Keyring.from_json(text, origin="/etc/relais/keyring.json")
    message = str(caught.value)
    assert message.startswith("/etc/relais/keyring.json: ")
    assert expected in message
    assert not secrets_in(message)
    assert isinstance(caught.value, ValueError)


def test_from_json_default_origin_names_the_variable() -> None:
    with pytest.raises(KeyringError, match=r"^RELAIS_KEYRING: "):
        Keyring.from_json("[]")


def test_write_produces_a_0600_file_that_from_file_reads_back(tmp_path: Path) -> None:
    keyring = Keyring.generate("k1").rotated("k2")
    path = tmp_path / "keyring.json"
    keyring.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.from_file(path) == keyring


def test_write_replaces_an_existing_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    first = Keyring.generate("k1")
    first.write(path)
    second = first.rotated("k2")
    second.write(path)
    assert Keyring.from_file(path) == second
    assert [p.name for p in tmp_path.iterdir()] == ["keyring.json"]


def test_from_file_missing_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(KeyringError) as caught:
        Keyring.from_file(path)
    assert str(path) in str(caught.value)
    assert f"relais keys generate --out {path}" in str(caught.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_from_file_refuses_group_or_world_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keyring.json"
    Keyring.generate("k1").write(path)
    path.chmod(mode)
    with pytest.raises(KeyringError) as caught:
        Keyring.from_file(path)
    assert f"chmod 600 {path}" in str(caught.value)
    assert f"{mode:04o}" in str(caught.value)


def test_from_file_refuses_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "keyring.json"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyringError) as caught:
        Keyring.from_file(directory)
    assert str(caught.value) == f"keyring file {directory} cannot be read: Is a directory"


def test_from_file_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_bytes(b"\xff\xfe{}")
    path.chmod(0o600)
    with pytest.raises(KeyringError, match="not UTF-8 JSON text"):
        Keyring.from_file(path)


def test_from_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text(json.dumps(document(active="kz")), encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(KeyringError) as caught:
        Keyring.from_file(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert not secrets_in(str(caught.value))


def test_pseudonymise_is_a_deterministic_hmac() -> None:
    keyring = Keyring(active_key_id="ka", keys={"ka": KEY_A}, pseudonym_key=PSEUDO)
    value = "synthetic-0001"
    pseudonym = pseudonymise(keyring, value)
    assert pseudonym == pseudonymise(keyring, value)
    assert re.fullmatch(r"[0-9a-f]{64}", pseudonym)
    assert value not in pseudonym
    assert pseudonymise(keyring, "synthetic-0002") != pseudonym


def test_pseudonyms_differ_per_domain_and_per_keyring() -> None:
    keyring = Keyring.generate("k1")
    value = "synthetic-0001"
    assert pseudonymise(keyring, value) == pseudonymise(keyring, value, domain="patient")
    assert pseudonymise(keyring, value, domain="recipient") != pseudonymise(keyring, value)
    assert pseudonymise(Keyring.generate("k1"), value) != pseudonymise(keyring, value)


def test_domain_and_value_cannot_be_shifted_into_each_other() -> None:
    keyring = Keyring.generate("k1")
    with pytest.raises(ValueError, match="NUL"):
        pseudonymise(keyring, "b", domain="a\x00")
    with pytest.raises(ValueError, match="NUL"):
        pseudonymise(keyring, "x", domain="")


def test_pseudonyms_survive_rotation_and_serialisation() -> None:
    keyring = Keyring.generate("k1")
    rotated = keyring.rotated("k2")
    reloaded = Keyring.from_json(rotated.to_json())
    value = "synthetic-0001"
    assert pseudonymise(rotated, value) == pseudonymise(keyring, value)
    assert pseudonymise(reloaded, value) == pseudonymise(keyring, value)
