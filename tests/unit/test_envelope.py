"""AES-256-GCM envelope: round trip, rotation, and every way opening must fail."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relais import keyring as keyring_module
from relais.envelope import (
    NONCE_SIZE,
    Envelope,
    EnvelopeError,
    MalformedEnvelopeError,
    TamperedEnvelopeError,
    UnknownKeyError,
    open_envelope,
    seal,
)
from relais.keyring import Keyring

PURPOSES = ("identity", "content", "original", "recipient")
KEYRING = Keyring.generate("k-test")
# Synthetic bytes only: nothing here resembles a real identity or document.
PLAINTEXT = bytes(range(24))

event_ids = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    min_size=1,
    max_size=80,
)


@given(plaintext=st.binary(max_size=4096), event_id=event_ids, purpose=st.sampled_from(PURPOSES))
def test_round_trip(plaintext: bytes, event_id: str, purpose: str) -> None:
    envelope = seal(KEYRING, plaintext, event_id=event_id, purpose=purpose)
    assert envelope.key_id == "k-test"
    assert len(envelope.nonce) == NONCE_SIZE
    assert open_envelope(KEYRING, envelope, event_id=event_id, purpose=purpose) == plaintext


@given(plaintext=st.binary(max_size=256), event_id=event_ids)
def test_record_round_trip(plaintext: bytes, event_id: str) -> None:
    envelope = seal(KEYRING, plaintext, event_id=event_id, purpose="content")
    record = envelope.to_record()
    assert set(record) == {"key_id", "nonce", "ciphertext"}
    assert Envelope.from_record(record) == envelope


def test_each_seal_draws_a_fresh_nonce() -> None:
    first = seal(KEYRING, PLAINTEXT, event_id="e1", purpose="content")
    second = seal(KEYRING, PLAINTEXT, event_id="e1", purpose="content")
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_from_record_accepts_bytearray_and_ignores_extra_fields() -> None:
    envelope = seal(KEYRING, PLAINTEXT, event_id="e1", purpose="content")
    record = {
        "key_id": envelope.key_id,
        "nonce": bytearray(envelope.nonce),
        "ciphertext": memoryview(envelope.ciphertext),
        "added_later": 1,
    }
    assert Envelope.from_record(record) == envelope


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({"nonce": bytes(12), "ciphertext": bytes(16)}, id="no-key-id"),
        pytest.param({"key_id": "k", "ciphertext": bytes(16)}, id="no-nonce"),
        pytest.param({"key_id": "k", "nonce": bytes(12)}, id="no-ciphertext"),
        pytest.param({"key_id": 1, "nonce": bytes(12), "ciphertext": bytes(16)}, id="int-id"),
        pytest.param({"key_id": "", "nonce": bytes(12), "ciphertext": bytes(16)}, id="empty-id"),
        pytest.param({"key_id": "k", "nonce": "n" * 12, "ciphertext": bytes(16)}, id="str-nonce"),
        pytest.param({"key_id": "k", "nonce": bytes(8), "ciphertext": bytes(16)}, id="short-nonce"),
        pytest.param({"key_id": "k", "nonce": bytes(12), "ciphertext": None}, id="none-ct"),
        pytest.param({"key_id": "k", "nonce": bytes(12), "ciphertext": bytes(15)}, id="no-tag"),
    ],
)
def test_from_record_rejects_wrong_shape(record: dict[str, object]) -> None:
    with pytest.raises(MalformedEnvelopeError):
        Envelope.from_record(record)


def test_from_record_rejects_non_mapping() -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_record([("key_id", "k")])  # type: ignore[arg-type]


def test_rotation_seals_with_new_key_and_still_opens_old_envelopes() -> None:
    old = seal(KEYRING, PLAINTEXT, event_id="e1", purpose="identity")
    rotated = KEYRING.rotated("k-next")
    new = seal(rotated, PLAINTEXT, event_id="e2", purpose="identity")
    assert new.key_id == "k-next"
    assert open_envelope(rotated, old, event_id="e1", purpose="identity") == PLAINTEXT
    assert open_envelope(rotated, new, event_id="e2", purpose="identity") == PLAINTEXT


def test_keyring_without_the_old_key_raises_unknown_key() -> None:
    old = seal(KEYRING, PLAINTEXT, event_id="e1", purpose="identity")
    rotated = KEYRING.rotated("k-next")
    pruned = Keyring(
        active_key_id="k-next",
        keys={"k-next": rotated.key("k-next")},
        pseudonym_key=rotated.pseudonym_key,
    )
    with pytest.raises(UnknownKeyError) as caught:
        open_envelope(pruned, old, event_id="e1", purpose="identity")
    assert caught.value.key_id == "k-test"
    assert "'k-test' is not in the keyring" in str(caught.value)
    assert "add the retired key to the keyring file" in str(caught.value)
    assert isinstance(caught.value, EnvelopeError)


def test_unknown_key_error_is_one_class_in_both_modules() -> None:
    assert keyring_module.UnknownKeyError is UnknownKeyError
    with pytest.raises(UnknownKeyError):
        KEYRING.key("k-absent")


def test_tampering_with_any_ciphertext_or_nonce_byte_is_detected() -> None:
    envelope = seal(KEYRING, PLAINTEXT, event_id="e1", purpose="content")
    tampered: list[Envelope] = []
    for index in range(len(envelope.ciphertext)):
        altered = bytearray(envelope.ciphertext)
        altered[index] ^= 0x01
        tampered.append(dataclasses.replace(envelope, ciphertext=bytes(altered)))
    for index in range(len(envelope.nonce)):
        altered = bytearray(envelope.nonce)
        altered[index] ^= 0x80
        tampered.append(dataclasses.replace(envelope, nonce=bytes(altered)))
    for candidate in tampered:
        with pytest.raises(TamperedEnvelopeError):
            open_envelope(KEYRING, candidate, event_id="e1", purpose="content")


def test_truncated_ciphertext_is_detected() -> None:
    envelope = seal(KEYRING, PLAINTEXT, event_id="e1", purpose="content")
    tampered = dataclasses.replace(envelope, ciphertext=envelope.ciphertext[1:])
    with pytest.raises(TamperedEnvelopeError):
        open_envelope(KEYRING, tampered, event_id="e1", purpose="content")


@pytest.mark.parametrize(
    ("event_id", "purpose"),
    [
        pytest.param("e2", "identity", id="other-event"),
        pytest.param("e1", "content", id="other-purpose"),
        pytest.param("e1 ", "identity", id="event-suffix"),
    ],
)
def test_envelope_moved_to_another_event_or_field_fails(event_id: str, purpose: str) -> None:
    envelope = seal(KEYRING, PLAINTEXT, event_id="e1", purpose="identity")
    with pytest.raises(TamperedEnvelopeError) as caught:
        open_envelope(KEYRING, envelope, event_id=event_id, purpose=purpose)
    message = str(caught.value)
    assert "failed authentication" in message
    assert "another event/purpose" in message


def test_same_key_id_with_another_key_fails() -> None:
    envelope = seal(KEYRING, PLAINTEXT, event_id="e1", purpose="content")
    impostor = Keyring.generate("k-test")
    with pytest.raises(TamperedEnvelopeError):
        open_envelope(impostor, envelope, event_id="e1", purpose="content")


def test_relabelled_key_id_fails_even_when_it_maps_to_the_same_key() -> None:
    # The key id is authenticated too, so an alias cannot be swapped in.
    key = KEYRING.key("k-test")
    aliased = Keyring(
        active_key_id="k-test",
        keys={"k-test": key, "k-alias": key},
        pseudonym_key=KEYRING.pseudonym_key,
    )
    envelope = seal(aliased, PLAINTEXT, event_id="e1", purpose="content")
    relabelled = dataclasses.replace(envelope, key_id="k-alias")
    with pytest.raises(TamperedEnvelopeError):
        open_envelope(aliased, relabelled, event_id="e1", purpose="content")


@pytest.mark.parametrize(
    ("event_id", "purpose"),
    [("", "content"), ("e1", ""), ("e\x001", "content"), ("e1", "con\x00tent")],
)
def test_ambiguous_associated_data_is_refused(event_id: str, purpose: str) -> None:
    with pytest.raises(ValueError, match="NUL"):
        seal(KEYRING, PLAINTEXT, event_id=event_id, purpose=purpose)


def test_repr_does_not_dump_ciphertext() -> None:
    envelope = seal(KEYRING, PLAINTEXT, event_id="e1", purpose="content")
    assert repr(envelope) == f"Envelope(key_id='k-test', ciphertext=<{len(PLAINTEXT) + 16} bytes>)"
