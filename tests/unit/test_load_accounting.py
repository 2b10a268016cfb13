"""Every sent document accounted for: the accounting fails on a missing or doubled one (pure)."""

from __future__ import annotations

import pytest

from ops.load.accounting import (
    AccountingError,
    Observed,
    Sent,
    account,
    check,
    settled,
)
from ops.load.latency import of_values, stage_histograms
from ops.load.profile import Defect


def sent(
    seq: int, defect: Defect = Defect.NONE, answer: str = "AA", copy_of: int | None = None
) -> Sent:
    original = copy_of if copy_of is not None else seq
    return Sent(seq, f"LOAD{seq:010d}", f"1.2.3.{original}", defect, f"sha{seq}", answer, copy_of)


def received(seen: Observed, seq: int, event: str) -> None:
    seen.receive(f"from LAB (SGL), ORU^R01 MSH-10 LOAD{seq:010d}\nsector LAB", event)


def good_run() -> tuple[list[Sent], Observed]:
    docs = [
        sent(0),
        sent(1, Defect.UNQUALIFIED),
        sent(2, Defect.BROKEN_CDA, answer="AE"),
        sent(3, Defect.BAD_HL7, answer="AE"),
        sent(4, Defect.DUPLICATE, copy_of=0),
    ]
    seen = Observed(filings={"1.2.3.0": 1})
    for seq, event in ((0, "e0"), (1, "e1"), (4, "e4")):
        received(seen, seq, event)
    seen.dmp["e0"] = ["DELIVERED"]
    seen.held["e1"] = "identity-not-qualified"
    seen.dead_by_sha["sha2"] = "mllp: hl7-207"
    seen.dead_by_sha["sha3"] = "mllp: hl7-101"
    seen.duplicates.add("e4")
    seen.routed["e0"] = ("DMP", "NOTIFY")
    return docs, seen


def test_a_good_run_accounts_for_every_document() -> None:
    docs, seen = good_run()
    accounting = account(docs, seen)
    assert accounting.ok, accounting.summary()
    assert [x.outcome.split(":")[0] for x in accounting.lines] == [
        "delivered",
        "held",
        "refused",
        "refused",
        "duplicate-ignored",
    ]
    assert accounting.routed == {"DMP": 1, "NOTIFY": 1}
    assert settled(docs, seen)
    check(accounting)


def test_a_document_with_no_outcome_is_missing_and_fails_loudly() -> None:
    docs, seen = good_run()
    del seen.dmp["e0"]
    accounting = account(docs, seen)
    assert [x.seq for x in accounting.missing] == [0]
    assert not settled(docs, seen)
    with pytest.raises(AccountingError, match="1 missing"):
        check(accounting)


def test_a_document_never_received_is_missing() -> None:
    docs, seen = good_run()
    seen.events.pop("LOAD0000000001")
    assert [x.seq for x in account(docs, seen).missing] == [1]


def test_an_ae_without_its_dead_letter_is_missing() -> None:
    docs, seen = good_run()
    seen.dead_by_sha.clear()
    assert [x.seq for x in account(docs, seen).missing] == [2, 3]


def test_a_document_filed_twice_at_the_dmp_is_doubled() -> None:
    docs, seen = good_run()
    seen.filings = {"1.2.3.0": 2}
    accounting = account(docs, seen)
    assert [x.seq for x in accounting.doubled] == [0]
    with pytest.raises(AccountingError, match="1 doubled"):
        check(accounting)


def test_a_mail_received_twice_under_one_message_id_fails_the_replay() -> None:
    docs, seen = good_run()
    seen.mails = (3, 3)
    check(account(docs, seen))
    seen.mails = (4, 3)  # a resend after a crash mid-SMTP keeps its Message-ID
    accounting = account(docs, seen)
    assert not accounting.ok
    with pytest.raises(AccountingError, match="1 mails received twice"):
        check(accounting)


def test_two_delivered_statuses_for_one_document_are_doubled() -> None:
    docs, seen = good_run()
    received(seen, 0, "e0-resent")  # an AR'd send that did reach the bus, then a resend
    seen.dmp["e0-resent"] = ["DELIVERED"]
    assert [x.seq for x in account(docs, seen).doubled] == [0]


def test_a_resend_ignored_as_a_copy_is_not_doubled() -> None:
    docs, seen = good_run()
    received(seen, 0, "e0-resent")
    seen.duplicates.add("e0-resent")
    assert account(docs, seen).ok


def test_a_hold_reported_twice_is_doubled() -> None:
    docs, seen = good_run()
    seen.doubled = [("held", "e1")]
    assert [x.seq for x in account(docs, seen).doubled] == [1]


def test_a_document_that_lands_where_its_defect_says_it_must_not_is_unexpected() -> None:
    docs, seen = good_run()
    seen.held.pop("e1")
    seen.dmp["e1"] = ["DELIVERED"]  # a provisional identity must never reach the DMP
    accounting = account(docs, seen)
    assert [x.seq for x in accounting.unexpected] == [1]
    assert not accounting.ok


def test_a_copy_that_overtook_its_original_is_fine() -> None:
    docs, seen = good_run()
    seen.dmp = {"e4": ["DELIVERED"]}
    seen.duplicates = {"e0"}
    accounting = account(docs, seen)
    assert accounting.ok, [x for x in accounting.lines if x.problem]


def test_stage_latencies_come_from_the_audit_timeline() -> None:
    stamps = {
        "e0": {
            "RECEIVED": 100.0,
            "IDENTITY_DECIDED": 100.2,
            "TRANSCODED": 100.5,
            "ROUTED": 100.6,
            "DELIVERED": 101.0,
        }
    }
    histograms = stage_histograms(stamps, ["e0"])
    assert histograms["end to end"].get_value_at_percentile(50) == pytest.approx(1000, rel=0.01)
    assert histograms["transcode+validate"].get_value_at_percentile(99) == pytest.approx(
        300, rel=0.01
    )
    assert of_values("x", [1, 2, 3, 1000]).max_ms == pytest.approx(1000, rel=0.01)


def test_a_notification_or_mail_the_route_asked_for_must_have_an_outcome() -> None:
    docs, seen = good_run()
    seen.checked = frozenset({"NOTIFY", "MSSANTE"})
    seen.routed["e0"] = ("DMP", "MSSANTE:ps-1", "MSSANTE:patient", "NOTIFY")
    accounting = account(docs, seen)
    assert not settled(docs, seen)
    assert accounting.lines[0].outcome == "missing: MSSANTE, NOTIFY"
    assert accounting.lines[0].problem == "missing"
    seen.other["e0"] = {"MSSANTE": {"r1": "DELIVERED"}, "NOTIFY": {"r3": "SCHEDULED"}}
    assert account(docs, seen).lines[0].outcome == "missing: MSSANTE"  # one mail of two
    seen.other["e0"]["MSSANTE"]["r2"] = "DELIVERED"
    assert settled(docs, seen)
    assert account(docs, seen).ok  # a notification under embargo counts as scheduled


def test_destinations_whose_sinks_did_not_run_are_only_counted() -> None:
    docs, seen = good_run()
    seen.routed["e0"] = ("DMP", "NOTIFY")
    assert account(docs, seen).ok  # --no-mail: NOTIFY routed, not accounted
    assert account(docs, seen).routed == {"DMP": 1, "NOTIFY": 1}


def test_bad_hl7_through_the_library_is_refused_to_its_caller_not_missing() -> None:
    docs, seen = good_run()
    docs.append(sent(5, Defect.BAD_HL7, answer="ERROR"))  # the library raised to its caller
    accounting = account(docs, seen)
    assert accounting.ok, accounting.summary()
    assert accounting.lines[-1].outcome.startswith("refused: the producer library raised")
    docs.append(sent(6, Defect.NONE, answer="ERROR"))  # a good document refused: unexpected
    assert [x.seq for x in account(docs, seen).lines if x.problem == "unexpected"] == [6]
