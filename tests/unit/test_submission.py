"""DocumentSubmitted records: one per document, identity and content sealed, routing readable."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from ops.demo.samples import (
    DOMINIQUE,
    IMAGING,
    LAB,
    LETTER,
    SARAH_LOU,
    UNQUALIFIED,
    Kind,
    Patient,
    sample,
)
from producers.hl7.message import Hl7Message, parse_message
from producers.submission import SECTORS, patient_key, submissions
from relais.contracts import Codec, Record
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring

KEYRING = Keyring.generate("k-submission")
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
CODEC = Codec()
SAMPLES = [(LAB, DOMINIQUE), (IMAGING, SARAH_LOU), (LETTER, SARAH_LOU), (LAB, UNQUALIFIED)]
IDS = ["lab-dominique", "imaging-sarah-lou", "letter-sarah-lou", "lab-unqualified"]


def message(kind: Kind, patient: Patient, n: int = 1) -> Hl7Message:
    return parse_message(sample(kind, patient, n))


def records(kind: Kind, patient: Patient, n: int = 1, keyring: Keyring = KEYRING) -> list[Record]:
    return submissions(message(kind, patient, n), sector="LAB", keyring=keyring, now=NOW)


def opened(record: Record, field: Record, purpose: str) -> bytes:
    return open_envelope(
        KEYRING, Envelope.from_record(field), event_id=record["event_id"], purpose=purpose
    )


@pytest.mark.parametrize(("kind", "patient"), SAMPLES, ids=IDS)
def test_one_record_per_document(kind: Kind, patient: Patient) -> None:
    parsed = message(kind, patient)
    out = submissions(parsed, sector="HOSPITAL", keyring=KEYRING, now=NOW)
    assert len(out) == len(parsed.documents) == 1
    [record] = out
    assert record["sector"] == "HOSPITAL"
    assert record["submitted_at"] == NOW
    assert record["source"]["message_control_id"] == parsed.control_id
    assert record["source"]["message_type"] == parsed.message_type
    assert record["document"]["type_code"] == kind.loinc
    assert record["document"]["action"] == "SUBMIT"
    assert record["document"]["media_type"] == "text/xml"
    assert record["patient"]["ins_oid"] == "1.2.250.1.213.1.4.10"
    assert record["patient"]["reliability"] == patient.reliability
    assert record["hints"]["flags"] == {"DESTDMP": True}
    assert record["hints"]["recipients"] is None


def test_event_ids_come_from_new_id() -> None:
    ids = iter(["e-1", "e-2"])
    [record] = submissions(
        message(LAB, DOMINIQUE), sector="LAB", keyring=KEYRING, now=NOW, new_id=lambda: next(ids)
    )
    assert record["event_id"] == "e-1"


@pytest.mark.parametrize(("kind", "patient"), SAMPLES, ids=IDS)
def test_encoded_record_leaks_no_identity_and_no_content(kind: Kind, patient: Patient) -> None:
    parsed = message(kind, patient)
    [record] = submissions(parsed, sector="LAB", keyring=KEYRING, now=NOW)
    encoded = CODEC.encode("DocumentSubmitted", record)
    assert patient.ins.encode() not in encoded
    assert patient.family.encode() not in encoded
    for given in patient.given.split():
        assert given.encode() not in encoded
    assert patient.birth_date.encode() not in encoded
    content = parsed.documents[0].content
    # The document type label (OBX-3.2) is readable routing metadata; the CDA repeats it
    # in its title, so a window lying inside it is not a leak of the content.
    label = record["document"]["type_label"].encode()
    window = 40
    slices = (content[i : i + window] for i in range(len(content) - window + 1))
    leaked = [s for s in slices if s in encoded and s not in label]
    assert leaked == []


@pytest.mark.parametrize(("kind", "patient"), SAMPLES, ids=IDS)
def test_content_sha256_is_that_of_the_sealed_document(kind: Kind, patient: Patient) -> None:
    parsed = message(kind, patient)
    [record] = submissions(parsed, sector="LAB", keyring=KEYRING, now=NOW)
    _, decoded = CODEC.decode(
        CODEC.encode("DocumentSubmitted", record), expected="DocumentSubmitted"
    )
    document = decoded["document"]
    content = opened(decoded, document["content"], "content")
    assert content == parsed.documents[0].content
    assert document["content_sha256"] == hashlib.sha256(content).hexdigest()
    assert document["size_bytes"] == len(content)
    assert (
        document["unique_id"]
        == "1.2.250.1.213.1.1.9.4242." + kind.loinc.replace("-", "") + "000001"
    )


@pytest.mark.parametrize(("kind", "patient"), SAMPLES, ids=IDS)
def test_identity_envelope_opens_to_json_traits(kind: Kind, patient: Patient) -> None:
    [record] = records(kind, patient)
    traits = json.loads(opened(record, record["patient"]["identity"], "identity"))
    assert isinstance(traits, dict)
    assert traits["ins"] == patient.ins
    assert traits["ins_oid"] == "1.2.250.1.213.1.4.10"
    assert traits["birth_name"] == patient.family
    assert traits["reliability"] == patient.reliability


def test_envelopes_are_bound_to_their_purpose() -> None:
    [record] = records(LAB, DOMINIQUE)
    with pytest.raises(Exception, match="authentication"):
        opened(record, record["patient"]["identity"], "content")
    with pytest.raises(Exception, match="authentication"):
        opened(record, record["document"]["content"], "identity")


def test_patient_key_is_stable_for_one_patient() -> None:
    keys = {
        records(LAB, DOMINIQUE, 1)[0]["patient"]["patient_key"],
        records(IMAGING, DOMINIQUE, 2)[0]["patient"]["patient_key"],
        records(LETTER, DOMINIQUE, 3)[0]["patient"]["patient_key"],
        records(LAB, UNQUALIFIED, 4)[0]["patient"]["patient_key"],  # same INS, other status
        patient_key(KEYRING, message(LAB, DOMINIQUE, 5)),
    }
    assert len(keys) == 1
    [key] = keys
    assert DOMINIQUE.ins not in key


def test_patient_key_differs_between_patients_and_keyrings() -> None:
    dominique = records(LAB, DOMINIQUE)[0]["patient"]["patient_key"]
    sarah_lou = records(LAB, SARAH_LOU)[0]["patient"]["patient_key"]
    elsewhere = records(LAB, DOMINIQUE, keyring=Keyring.generate("k-other"))[0]["patient"]
    assert dominique != sarah_lou
    assert elsewhere["patient_key"] != dominique


def test_event_ids_differ_between_calls() -> None:
    first = records(LAB, DOMINIQUE)[0]["event_id"]
    second = records(LAB, DOMINIQUE)[0]["event_id"]
    assert first != second


@pytest.mark.parametrize("sector", SECTORS)
def test_every_sector_encodes(sector: str) -> None:
    [record] = submissions(message(LAB, DOMINIQUE), sector=sector, keyring=KEYRING, now=NOW)
    _, decoded = CODEC.decode(CODEC.encode("DocumentSubmitted", record))
    assert decoded["sector"] == sector


@pytest.mark.parametrize("sector", ["", "lab", "PHARMACY", "HOSPITAL "])
def test_unknown_sector_is_refused(sector: str) -> None:
    with pytest.raises(ValueError, match="unknown sector"):
        submissions(message(LAB, DOMINIQUE), sector=sector, keyring=KEYRING, now=NOW)
