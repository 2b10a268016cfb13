"""Per-patient keys, second review: a key the store answers it lacks is a dead letter
(``patient-key-missing``) and counted, a store not there is retried; broad handlers never
swallow a retryable key error; keys are read off the event loop with the right patient
(identity commands too); only intake makes keys (stages and sinks never do, an erased
patient's late record never gets one); re-wrap and erasure cope with half-erased and
corrupt records; the dead letter's shared-key fallback is logged and counted; the door
makes no key for a refused or test message. Synthetic pseudonyms and demo samples only."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.outcomes.sink import OutcomesSink
from mss_bridge.lps_delivery import LpsDelivery
from ops.demo.samples import DOMINIQUE, LAB, sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec, Record
from relais.deadletter import Failure, Origin, dead_letter, failure_of
from relais.document_store.bodies import BodyWriter
from relais.document_store.errors import StoreUnavailableError
from relais.keyring import Keyring, pseudonymise, warm_patient_key
from relais.metrics import PATIENT_KEYS
from relais.patient_keys.errors import ErasedKeyError, PatientKeyMissingError
from relais.patient_keys.kms import LocalKms
from relais.patient_keys.stores import MemoryKeyStore
from relais.patient_keys.vault import PatientVault, parse_key_id
from relais.topics import QUALIFIED, SUBMITTED
from streams.stage import Output, Stage, StageContext, patient_of, step

MASTER = Keyring.generate("m1")
PATIENT = "b" * 64
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
CODEC = Codec()
ORIGIN = Origin("relais.documents.submitted.v1", 0, 7, "e-1")


class CountingStore(MemoryKeyStore):
    """A memory key store that counts its reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def read(self, name: str) -> Any:
        self.reads += 1
        return super().read(name)


def vault(store: MemoryKeyStore) -> PatientVault:
    return PatientVault(
        LocalKms(MASTER), store, namer=lambda k: pseudonymise(MASTER, k, domain="patient-key")
    )


def keyring(store: MemoryKeyStore) -> Keyring:
    return replace(MASTER, patients=vault(store))


def counted(outcome: str) -> float:
    return PATIENT_KEYS.labels(outcome)._value.get()  # type: ignore[no-any-return]


def submitted(sealing: Keyring) -> Record:
    bodies = BodyWriter(sealing, None)
    message = parse_message(sample(LAB, DOMINIQUE, 1))
    [record] = submissions(message, sector="LAB", keyring=sealing, now=NOW, sealer=bodies)
    return record


def _pass_on(record: Record, ctx: StageContext) -> list[Output]:
    from relais.patient_traits import open_traits  # noqa: PLC0415

    open_traits(record, ctx.keyring)
    return [Output(QUALIFIED, "DocumentSubmitted", record, b"k")]


PASS_ON = Stage("identity", SUBMITTED, "DocumentSubmitted", _pass_on)


def run_step(ctx: StageContext, record: Record, key: bytes) -> Any:
    value = CODEC.encode("DocumentSubmitted", record)
    return asyncio.run(step(PASS_ON, CODEC, ctx, "t", key=key, value=value, partition=0, offset=3))


# -- P1-1 -------------------------------------------------------------------------------------
def test_a_stage_dead_letters_a_missing_key_and_counts_it() -> None:
    made = MemoryKeyStore()
    record = submitted(keyring(made).minting())
    patient = record["patient"]["patient_key"]
    before = counted("missing")
    other = MemoryKeyStore()  # a store that answers, without the key (lost, or another one)
    result = run_step(StageContext(keyring=keyring(other), now=NOW), record, patient.encode())
    assert result.failure is not None
    assert result.failure.reason_code == "patient-key-missing"
    assert "relais dlq replay" in result.failure.reason
    assert counted("missing") == before + 1
    assert list(other.names()) == []  # the stage made no key


def test_a_key_store_not_there_is_retried_and_counted() -> None:
    made = MemoryKeyStore()
    record = submitted(keyring(made).minting())
    gone = MemoryKeyStore()
    gone.there = False
    before = counted("unavailable")
    ctx = StageContext(keyring=keyring(gone), now=NOW)
    with pytest.raises(StoreUnavailableError) as down:
        run_step(ctx, record, record["patient"]["patient_key"].encode())
    assert not isinstance(down.value, PatientKeyMissingError)
    assert counted("unavailable") == before + 1  # the outage is counted


# -- P1-2 -------------------------------------------------------------------------------------
def _unreachable_keyring() -> tuple[Keyring, Record]:
    record = submitted(keyring(MemoryKeyStore()).minting())
    down = MemoryKeyStore()
    down.there = False
    return keyring(down), record


def test_the_lps_sink_never_turns_a_key_store_outage_into_a_dead_letter() -> None:
    ring, record = _unreachable_keyring()
    sink = object.__new__(LpsDelivery)
    sink.keyring = ring
    with pytest.raises(StoreUnavailableError):
        sink._document(record, None, object())  # type: ignore[arg-type]


def test_the_outcomes_sink_never_swallows_a_key_store_outage() -> None:
    made = MemoryKeyStore()
    vault(made).sealing_key(PATIENT)
    letter = dead_letter(
        keyring(made), stage="s", failure=Failure("transcode-failed", "x"), origin=ORIGIN,
        original=b"x", now=NOW, patient_key=PATIENT,
    )  # fmt: skip
    assert letter["original"]["key_id"].startswith("p.")
    down = MemoryKeyStore()
    down.there = False
    sink = object.__new__(OutcomesSink)
    sink.keyring, sink.codec = keyring(down), CODEC
    with pytest.raises(StoreUnavailableError):
        sink._original(letter)


# -- P1-3 -------------------------------------------------------------------------------------
def test_an_identity_command_names_its_patient_at_the_top() -> None:
    assert patient_of({"command": "RELEASE", "patient_key": PATIENT}) == PATIENT
    assert patient_of({"patient": {"patient_key": PATIENT}}) == PATIENT
    assert patient_of({"event_id": "e"}) is None


def test_warming_raises_an_outage_and_remembers_a_patient_without_a_key() -> None:
    down = MemoryKeyStore()
    down.there = False
    down.objects = None  # type: ignore[assignment]  # every read fails as an outage would
    failing = keyring(down)

    def read(name: str) -> None:
        raise StoreUnavailableError("the patient key store failed")

    down.read = read  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        asyncio.run(warm_patient_key(failing, PATIENT))
    store = CountingStore()
    ring = keyring(store)
    asyncio.run(warm_patient_key(ring, PATIENT))  # a stage's warm: existing only
    assert store.reads == 1
    assert list(store.names()) == []
    assert ring.for_patient(PATIENT).sealing_key()[0] == "m1"  # the shared key, cached
    assert store.reads == 1  # "no key" was remembered: no read on the event loop


# -- P1-4 -------------------------------------------------------------------------------------
def test_a_stage_never_makes_a_key_for_a_record_from_before_or_an_erased_patient() -> None:
    legacy = submitted(MASTER)  # sealed under the shared key (before the default flip)
    patient = legacy["patient"]["patient_key"]
    store = MemoryKeyStore()
    result = run_step(StageContext(keyring=keyring(store), now=NOW), legacy, patient.encode())
    assert result.failure is None
    assert list(store.names()) == []  # no key was made
    fresh = submitted(keyring(store).minting())  # intake makes one
    vault(store).erase(fresh["patient"]["patient_key"])
    result = run_step(StageContext(keyring=keyring(store), now=NOW), legacy, patient.encode())
    assert result.failure is None
    assert list(store.names()) == []  # still none after the erasure
    again = submitted(keyring(store).minting())  # intake: the patient comes back, a new key
    assert again["patient"]["identity"]["key_id"] != fresh["patient"]["identity"]["key_id"]


# -- P2-5 -------------------------------------------------------------------------------------
def test_a_record_left_under_its_tombstone_is_never_used_and_rewrap_deletes_it() -> None:
    store = MemoryKeyStore()
    key_id, _ = vault(store).sealing_key(PATIENT)
    name, version = parse_key_id(key_id)
    store.bury(name, version)  # an erasure cut short between the tombstone and the delete
    with pytest.raises(ErasedKeyError):
        vault(store).key(key_id)
    assert vault(store).existing_key(PATIENT) is None
    assert vault(store).rewrap().refused == 0
    assert list(store.names()) == []  # re-wrap finished the erasure
    assert vault(store).sealing_key(PATIENT)[0] != key_id  # intake: a new key


# -- P2-6 -------------------------------------------------------------------------------------
def test_the_dead_letter_fallback_to_the_shared_key_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryKeyStore()
    vault(store).sealing_key(PATIENT)
    name = vault(store).name_of(PATIENT)
    store.objects[name] = b"not json"  # a tampered record
    before = counted("dead-letter-shared-key")
    with caplog.at_level(logging.WARNING, logger="relais.deadletter"):
        letter = dead_letter(
            keyring(store), stage="s", failure=Failure("transcode-failed", "x"),
            origin=ORIGIN, original=b"x", now=NOW, patient_key=PATIENT,
        )  # fmt: skip
    assert letter["original"]["key_id"] == "m1"
    assert counted("dead-letter-shared-key") == before + 1
    assert "WrappedKeyTamperedError" in caplog.text
    assert PATIENT not in caplog.text
    assert failure_of(PatientKeyMissingError("p.x.y", "memory")).reason_code == (
        "patient-key-missing"
    )


# -- P2-8 -------------------------------------------------------------------------------------
def test_a_corrupt_record_is_refused_by_rewrap_and_erased_all_the_same() -> None:
    store = MemoryKeyStore()
    key_id, _ = vault(store).sealing_key(PATIENT)
    name, _version = parse_key_id(key_id)
    store.objects[name] = b"{broken"
    done = vault(store).rewrap()
    assert (done.rewrapped, done.refused) == (0, 1)  # counted, not aborted
    erased = vault(store).erase(PATIENT)
    assert erased is not None
    assert "corrupt" in erased
    assert list(store.names()) == []
    assert store.buried(name, None)  # the marker: every version from before is erased
    with pytest.raises(ErasedKeyError):
        vault(store).key(key_id)
