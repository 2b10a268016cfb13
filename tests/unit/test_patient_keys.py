"""Per-patient data keys: wrap/unwrap, the vault (create, resolve, cache, erase, re-wrap),
master keys retired or unknown, the key stores. Synthetic pseudonyms only."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relais.document_store.errors import StoreUnavailableError
from relais.envelope import UnknownKeyError
from relais.keyring import Keyring, KeyringError, RetiredKeyError, pseudonymise
from relais.patient_keys.errors import (
    ErasedKeyError,
    MasterKeyRetiredError,
    MasterKeyUnknownError,
    PatientKeyError,
    WrappedKeyTamperedError,
)
from relais.patient_keys.kms import LocalKms, WrappedKey
from relais.patient_keys.stores import FolderKeyStore, KeyStore, MemoryKeyStore
from relais.patient_keys.vault import PatientVault, parse_key_id

MASTER = Keyring.generate("m1")
PATIENT_A, PATIENT_B = "a" * 64, "b" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def vault(
    store: KeyStore, keyring: Keyring = MASTER, *, clock: Clock | None = None
) -> PatientVault:
    return PatientVault(
        LocalKms(keyring),
        store,
        namer=lambda key: pseudonymise(keyring, key, domain="patient-key"),
        cache_s=60.0,
        clock=clock or Clock(),
    )


# -- the KMS ---------------------------------------------------------------------------------
@given(data_key=st.binary(min_size=32, max_size=32), context=st.text(min_size=1, max_size=60))
def test_wrap_unwrap_round_trip(data_key: bytes, context: str) -> None:
    kms = LocalKms(MASTER)
    wrapped = kms.wrap(data_key, context=context)
    assert wrapped.master_key_id == "m1"
    assert data_key not in wrapped.blob
    assert kms.unwrap(wrapped, context=context) == data_key


def test_a_wrap_moved_to_another_context_or_altered_fails() -> None:
    kms = LocalKms(MASTER)
    wrapped = kms.wrap(bytes(32), context="p.one.1")
    with pytest.raises(WrappedKeyTamperedError):
        kms.unwrap(wrapped, context="p.two.1")
    altered = WrappedKey("m1", wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1]))
    with pytest.raises(WrappedKeyTamperedError):
        kms.unwrap(altered, context="p.one.1")
    assert "blob=<" in repr(wrapped)  # never the bytes


def test_a_wrong_master_key_is_refused() -> None:
    wrapped = LocalKms(MASTER).wrap(bytes(32), context="c")
    other = Keyring.generate("m1")  # same id, other material
    with pytest.raises(WrappedKeyTamperedError):
        LocalKms(other).unwrap(wrapped, context="c")
    with pytest.raises(MasterKeyUnknownError) as unknown:
        LocalKms(Keyring.generate("m9")).unwrap(wrapped, context="c")
    assert isinstance(unknown.value, StoreUnavailableError)  # retried: restart with the file
    assert "restart" in str(unknown.value)


def test_a_retired_master_key_is_refused_with_what_to_do() -> None:
    rotated = MASTER.rotated("m2")
    wrapped = LocalKms(rotated).wrap(bytes(32), context="c")  # under m2
    old = LocalKms(MASTER).wrap(bytes(32), context="c")  # under m1
    retired = rotated.retire("m1")
    assert "m1" not in retired.keys
    assert "m1" in retired.retired
    assert LocalKms(retired).unwrap(wrapped, context="c") == bytes(32)
    with pytest.raises(MasterKeyRetiredError, match="relais keys rewrap"):
        LocalKms(retired).unwrap(old, context="c")
    with pytest.raises(RetiredKeyError, match="retired"):
        retired.key("m1")


def test_the_keyring_file_keeps_retired_ids_and_refuses_odd_ones(tmp_path: Path) -> None:
    retired = MASTER.rotated("m2").retire("m1")
    path = tmp_path / "keyring.json"
    retired.write(path)
    assert Keyring.from_file(path) == retired
    with pytest.raises(KeyringError, match="active key"):
        retired.retire("m2")
    with pytest.raises(KeyringError, match="retired"):
        retired.rotated("m1")
    with pytest.raises(KeyringError, match="reserved"):
        Keyring.generate("p.x")
    with pytest.raises(KeyringError, match="both"):
        Keyring("m2", retired.keys, retired.pseudonym_key, frozenset({"m2"}))


# -- the vault -------------------------------------------------------------------------------
def test_each_patient_gets_one_key_that_a_fresh_process_finds_again() -> None:
    store = MemoryKeyStore()
    first = vault(store)
    key_id, key = first.sealing_key(PATIENT_A)
    assert key_id.startswith("p.")
    assert len(key) == 32
    assert first.sealing_key(PATIENT_A) == (key_id, key)
    assert first.sealing_key(PATIENT_B)[0] != key_id
    assert vault(store).key(key_id) == key  # another process, nothing cached
    assert PATIENT_A not in key_id
    assert PATIENT_A.encode() not in b"".join(store.objects.values())
    assert len(store.objects) == 2


def test_erasure_destroys_the_key_everywhere_and_a_new_key_never_opens_the_old() -> None:
    store = MemoryKeyStore()
    key_id, _ = vault(store).sealing_key(PATIENT_A)
    b_id, b_key = vault(store).sealing_key(PATIENT_B)
    eraser = vault(store)
    assert eraser.erase(PATIENT_A) == key_id
    assert eraser.erase(PATIENT_A) is None  # again: nothing left
    for process in (eraser, vault(store)):
        with pytest.raises(ErasedKeyError) as erased:
            process.key(key_id)
        assert erased.value.reason_code == "patient-erased"
    new_id, _ = vault(store).sealing_key(PATIENT_A)  # a later document: a new key
    assert new_id != key_id
    assert parse_key_id(new_id)[0] == parse_key_id(key_id)[0]
    with pytest.raises(ErasedKeyError):
        vault(store).key(key_id)
    assert vault(store).key(b_id) == b_key


def test_a_process_forgets_an_erased_key_within_its_cache_period() -> None:
    store, clock = MemoryKeyStore(), Clock()
    running = vault(store, clock=clock)
    key_id, key = running.sealing_key(PATIENT_A)
    vault(store).erase(PATIENT_A)
    assert running.key(key_id) == key  # cached: the documented bound
    clock.now = 61.0
    with pytest.raises(ErasedKeyError):
        running.key(key_id)


def test_not_a_patient_key_id() -> None:
    with pytest.raises(PatientKeyError):
        vault(MemoryKeyStore()).key("p.zz.1")
    with pytest.raises(PatientKeyError):
        parse_key_id("p." + "a" * 32 + ".1.2")


def test_a_tampered_record_is_refused() -> None:
    store = MemoryKeyStore()
    key_id, _ = vault(store).sealing_key(PATIENT_A)
    name = parse_key_id(key_id)[0]
    store.objects[name] = b"not json"
    with pytest.raises(WrappedKeyTamperedError):
        vault(store).key(key_id)


def test_rotation_rewraps_every_key_then_the_old_master_can_be_retired() -> None:
    store = MemoryKeyStore()
    ids = {p: vault(store).sealing_key(p) for p in (PATIENT_A, PATIENT_B)}
    rotated = MASTER.rotated("m2")
    before = vault(store, rotated)
    assert before.wrapped_under() == {"m1": 2}
    done = before.rewrap()
    assert (done.rewrapped, done.current, done.refused) == (2, 0, 0)
    assert before.wrapped_under() == {"m2": 2}
    assert vault(store, rotated).rewrap().current == 2
    retired = rotated.retire("m1")
    for key_id, key in ids.values():
        assert vault(store, retired).key(key_id) == key


def test_a_key_left_under_a_retired_master_is_refused_and_counted() -> None:
    store = MemoryKeyStore()
    key_id, _ = vault(store).sealing_key(PATIENT_A)  # under m1, never re-wrapped
    retired = MASTER.rotated("m2").retire("m1")
    with pytest.raises(MasterKeyRetiredError):
        vault(store, retired).key(key_id)
    assert vault(store, retired).rewrap().refused == 1


def test_two_processes_creating_one_patients_key_agree(tmp_path: Path) -> None:
    store = FolderKeyStore(tmp_path / "keys")
    results: list[tuple[str, bytes]] = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait()
        results.append(vault(store).sealing_key(PATIENT_A))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert list(store.names()) == [parse_key_id(results[0][0])[0]]


def test_the_folder_store(tmp_path: Path) -> None:
    store = FolderKeyStore(tmp_path / "keys")
    name = "0" * 32
    assert list(store.names()) == []
    assert store.read(name) is None
    assert not store.buried(name, "abcd1234")
    assert not (tmp_path / "keys").exists()  # reading creates nothing
    assert store.create(name, b"one")
    assert not store.create(name, b"two")
    one = store.read(name)
    assert one is not None
    assert one.blob == b"one"
    assert store.replace(name, b"three", tag=one.tag)
    assert not store.replace(name, b"four", tag=one.tag)  # changed since: not written
    three = store.read(name)
    assert three is not None
    assert three.blob == b"three"
    store.bury(name, "abcd1234")
    store.bury(name, "abcd1234")  # idempotent
    assert store.buried(name, "abcd1234")
    assert store.delete(name)
    assert not store.delete(name)
    assert not store.replace(name, b"five", tag=three.tag)  # gone: never written back
    assert list(store.names()) == []  # tombstones are not keys
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [f"{name}.abcd1234.erased"]
    with pytest.raises(ValueError, match="32 hex"):
        store.read("../x")
    with pytest.raises(ValueError, match="hex"):
        store.buried(name, "../x")


def test_without_a_vault_a_patient_key_id_says_what_to_set() -> None:
    store = MemoryKeyStore()
    keyring = replace(MASTER, patients=vault(store)).minting()
    key_id, _ = keyring.for_patient(PATIENT_A).sealing_key()
    with pytest.raises(UnknownKeyError, match="RELAIS_PATIENT_KEYS"):
        MASTER.key(key_id)
    assert MASTER.for_patient(PATIENT_A) is MASTER  # keys off: the shared key seals
