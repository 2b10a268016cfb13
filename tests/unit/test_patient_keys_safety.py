"""Per-patient keys under failure: only a tombstone means "erased" (a store not there is
retried, a record missing from one that answers is a dead letter), dead letters never crash on the patient's key nor make an erased patient a new
one, re-wraps never resurrect an erased key, rotation and retirement in a safe order, the
identity traits digest is keyed. Synthetic pseudonyms and the demo's samples only."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import main
from relais.deadletter import Failure, Origin, dead_letter, failure_of
from relais.document_store.errors import StoreUnavailableError
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring, pseudonymise, warm_patient_key
from relais.patient_keys.errors import (
    ErasedKeyError,
    MasterKeyRetiredError,
    PatientKeyError,
    PatientKeyMissingError,
)
from relais.patient_keys.kms import LocalKms
from relais.patient_keys.stores import FolderKeyStore, KeyStore, MemoryKeyStore
from relais.patient_keys.vault import PatientVault, parse_key_id
from streams.identity.rules import legacy_traits_digest, traits_digest, upgraded
from streams.identity.state import PatientState

MASTER = Keyring.generate("m1")
PATIENT = "a" * 64
ORIGIN = Origin("relais.documents.submitted.v1", 0, 7, "e-1")


def vault(store: KeyStore, keyring: Keyring = MASTER) -> PatientVault:
    return PatientVault(
        LocalKms(keyring),
        store,
        namer=lambda key: pseudonymise(keyring, key, domain="patient-key"),
    )


def with_vault(store: KeyStore, keyring: Keyring = MASTER) -> Keyring:
    return replace(keyring, patients=vault(store, keyring))


# -- P0: only a tombstone means "erased" ------------------------------------------------------
def test_a_key_store_not_there_is_retried_and_a_key_missing_from_one_is_a_dead_letter(
    tmp_path: Path,
) -> None:
    made = FolderKeyStore(tmp_path / "a" / "keys")
    key_id, key = vault(made).sealing_key(PATIENT)
    absent = vault(FolderKeyStore(tmp_path / "b" / "keys"))  # another RELAIS_DATA_DIR, unmounted
    for _ in range(2):  # not remembered as erased
        with pytest.raises(StoreUnavailableError) as down:
            absent.key(key_id)
        assert not isinstance(down.value, PatientKeyError)  # an outage: retried
    assert "RELAIS_DOCUMENT_STORE" in str(down.value)
    assert not (tmp_path / "b").exists()  # reading created no store
    (tmp_path / "c" / "keys").mkdir(parents=True)
    answering = vault(FolderKeyStore(tmp_path / "c" / "keys"))  # there, but without the key
    for _ in range(2):
        with pytest.raises(PatientKeyMissingError) as missing:
            answering.key(key_id)
    assert not isinstance(missing.value, StoreUnavailableError)  # a dead letter, not a loop
    assert not isinstance(missing.value, ErasedKeyError)
    assert failure_of(missing.value).reason_code == "patient-key-missing"
    assert "RELAIS_DATA_DIR" in str(missing.value)
    assert "relais dlq replay" in str(missing.value)
    assert vault(made).key(key_id) == key  # the right store: it opens


def test_erasure_writes_a_tombstone_first_and_only_it_makes_a_key_erased() -> None:
    store = MemoryKeyStore()
    key_id, _ = vault(store).sealing_key(PATIENT)
    name, version = parse_key_id(key_id)
    other = f"p.{name}.0badcafe"  # a version this store never made nor erased
    with pytest.raises(PatientKeyMissingError):
        vault(store).key(other)
    assert vault(store).erase(PATIENT) == key_id
    assert store.buried(name, version)
    assert store.buried(name, None)  # the patient's erasure marker
    with pytest.raises(ErasedKeyError):
        vault(store).key(key_id)
    with pytest.raises(ErasedKeyError):  # every version from before the erasure is erased
        vault(store).key(other)


# -- P1-3: dead letters never crash on the patient's key ----------------------------------------
def test_a_dead_letter_falls_back_to_the_shared_key_when_the_patients_key_fails() -> None:
    store = MemoryKeyStore()
    vault(store).sealing_key(PATIENT)  # wrapped under m1
    retired = MASTER.rotated("m2").retire("m1")
    keyring = with_vault(store, retired)
    with pytest.raises(MasterKeyRetiredError):
        keyring.for_patient(PATIENT).sealing_key()
    failure = Failure("undecryptable-field", "retired master key")
    letter = dead_letter(
        keyring, stage="s", failure=failure, origin=ORIGIN, original=b"x", now=_now(),
        patient_key=PATIENT,
    )  # fmt: skip
    assert letter["original"]["key_id"] == "m2"  # the shared active key: no crash loop


def test_a_dead_letter_never_makes_an_erased_patient_a_new_key() -> None:
    store = MemoryKeyStore()
    vault(store).sealing_key(PATIENT)
    vault(store).erase(PATIENT)
    failure = Failure("transcode-failed", "another failure than the erasure")
    letter = dead_letter(
        with_vault(store), stage="s", failure=failure, origin=ORIGIN, original=b"x", now=_now(),
        patient_key=PATIENT,
    )  # fmt: skip
    assert letter["original"]["key_id"] == "m1"
    assert list(store.names()) == []
    at_door = dead_letter(
        with_vault(store).minting(), stage="mllp", failure=failure, origin=Origin("mllp"),
        original=b"x", now=_now(), patient_key=PATIENT,
    )  # fmt: skip
    assert at_door["original"]["key_id"] == "m1"  # not even at the door, minting or not
    assert list(store.names()) == []


def test_a_dead_letter_uses_the_patients_existing_key() -> None:
    store = MemoryKeyStore()
    key_id, _ = vault(store).sealing_key(PATIENT)
    keyring = with_vault(store)
    failure = Failure("transcode-failed", "x")
    letter = dead_letter(
        keyring, stage="s", failure=failure, origin=ORIGIN, original=b"raw", now=_now(),
        patient_key=PATIENT,
    )  # fmt: skip
    assert letter["original"]["key_id"] == key_id
    plain = open_envelope(
        keyring,
        Envelope.from_record(letter["original"]),
        event_id=letter["dead_letter_id"],
        purpose="original",
    )
    assert plain == b"raw"


# -- P1-4: warming off the loop ----------------------------------------------------------------
def test_warming_loads_the_key_in_a_thread_and_skips_a_cached_one() -> None:
    store = MemoryKeyStore()
    key_id, _ = vault(store).sealing_key(PATIENT)
    fresh = with_vault(store)
    assert fresh.patients is not None
    assert not fresh.patients.is_cached(PATIENT)
    asyncio.run(warm_patient_key(fresh, PATIENT))
    assert fresh.patients.is_cached(PATIENT)
    store.objects.clear()  # from now on the cache alone answers
    assert fresh.key(key_id)
    asyncio.run(warm_patient_key(fresh, "b" * 64))  # no key, not created, nothing raised
    assert list(store.names()) == []


# -- P1-5: a re-wrap never resurrects an erased key -------------------------------------------
class ErasedDuringRewrap(MemoryKeyStore):
    """The erasure runs between the re-wrap's read and its write; ``honours_tag`` False: a
    server that ignores ``If-Match``."""

    def __init__(self, *, honours_tag: bool) -> None:
        super().__init__()
        self.honours_tag = honours_tag
        self.eraser: PatientVault | None = None

    def replace(self, name: str, blob: bytes, *, tag: str) -> bool:
        if self.eraser is not None:
            self.eraser.erase(PATIENT)
            self.eraser = None
        if not self.honours_tag:
            self.objects[name] = blob
            return True
        return super().replace(name, blob, tag=tag)


@pytest.mark.parametrize("honours_tag", [True, False])
def test_a_rewrap_racing_an_erasure_never_writes_the_key_back(honours_tag: bool) -> None:
    store = ErasedDuringRewrap(honours_tag=honours_tag)
    key_id, _ = vault(store).sealing_key(PATIENT)
    rotated = MASTER.rotated("m2")
    store.eraser = vault(store, rotated)
    done = vault(store, rotated).rewrap()
    assert done.rewrapped == 0
    assert list(store.names()) == []
    with pytest.raises(ErasedKeyError):
        vault(store, rotated).key(key_id)


# -- P1-6: rotate, restart, rewrap, retire ----------------------------------------------------
def test_rotate_does_not_rewrap_and_retire_refuses_until_every_key_moved(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    MASTER.write(path)
    env = {"RELAIS_PATIENT_KEYS": "yes", "RELAIS_DATA_DIR": str(tmp_path / "data")}
    store = FolderKeyStore(tmp_path / "data" / "documents" / "keys")
    vault(store).sealing_key(PATIENT)
    runner = CliRunner()
    rotated = runner.invoke(main, ["keys", "rotate", "--file", str(path)], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert "relais keys rewrap" in rotated.output
    assert f"relais keys retire m1 --file {path}" in rotated.output
    assert vault(store).wrapped_under() == {"m1": 1}  # nothing re-wrapped yet
    refused = runner.invoke(main, ["keys", "retire", "m1", "--file", str(path)], env=env)
    assert refused.exit_code == 1
    assert "still wrapped under 'm1'" in refused.output
    vault(store).sealing_key("b" * 64)  # a process not restarted yet, on the old file
    assert runner.invoke(main, ["keys", "rewrap", "--file", str(path)], env=env).exit_code == 0
    retired = runner.invoke(main, ["keys", "retire", "m1", "--file", str(path)], env=env)
    assert retired.exit_code == 0, retired.output
    assert Keyring.from_file(path).retired == frozenset({"m1"})


# -- P1-7a: the traits digest is keyed, and state from before upgrades harmlessly ---------------
TRAITS = {"birth_name": "DUPONT", "given_names": "MARIE", "birth_date": "19800101", "sex": "F"}


def test_the_traits_digest_is_keyed() -> None:
    one, other = traits_digest(TRAITS, b"k" * 32), traits_digest(TRAITS, b"j" * 32)
    assert one != other
    assert one.startswith("k1:")
    assert legacy_traits_digest(TRAITS) not in one


def test_a_legacy_digest_of_the_same_traits_upgrades_and_of_others_stays() -> None:
    key, legacy = b"k" * 32, legacy_traits_digest(TRAITS)
    state = PatientState(traits_digest=legacy, blocked_digests=(legacy, "00" * 32))
    new = upgraded(state, TRAITS, key)
    assert new.traits_digest == traits_digest(TRAITS, key)
    assert new.blocked_digests == (traits_digest(TRAITS, key), "00" * 32)
    changed = upgraded(state, {**TRAITS, "birth_name": "MARTIN"}, key)
    assert changed.traits_digest == legacy  # other traits: compared unequal, as before
    assert upgraded(new, TRAITS, key) == new


def _now() -> datetime:
    return datetime(2026, 11, 22, 9, 15, tzinfo=UTC)


# -- P1-7b: a message refused at the door after its PID was read -------------------------------
def test_the_door_seals_a_refused_message_under_its_patients_key() -> None:
    from ops.demo.samples import DOMINIQUE, LAB, sample  # noqa: PLC0415
    from producers.hl7.message import parse_message  # noqa: PLC0415
    from producers.publisher import _patient_of  # noqa: PLC0415
    from producers.submission import patient_key  # noqa: PLC0415

    message = parse_message(sample(LAB, DOMINIQUE, 1))
    keyring = with_vault(MemoryKeyStore())
    assert _patient_of(keyring, message) == patient_key(keyring, message)
    assert _patient_of(MASTER, message) is None  # per-patient keys off
    assert _patient_of(keyring, None) is None  # unreadable: the shared key
