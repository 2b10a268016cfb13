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
from relais.topics import AUDIT, IDENTITY_CONSENT, IDENTITY_EVENTS, QUALIFIED, SUBMITTED
from streams.identity.consent import applied, combined, moved, summary
from streams.identity.processor import IdentityProcessor
from streams.identity.rules import InsiOutcome
from streams.identity.state import PatientState
from streams.stage import Output
from tests.builders import IPP, adt_message, ipp_only

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
    # published for the DMP sink, by the patient's key (consumers.dmp.consent_table)
    [word] = [o for o in outputs if o.topic == IDENTITY_CONSENT]
    assert word.key == key.encode()
    _, decoded = CODEC.decode(CODEC.encode("PatientConsent", word.record))
    assert decoded["consent"]["feeding"] == "IO"
    assert decoded["consent"]["feeding_facility"] == "RELAIS-DEMO"
    assert DOMINIQUE.ins not in str(decoded)
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


def test_order_by_the_adt_time_with_its_offset_or_in_paris_time() -> None:
    kept = applied(None, said(feeding="IO", as_of="202611221000+0100"))  # 09:00 UTC
    assert kept is not None
    assert applied(kept, said(feeding="INO", as_of="202611220930+0100")) is None  # 08:30 UTC
    # no offset: Paris time (winter +0100: 08:30 UTC, older; 10:30 is 09:30 UTC, newer)
    assert applied(kept, said(feeding="INO", as_of="202611220930")) is None
    assert applied(kept, said(feeding="INO", as_of="202611221030")) is not None
    summer = applied(None, said(feeding="IO", as_of="202607011000+0000"))  # 10:00 UTC
    assert summer is not None
    assert applied(summer, said(feeding="INO", as_of="20260701115900")) is None  # 09:59 UTC
    # a word with no readable time never wins over one that has one; two such: in order
    assert applied(kept, said(feeding="INO", as_of=None)) is None
    assert applied(kept, said(feeding="INO", as_of="2026XX")) is None
    untimed = applied(None, said(feeding="IO", as_of=None))
    assert untimed is not None
    assert applied(untimed, said(feeding="INO", as_of=None)) is not None


def test_a_word_without_a_readable_time_never_wins_over_a_timed_one() -> None:
    """Review finding: an old INO without MSH-7 lifted a newer IO, and back."""
    objection = said(feeding="IO", as_of="20261124")
    old_lift = said(feeding="INO", as_of=None)
    for kept, other in ((objection, old_lift), (old_lift, objection)):
        both = combined(kept, other)
        assert (both["feeding"], both["as_of"]) == ("IO", "20261124")
    lift = said(feeding="INO", as_of="20261124")
    old_objection = said(feeding="IO", as_of="garbled")
    for kept, other in ((lift, old_objection), (old_objection, lift)):
        assert combined(kept, other)["feeding"] == "INO"


def test_only_the_structure_that_collected_an_objection_lifts_it() -> None:
    kept = applied(None, said(feeding="IO", feeding_facility="CHU-A"))
    assert kept is not None
    other = applied(kept, said(feeding="INO", feeding_facility="CLINIQUE-B", as_of="20261123"))
    assert other is not None
    assert (other["feeding"], other["feeding_facility"]) == ("IO", "CHU-A")
    same = applied(kept, said(feeding="INO", feeding_facility="CHU-A", as_of="20261123"))
    assert same is not None
    assert same["feeding"] == "INO"
    # a closed DMP is the DMP's state: any structure tells it, and its reopening
    closed = applied(kept, said(dmp_status="FERME", as_of="20261123"))
    assert closed is not None
    reopened = applied(closed, said(dmp_status="ACTIF", as_of="20261124"))
    assert reopened is not None
    assert (reopened["dmp_status"], reopened["feeding"]) == ("ACTIF", "IO")


async def test_another_structures_adt_does_not_lift_an_objection() -> None:
    proc = processor()
    await proc.on_identity(adt("ZFA|ACTIF||||||||IO", "20261122100000", "ADT1"), NOW)
    proc.commit()
    other = adt("ZFA|ACTIF||||||||INO", "20261123100000", "ADT2")
    other["source"] = {**other["source"], "facility": "CLINIQUE-B"}
    assert audits(await proc.on_identity(other, NOW)) == []
    proc.commit()
    stamp = (await forwarded(proc, 1))["patient"]["dmp_consent"]
    assert (stamp["feeding"], stamp["feeding_facility"]) == ("IO", "RELAIS-DEMO")
    lifted = adt("ZFA|ACTIF||||||||INO", "20261124100000", "ADT3")
    assert len(audits(await proc.on_identity(lifted, NOW))) == 1
    proc.commit()
    assert (await forwarded(proc, 2))["patient"]["dmp_consent"]["feeding"] == "INO"


def ipp_adt(
    zfa: str | None,
    trigger: str,
    *,
    ins: bool,
    merged: bool = False,
    msh7: str = "20261122",
    control_id: str = "",
) -> Record:
    """An ADT for DOMINIQUE: with the INS and the IPP (``ins``) or the IPP only."""
    raw = adt_message(
        DOMINIQUE,
        trigger,
        "QUAL",
        control_id=control_id or trigger,
        ipp=IPP if ins else None,
        merged_ipp=IPP if merged else None,
    )
    raw = raw.replace(b"|20261122||ADT^", f"|{msh7}||ADT^".encode(), 1)
    raw = raw if ins else ipp_only(raw, DOMINIQUE)
    raw += f"{zfa}\r".encode() if zfa else b""
    return identity_update(parse_message(raw), sector="HOSPITAL", keyring=KEYRING, now=NOW)


def ipp_document(n: int) -> tuple[Record, bytes]:
    [record] = submissions(
        parse_message(ipp_only(sample(LAB, DOMINIQUE, n), DOMINIQUE)),
        sector="LAB",
        keyring=KEYRING,
        now=NOW,
    )
    return record, CODEC.encode("DocumentSubmitted", record)


async def pump(proc: IdentityProcessor, outputs: list[Output], *, late: str = "") -> list[Output]:
    """Feed the stage's own outputs back to it (identity events, re-keyed documents) until
    none is left; those on topic ``late`` go last. Returns everything that came out."""
    seen, queue = list(outputs), list(outputs)
    while queue:
        queue.sort(key=lambda o: o.topic.suffix == late)
        out = queue.pop(0)
        if out.topic == IDENTITY_EVENTS:
            produced = await proc.on_identity(out.record, NOW)
        elif out.topic == SUBMITTED:
            produced = await proc.on_document(
                out.record, CODEC.encode("DocumentSubmitted", out.record), NOW
            )
        else:
            continue
        proc.commit()
        seen += produced
        queue += produced
    return seen


async def test_an_objection_follows_the_ipp_when_the_ins_arrives() -> None:
    """The reviewer's repro: A01 with only an IPP and IO, A08 with INS+IPP and no ZFA."""
    proc = processor()
    await pump(
        proc,
        await proc.on_identity(ipp_adt("ZFA|ACTIF||||||||IO", "A01", ins=False), NOW),
    )
    proc.commit()
    outputs = await pump(proc, await proc.on_identity(ipp_adt(None, "A08", ins=True), NOW))
    [audit] = audits(outputs)
    assert "feeding=IO" in audit["outcome"]
    assert DOMINIQUE.ins not in str(audit)
    assert (await forwarded(proc, 1))["patient"]["dmp_consent"]["feeding"] == "IO"
    held, raw = ipp_document(2)  # in flight under the IPP: re-keyed, then stamped
    outputs = await pump(proc, await proc.on_document(held, raw, NOW))
    [out] = [o for o in outputs if o.topic == QUALIFIED]
    assert out.record["patient"]["dmp_consent"]["feeding"] == "IO"


async def test_an_a40_hands_the_absorbed_objection_to_the_survivor() -> None:
    """A document held under the IPP may reach the survivor before the consent's RETRY."""
    proc = processor()
    await proc.on_identity(ipp_adt("ZFA|FERME||20261120||||||IO", "A01", ins=False), NOW)
    proc.commit()
    held, raw = ipp_document(1)
    await proc.on_document(held, raw, NOW)  # an IPP only: held
    proc.commit()
    outputs = await pump(
        proc,
        await proc.on_identity(ipp_adt(None, "A40", ins=True, merged=True), NOW),
        late=IDENTITY_EVENTS.suffix,
    )
    [out] = [o for o in outputs if o.topic == QUALIFIED]
    stamp = out.record["patient"]["dmp_consent"]
    assert (stamp["dmp_status"], stamp["feeding"]) == ("FERME", "IO")
    assert len(audits(outputs)) == 1  # audited once, by whichever carried it first
    assert (await forwarded(proc, 2))["patient"]["dmp_consent"]["feeding"] == "IO"


def test_combined_words_never_let_a_newer_blank_or_na_erase_an_objection() -> None:
    old = said(dmp_status="FERME", feeding="IO", as_of="20261120")
    new = said(feeding="NA", as_of="20261122")
    for kept, other in ((old, new), (new, old)):
        both = combined(kept, other)
        assert (both["dmp_status"], both["feeding"], both["as_of"]) == ("FERME", "IO", "20261122")
    lifted = combined(old, said(feeding="INO", as_of="20261122"))
    assert lifted["feeding"] == "INO"
    assert combined(said(feeding="INO", as_of="20261122"), old)["feeding"] == "INO"


def consent_words(outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if o.topic == IDENTITY_CONSENT]


async def test_a_word_given_under_the_old_ipp_after_the_merge_reaches_the_survivor() -> None:
    """Review finding: an A08 naming only the old IPP changed the merged-away record."""
    proc = processor()
    merge = ipp_adt(None, "A08", ins=True, control_id="MERGE")  # the IPP is the INS's now
    survivor = merge["patient"]["patient_key"].encode()
    await pump(proc, await proc.on_identity(merge, NOW))
    objection = ipp_adt("ZFA|ACTIF||||||||IO", "A08", ins=False, msh7="20261123100000")
    outputs = await pump(proc, await proc.on_identity(objection, NOW))
    [word] = consent_words(outputs)  # published on the survivor's key only
    assert word.key == survivor
    assert word.record["consent"]["source_event_id"] == objection["event_id"]
    assert word.record["consent"]["feeding_facility"] == "RELAIS-DEMO"  # the ADT's sender
    [audit] = audits(outputs)
    assert survivor.decode() in audit["detail"]
    assert "MSH-10 A08" in audit["detail"]
    assert DOMINIQUE.ins not in str(audit)
    assert (await forwarded(proc, 1))["patient"]["dmp_consent"]["feeding"] == "IO"
    lifted = ipp_adt("ZFA|ACTIF||||||||INO", "A08", ins=False, msh7="20261124100000")
    [word] = consent_words(await pump(proc, await proc.on_identity(lifted, NOW)))
    assert (word.key, word.record["consent"]["feeding"]) == (survivor, "INO")
    assert (await forwarded(proc, 2))["patient"]["dmp_consent"]["feeding"] == "INO"


async def test_the_absorbed_word_is_handed_over_once() -> None:
    """Review finding: each A08 with the INS and the IPP sent the IPP's frozen word again,
    so an objection given without a readable MSH-7 came back after each lift."""
    proc = processor()
    await pump(
        proc, await proc.on_identity(ipp_adt("ZFA|ACTIF||||||||IO", "A01", ins=False, msh7=""), NOW)
    )
    await pump(proc, await proc.on_identity(ipp_adt(None, "A08", ins=True, control_id="M1"), NOW))
    assert (await forwarded(proc, 1))["patient"]["dmp_consent"]["feeding"] == "IO"
    lift = ipp_adt("ZFA|ACTIF||||||||INO", "A08", ins=True, msh7="20261124", control_id="M2")
    outputs = await pump(proc, await proc.on_identity(lift, NOW))
    carried = [o for o in outputs if o.topic == IDENTITY_EVENTS and o.record["kind"] == "RETRY"]
    assert carried == []  # the IPP's word went over once, with the first A08
    assert (await forwarded(proc, 2))["patient"]["dmp_consent"]["feeding"] == "INO"
    again = ipp_adt(None, "A08", ins=True, msh7="20261125", control_id="M3")
    await pump(proc, await proc.on_identity(again, NOW))
    assert (await forwarded(proc, 3))["patient"]["dmp_consent"]["feeding"] == "INO"


def test_a_handed_over_word_keeps_the_structure_that_collected_it() -> None:
    """Review finding: the word carried by a lab document or an A40 took its sender as the
    structure that collected it, so only that sender could lift it."""
    word = said(feeding="IO", feeding_facility="CHU-A")
    legacy = said(feeding="IO")  # kept before Relais recorded the structure: any lifts it
    for carried, facility in ((word, "CHU-A"), (legacy, None)):
        record = {
            "event_id": "doc-1",
            "trigger": "ORU",
            "source": {"facility": "LABO-X", "application": "LIS", "message_control_id": "1"},
            "patient": {"patient_key": "k", "dmp_consent": carried},
        }
        state, _ = moved(PatientState(), record, NOW)
        assert state.dmp_consent is not None
        assert state.dmp_consent["feeding_facility"] == facility
