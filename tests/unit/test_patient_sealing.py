"""Sealing under patients' data keys: envelopes, bodies, dead letters and a stage's step;
an erased patient's records dead-letter as ``patient-erased``; records from before per-patient
keys still open. Synthetic patients (the demo's samples) only."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ops.demo.samples import DOMINIQUE, LAB, sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec, Record
from relais.deadletter import Failure, Origin, dead_letter, failure_of, patient_of_key
from relais.document_store.bodies import BodyWriter, read_content
from relais.document_store.stores import MemoryStore
from relais.envelope import Envelope, open_envelope, seal
from relais.keyring import Keyring, pseudonymise
from relais.patient_keys.erasure import erase_patient, erasure_audit
from relais.patient_keys.errors import ErasedKeyError
from relais.patient_keys.kms import LocalKms
from relais.patient_keys.stores import MemoryKeyStore
from relais.patient_keys.vault import PatientVault
from relais.patient_traits import open_traits
from relais.topics import SUBMITTED
from streams.stage import Output, Stage, StageContext, read_traits, step

BASE = Keyring.generate("k-shared")
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
CODEC = Codec()


def keyring(keys: MemoryKeyStore) -> Keyring:
    """A process's keyring with per-patient keys over ``keys`` (nothing cached)."""
    vault = PatientVault(
        LocalKms(BASE),
        keys,
        namer=lambda key: pseudonymise(BASE, key, domain="patient-key"),
    )
    return replace(BASE, patients=vault)


def submitted(sealing: Keyring, store: MemoryStore | None = None) -> Record:
    sealing = sealing.minting()  # intake: the producer library makes the patient's key
    bodies = BodyWriter(sealing, store)
    message = parse_message(sample(LAB, DOMINIQUE, 1))
    [record] = submissions(message, sector="LAB", keyring=sealing, now=NOW, sealer=bodies)
    asyncio.run(bodies.flush())
    return record


def test_a_submission_is_sealed_under_its_patients_key() -> None:
    keys = MemoryKeyStore()
    record = submitted(keyring(keys))
    key_id = record["patient"]["identity"]["key_id"]
    assert key_id.startswith("p.")
    assert record["document"]["content"]["key_id"] == key_id
    assert open_traits(record, keyring(keys))["ins"]  # another process opens it
    with pytest.raises(Exception, match="RELAIS_PATIENT_KEYS"):
        open_traits(record, BASE)  # a process without the vault cannot


def test_records_sealed_before_per_patient_keys_still_open() -> None:
    legacy = submitted(BASE)
    assert legacy["patient"]["identity"]["key_id"] == "k-shared"
    assert open_traits(legacy, keyring(MemoryKeyStore()))["ins"]


def test_erasure_makes_fields_bodies_and_dead_letters_unreadable() -> None:
    keys, store = MemoryKeyStore(), MemoryStore()
    sealing = keyring(keys)
    record = submitted(sealing, store)
    patient = record["patient"]["patient_key"]
    letter = dead_letter(
        sealing,
        stage="transcode",
        failure=Failure("cda-invalid", "synthetic"),
        origin=Origin("t.submitted", 0, 1, record["event_id"]),
        original=CODEC.encode("DocumentSubmitted", record),
        now=NOW,
        patient_key=patient,
    )
    original = Envelope.from_record(letter["original"])
    assert original.key_id == record["patient"]["identity"]["key_id"]
    erased = asyncio.run(erase_patient(sealing.patients, store, patient))  # type: ignore[arg-type]
    assert erased.bodies == 1
    assert erased.key_id == original.key_id
    assert not store.objects
    fresh = keyring(keys)
    with pytest.raises(ErasedKeyError):
        open_traits(record, fresh)
    with pytest.raises(ErasedKeyError):  # the key says so before the missing body does
        asyncio.run(read_content(store, fresh, record["document"], event_id=record["event_id"]))
    with pytest.raises(ErasedKeyError):
        open_envelope(fresh, original, event_id=letter["dead_letter_id"], purpose="original")
    audit = erasure_audit(erased, operator="dr.test", now=NOW)
    assert audit["outcome"] == "patient-erased"
    assert patient not in str(audit)
    assert patient[:16] in audit["detail"]
    assert "1 stored bodies" in audit["detail"]


def test_an_erased_patients_record_is_dead_lettered_patient_erased_by_a_stage() -> None:
    keys = MemoryKeyStore()
    record = submitted(keyring(keys))
    patient = record["patient"]["patient_key"]
    asyncio.run(erase_patient(keyring(keys).patients, MemoryStore(), patient))  # type: ignore[arg-type]

    def handle(rec: Record, ctx: StageContext) -> list[Output]:
        read_traits(rec, ctx)
        return []

    stage = Stage("identity", SUBMITTED, "DocumentSubmitted", handle)
    ctx = StageContext(keyring=keyring(keys), now=NOW)
    value = CODEC.encode("DocumentSubmitted", record)
    result = asyncio.run(
        step(stage, CODEC, ctx, "t", key=patient.encode(), value=value, partition=0, offset=7)
    )
    assert result.failure is not None
    assert result.failure.reason_code == "patient-erased"
    [out] = result.outputs
    _, letter = CODEC.decode(out.value, expected="DeadLetter")
    assert letter["original"]["key_id"] == "k-shared"  # no new key made for an erased patient
    assert list(keys.names()) == []


def test_what_a_stage_seals_for_a_record_uses_the_records_patient() -> None:
    keys = MemoryKeyStore()
    record = submitted(keyring(keys))
    sealed: list[Envelope] = []

    def handle(rec: Record, ctx: StageContext) -> list[Output]:
        sealed.append(seal(ctx.keyring, b"x", event_id=rec["event_id"], purpose="recipient"))
        return []

    stage = Stage("route", SUBMITTED, "DocumentSubmitted", handle)
    ctx = StageContext(keyring=keyring(keys), now=NOW)
    value = CODEC.encode("DocumentSubmitted", record)
    asyncio.run(step(stage, CODEC, ctx, "t", key=None, value=value, partition=0, offset=1))
    assert sealed[0].key_id == record["patient"]["identity"]["key_id"]


def test_the_dead_letter_reason_and_kafka_keys() -> None:
    assert failure_of(ErasedKeyError("p.x.1")).reason_code == "patient-erased"
    assert "relais patient erase" in str(ErasedKeyError("p.x.1"))
    assert patient_of_key(b"a" * 64) == "a" * 64
    assert patient_of_key(b"A" * 64) is None
    assert patient_of_key(b"pk") is None
    assert patient_of_key(None) is None
