"""The identity stage keeps the patient's DMP consent, audits each change, stamps documents."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ops.demo.samples import DOMINIQUE, LAB, sample
from producers.hl7.message import parse_message
from producers.submission import identity_update, submissions
from relais.contracts import Codec, Record
from relais.keyring import Keyring
from relais.topics import AUDIT, QUALIFIED
from streams.identity.consent import applied, summary
from streams.identity.processor import IdentityProcessor
from streams.identity.rules import InsiOutcome
from streams.identity.state import PatientState
from streams.stage import Output
from tests.builders import adt_message

KEYRING = Keyring.generate()
CODEC = Codec()
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


async def _insi(traits: Mapping[str, Any]) -> InsiOutcome:
    return InsiOutcome("00")


def processor() -> IdentityProcessor:
    return IdentityProcessor({}, keyring=KEYRING, verify=_insi, consistency=lambda _: [])


def adt(zfa: str | None, msh7: str = "20261122100000", control_id: str = "ADT1") -> Record:
    """An ADT^A08 for DOMINIQUE (QUAL) with ``zfa`` and MSH-7 ``msh7``."""
    raw = adt_message(DOMINIQUE, "A08", "QUAL", control_id=control_id)
    raw = raw.replace(b"|20261122||ADT^", f"|{msh7}||ADT^".encode(), 1)
    if zfa:
        raw += zfa.encode() + b"\r"
    return identity_update(parse_message(raw), sector="HOSPITAL", keyring=KEYRING, now=NOW)


def document(n: int) -> tuple[Record, bytes]:
    [record] = submissions(
        parse_message(sample(LAB, DOMINIQUE, n)), sector="LAB", keyring=KEYRING, now=NOW
    )
    return record, CODEC.encode("DocumentSubmitted", record)


def audits(outputs: list[Output]) -> list[Record]:
    return [o.record for o in outputs if o.topic == AUDIT]


async def forwarded(proc: IdentityProcessor, n: int) -> Record:
    record, raw = document(n)
    [out] = await proc.on_document(record, raw, NOW)
    assert out.topic == QUALIFIED
    proc.commit()
    return out.record


async def test_an_objection_is_kept_audited_and_stamped_then_lifted() -> None:
    proc = processor()
    objection = adt("ZFA|ACTIF|20261122|||||||IO|20261122", "20261122100000", "ADT1")
    outputs = await proc.on_identity(objection, NOW)
    [audit] = audits(outputs)
    key = objection["patient"]["patient_key"]
    assert audit["action"] == "CONSENT_CHANGED"
    assert audit["component"] == "identity"
    assert audit["event_id"] == objection["event_id"]
    assert (
        audit["outcome"] == "dmp-consent:dmp_status=ACTIF,closed_date=-,feeding=IO,consultation=-"
    )
    assert key in audit["detail"]
    assert "MSH-10 ADT1" in audit["detail"]
    assert DOMINIQUE.ins not in str(audit)
    assert DOMINIQUE.family not in str(audit)
    proc.commit()
    stamp = (await forwarded(proc, 1))["patient"]["dmp_consent"]
    assert stamp["feeding"] == "IO"
    assert stamp["source_event_id"] == objection["event_id"]
    # the same word again (another admission): no change, no audit
    again = adt("ZFA|ACTIF|20261123|||||||IO|20261123", "20261123100000", "ADT2")
    assert audits(await proc.on_identity(again, NOW)) == []
    proc.commit()
    # lifted: audited, and the next document carries the new word
    lifted = adt("ZFA|ACTIF|20261124|||||||INO|20261124", "20261124100000", "ADT3")
    [audit] = audits(await proc.on_identity(lifted, NOW))
    assert "feeding=IO" in audit["detail"]
    assert audit["outcome"].endswith("feeding=INO,consultation=-")
    proc.commit()
    assert (await forwarded(proc, 2))["patient"]["dmp_consent"]["feeding"] == "INO"
    # the state survives its table (JSON bytes)
    state = PatientState.from_bytes(proc.table[key])
    assert state.dmp_consent is not None
    assert state.dmp_consent["feeding"] == "INO"


async def test_an_older_adt_does_not_override_a_newer_word() -> None:
    proc = processor()
    await proc.on_identity(adt("ZFA|ACTIF||||||||IO", "202611240900+0100", "NEW"), NOW)
    proc.commit()
    late = adt("ZFA|ACTIF||||||||INO", "20261123", "OLD")  # sent late by the sender's queue
    assert audits(await proc.on_identity(late, NOW)) == []
    proc.commit()
    assert (await forwarded(proc, 1))["patient"]["dmp_consent"]["feeding"] == "IO"


async def test_without_any_zfa_documents_carry_no_stamp_and_nothing_is_audited() -> None:
    proc = processor()
    assert audits(await proc.on_identity(adt(None), NOW)) == []
    proc.commit()
    assert (await forwarded(proc, 1))["patient"]["dmp_consent"] is None


async def test_a_closed_dmp_is_audited_and_stamped() -> None:
    proc = processor()
    [audit] = audits(await proc.on_identity(adt("ZFA|FERME|20261122|20261120"), NOW))
    assert "dmp_status=FERME" in audit["outcome"]
    assert "closed_date=20261120" in audit["outcome"]
    proc.commit()
    assert (await forwarded(proc, 1))["patient"]["dmp_consent"]["dmp_status"] == "FERME"


def said(**fields: str | None) -> dict[str, str | None]:
    return {"as_of": "20261122", "source_event_id": "e", **fields}


def test_each_part_of_zfa_stands_alone_and_not_asked_never_erases_a_word() -> None:
    kept = applied(None, said(dmp_status="ACTIF", feeding="IO", consultation="INC"))
    assert kept is not None
    # a ZFA without status keeps the status; NA keeps the patient's word
    after = applied(kept, said(feeding="NA", consultation="NA"))
    assert after is not None
    assert (after["dmp_status"], after["feeding"], after["consultation"]) == ("ACTIF", "IO", "INC")
    # NA fills a blank
    blank = applied(None, said(feeding="NA"))
    assert blank is not None
    assert blank["feeding"] == "NA"
    # a new status replaces the status group, dates included
    closed = applied(kept, said(dmp_status="FERME", closed_date="20261121"))
    assert closed is not None
    assert closed["closed_date"] == "20261121"
    reopened = applied(closed, said(dmp_status="ACTIF"))
    assert reopened is not None
    assert reopened["closed_date"] is None
    assert summary(None) == "none"


def test_order_by_the_adt_time_with_its_offset() -> None:
    kept = applied(None, said(feeding="IO", as_of="202611221000+0100"))  # 09:00 UTC
    assert kept is not None
    assert applied(kept, said(feeding="INO", as_of="202611220930+0100")) is None  # 08:30 UTC
    assert applied(kept, said(feeding="INO", as_of="202611220930")) is not None  # no offset
    assert applied(kept, said(feeding="INO", as_of=None)) is not None  # unknown: in order
