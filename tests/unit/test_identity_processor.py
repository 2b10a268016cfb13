"""Hold, release, order, INSi, conflicts and merges, with a dict for the table and a fake INSi."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ops.demo.samples import DOMINIQUE, LAB, SARAH_LOU, Patient, sample
from producers.hl7.message import parse_message
from producers.submission import identity_update, patient_key_of, submissions
from relais.contracts import Codec, Record
from relais.keyring import Keyring
from relais.patient_traits import open_traits
from relais.topics import IDENTITY_ALERTS, IDENTITY_EVENTS, IDENTITY_PENDING, QUALIFIED, SUBMITTED
from streams.identity.dedupe import dedupe_keys
from streams.identity.processor import IdentityProcessor
from streams.identity.rules import InsiOutcome
from streams.identity.state import PatientState
from streams.stage import Output
from tests.builders import adt_message
from tests.shared_data import shared

KEYRING = Keyring.generate()
CODEC = Codec()
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
IPP = "000002^^^CHU-X&000897406&N^PI"


class FakeInsi:
    def __init__(self, code: str = "00") -> None:
        self.code = code
        self.calls = 0

    async def __call__(self, traits: Mapping[str, Any]) -> InsiOutcome:
        self.calls += 1
        return InsiOutcome(self.code)


def processor(
    insi: FakeInsi | None = None, mismatches: list[str] | None = None
) -> IdentityProcessor:
    return IdentityProcessor(
        {}, keyring=KEYRING, verify=insi or FakeInsi(), consistency=lambda _: list(mismatches or [])
    )


def document(
    patient: Patient, n: int, *, reliability: str | None = None, ipp_only: bool = False
) -> tuple[Record, bytes]:
    raw = sample(LAB, patient, n)
    if reliability:
        raw = raw.replace(f"|{patient.reliability}\r".encode(), f"|{reliability}\r".encode(), 1)
    if ipp_only:
        raw = raw.replace(
            f"{patient.ins}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS".encode(),
            IPP.encode(),
        )
    [record] = submissions(parse_message(raw), sector="LAB", keyring=KEYRING, now=NOW)
    return record, CODEC.encode("DocumentSubmitted", record)


def adt(
    patient: Patient,
    trigger: str,
    reliability: str,
    *,
    merged_ipp: bool = False,
    with_ipp: bool = False,
) -> Record:
    raw = adt_message(
        patient,
        trigger,
        reliability,
        merged_ipp=IPP if merged_ipp else None,
        ipp=IPP if with_ipp else None,
    )
    return identity_update(parse_message(raw), sector="HOSPITAL", keyring=KEYRING, now=NOW)


def topics(outputs: list[Output]) -> list[str]:
    return [o.topic.suffix for o in outputs]


async def test_qualified_identity_goes_on_and_is_remembered() -> None:
    proc = processor()
    record, raw = document(DOMINIQUE, 1)
    outputs = await proc.on_document(record, raw, NOW)
    assert topics(outputs) == [QUALIFIED.suffix]
    state = proc.state(record["patient"]["patient_key"])
    assert state.status_for("RELAIS-DEMO").value == "QUAL"
    assert state.traits_digest is not None
    assert state.held == ()


async def test_validated_identity_is_qualified_by_insi() -> None:
    insi = FakeInsi("00")
    proc = processor(insi)
    record, raw = document(DOMINIQUE, 1, reliability="VALI")
    outputs = await proc.on_document(record, raw, NOW)
    assert topics(outputs) == [QUALIFIED.suffix]
    assert insi.calls == 1


async def test_insi_outage_holds_then_retry_releases_in_order() -> None:
    insi = FakeInsi("unavailable")
    proc = processor(insi)
    first, raw1 = document(DOMINIQUE, 1, reliability="VALI")
    second, raw2 = document(DOMINIQUE, 2, reliability="VALI")  # must stay behind the first
    assert topics(await proc.on_document(first, raw1, NOW)) == [IDENTITY_PENDING.suffix]
    assert topics(await proc.on_document(second, raw2, NOW)) == [IDENTITY_PENDING.suffix]
    key = first["patient"]["patient_key"]
    assert proc.state(key).waiting_for_insi
    # Still down: a retry keeps both, in order.
    assert await proc.on_identity(_retry(key), NOW) == []
    assert [h.event_id for h in proc.state(key).held] == [first["event_id"], second["event_id"]]
    insi.code = "00"
    released = await proc.on_identity(_retry(key), NOW + timedelta(minutes=5))
    assert [o.record["event_id"] for o in released] == [first["event_id"], second["event_id"]]
    assert topics(released) == [QUALIFIED.suffix, QUALIFIED.suffix]
    assert proc.state(key).held == ()
    assert 299 <= max(proc.observed.released_after_s) <= 301


def _retry(key: str) -> Record:
    record = adt(DOMINIQUE, "A08", "PROV")
    return {**record, "kind": "RETRY", "target_key": key}


async def test_unqualified_is_held_until_an_adt_update_qualifies_it() -> None:
    proc = processor()
    record, raw = document(DOMINIQUE, 1, reliability="RECUP")
    held = await proc.on_document(record, raw, NOW)
    assert held[0].record["reason_code"] == "identity-not-qualified"
    released = await proc.on_identity(adt(DOMINIQUE, "A08", "QUAL"), NOW)
    assert [o.record["event_id"] for o in released] == [record["event_id"]]
    assert released[0].record["identity_status"] == "QUAL"


async def test_same_ins_with_other_traits_blocks_and_alerts() -> None:
    proc = processor()
    record, raw = document(DOMINIQUE, 1)
    await proc.on_document(record, raw, NOW)
    impostor = Patient(DOMINIQUE.ins, "AUTRE", "CAMILLE", "19790328", "F", "63220")
    other, raw2 = document(impostor, 2)
    outputs = await proc.on_document(other, raw2, NOW)
    assert topics(outputs) == [IDENTITY_PENDING.suffix, IDENTITY_ALERTS.suffix]
    assert outputs[1].record["reason_code"] == "same-ins-different-traits"
    # Everything after waits for a human, even a perfectly good document.
    later, raw3 = document(DOMINIQUE, 3)
    assert topics(await proc.on_document(later, raw3, NOW)) == [IDENTITY_PENDING.suffix]
    assert proc.state(record["patient"]["patient_key"]).blocked == "same-ins-different-traits"


async def test_insi_disagreeing_with_the_sender_blocks() -> None:
    proc = processor(FakeInsi("mismatch"))
    record, raw = document(DOMINIQUE, 1, reliability="VALI")
    outputs = await proc.on_document(record, raw, NOW)
    assert outputs[1].record["reason_code"] == "insi-disagrees"


async def test_ins_inconsistent_with_traits_blocks() -> None:
    proc = processor(mismatches=["BIRTHPLACE_MISMATCH"])
    record, raw = document(DOMINIQUE, 1)
    outputs = await proc.on_document(record, raw, NOW)
    assert outputs[1].record["reason_code"] == "ins-traits-inconsistent"
    assert "BIRTHPLACE_MISMATCH" in outputs[1].record["reason"]


async def test_merge_rekeys_held_and_later_documents_to_the_survivor() -> None:
    proc = processor()
    orphan, raw = document(SARAH_LOU, 1, ipp_only=True)
    absorbed_key = orphan["patient"]["patient_key"]
    assert topics(await proc.on_document(orphan, raw, NOW)) == [IDENTITY_PENDING.suffix]
    merge = adt(DOMINIQUE, "A40", "QUAL", merged_ipp=True)
    [redirect] = await proc.on_identity(merge, NOW)
    assert redirect.topic == IDENTITY_EVENTS
    assert redirect.key == absorbed_key.encode()
    [moved] = await proc.on_identity(redirect.record, NOW)
    survivor_key = merge["patient"]["patient_key"]
    assert moved.topic == SUBMITTED
    assert moved.key == survivor_key.encode()
    assert open_traits(moved.record, KEYRING)["ins"] == DOMINIQUE.ins
    assert proc.state(absorbed_key).held == ()
    # A document still in flight under the absorbed key follows the same way.
    late, raw_late = document(SARAH_LOU, 2, ipp_only=True)
    [late_moved] = await proc.on_document(late, raw_late, NOW)
    assert late_moved.topic == SUBMITTED
    assert late_moved.key == survivor_key.encode()
    assert (
        patient_key_of(KEYRING, parse_message(sample(LAB, DOMINIQUE, 1)).patient, "X")
        == survivor_key
    )


def test_state_round_trips() -> None:
    state = PatientState()
    assert PatientState.from_bytes(state.to_bytes()) == state
    assert PatientState.from_bytes(None) == state


async def test_a_replayed_held_document_is_not_held_twice() -> None:
    proc = processor()
    record, raw = document(DOMINIQUE, 1, reliability="RECUP")
    await proc.on_document(record, raw, NOW)
    assert await proc.on_document(record, raw, NOW) == []
    assert len(proc.state(record["patient"]["patient_key"]).held) == 1


async def test_doubtful_identity_never_qualifies() -> None:
    proc = processor()
    raw = sample(LAB, DOMINIQUE, 1).replace(b"|QUAL\r", b"|QUAL~DOUT\r", 1)
    [record] = submissions(parse_message(raw), sector="LAB", keyring=KEYRING, now=NOW)
    outputs = await proc.on_document(record, CODEC.encode("DocumentSubmitted", record), NOW)
    assert outputs[0].record["reason_code"] == "identity-dout"


async def test_order_is_kept_per_sender_not_across_senders() -> None:
    proc = processor()
    held, raw1 = document(DOMINIQUE, 1, reliability="PROV")
    await proc.on_document(held, raw1, NOW)
    other_raw = sample(LAB, DOMINIQUE, 2).replace(b"|RELAIS-DEMO|", b"|OTHER-LAB|", 1)
    [other] = submissions(parse_message(other_raw), sector="LAB", keyring=KEYRING, now=NOW)
    outputs = await proc.on_document(other, CODEC.encode("DocumentSubmitted", other), NOW)
    assert topics(outputs) == [QUALIFIED.suffix]  # another structure's QUAL is not held hostage
    same, raw3 = document(DOMINIQUE, 3)
    outputs = await proc.on_document(same, raw3, NOW)
    assert outputs[0].record["reason_code"] == "behind-held-documents"


async def test_an_adt_with_ins_and_ipp_redirects_ipp_only_documents() -> None:
    proc = processor()
    orphan, raw = document(SARAH_LOU, 1, ipp_only=True)
    await proc.on_document(orphan, raw, NOW)
    update = adt(SARAH_LOU, "A08", "QUAL", with_ipp=True)
    outputs = await proc.on_identity(update, NOW)
    redirect = next(o for o in outputs if o.topic == IDENTITY_EVENTS)
    assert redirect.key == orphan["patient"]["patient_key"].encode()
    [moved] = await proc.on_identity(redirect.record, NOW)
    assert moved.topic == SUBMITTED
    assert moved.key == update["patient"]["patient_key"].encode()


async def test_one_local_id_tied_to_two_ins_blocks_with_an_alert() -> None:
    proc = processor()
    first = adt(SARAH_LOU, "A08", "QUAL", with_ipp=True)
    second = adt(DOMINIQUE, "A08", "QUAL", with_ipp=True)
    [r1] = [o for o in await proc.on_identity(first, NOW) if o.topic == IDENTITY_EVENTS]
    [r2] = [o for o in await proc.on_identity(second, NOW) if o.topic == IDENTITY_EVENTS]
    assert await proc.on_identity(r1.record, NOW) == []
    [alert] = await proc.on_identity(r2.record, NOW)
    assert alert.topic == IDENTITY_ALERTS
    assert alert.record["reason_code"] == "local-id-two-ins"


def test_the_two_documents_of_an_ans_oru_are_two_documents() -> None:
    raw = shared("hl7v2", "ORU_R01_CR-BIO_N1+N3_initial_placeholder.hl7").read_bytes()
    records = submissions(parse_message(raw), sector="LAB", keyring=KEYRING, now=NOW)
    assert len(records) == 2
    assert records[0]["document"]["unique_id"] != records[1]["document"]["unique_id"]
    assert not set(dedupe_keys(records[0])) & set(dedupe_keys(records[1]))
