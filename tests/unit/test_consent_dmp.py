"""The DMP sink's reading of the patient's stamped word: file, or refuse with a DMP code."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.dmp.consent import CLOSED, OPPOSITION, consent_refusal, err5
from consumers.dmp.error_codes import Decision, decide


def request(action: str = "SUBMIT", **stamp: str | None) -> dict[str, Any]:
    consent = None
    if stamp:
        consent = {"as_of": "20261122", "source_event_id": "adt-1", **stamp}
    return {
        "document": {"action": action, "unique_id": "1.2.3"},
        "patient": {"patient_key": "k", "dmp_consent": consent},
    }


@pytest.mark.parametrize(
    ("stamp", "code", "zam"),
    [
        ({"dmp_status": "FERME"}, CLOSED, "DMPClosed^DMP fermé^DMPERRORCODE"),
        ({"closed_date": "20261120"}, CLOSED, "DMPClosed^DMP fermé^DMPERRORCODE"),
        (
            {"dmp_status": "ACTIF", "feeding": "IO"},
            OPPOSITION,
            "DMPPatientOpposition^Opposition du patient^DMPERRORCODE",
        ),
        # closed and objected: the closed DMP is the reason (nothing can be filed at all)
        ({"dmp_status": "FERME", "feeding": "IO"}, CLOSED, "DMPClosed^DMP fermé^DMPERRORCODE"),
    ],
)
def test_an_objection_or_a_closed_dmp_is_refused_with_its_dmp_code(
    stamp: dict[str, str], code: str, zam: str
) -> None:
    refusal = consent_refusal(request(**stamp))
    assert refusal is not None
    assert refusal.code == code
    assert err5(refusal) == zam
    assert "adt-1" in refusal.detail  # which identity event said it
    assert "replay" in refusal.text  # what the sender can do
    assert decide(code).decision is Decision.REFUSE  # the sink's table: a refusal, not retried


@pytest.mark.parametrize(
    "stamp",
    [
        {"dmp_status": "ACTIF", "feeding": "INO"},
        {"dmp_status": "ACTIF", "feeding": "NA"},
        {"dmp_status": "INEXISTANT"},  # the DMP's own answer (TD0.2) decides, not a stale word
        {"dmp_status": "ACTIF", "closed_date": "20251231"},  # reopened
        {"consultation": "INC"},  # refusing consultation is not objecting to feeding
    ],
)
def test_other_words_let_the_document_be_filed(stamp: dict[str, str]) -> None:
    assert consent_refusal(request(**stamp)) is None


def test_no_stamp_or_a_deletion_is_never_stopped() -> None:
    assert consent_refusal(request()) is None
    assert consent_refusal(request("DELETE", feeding="IO")) is None
    assert consent_refusal(request("REPLACE", feeding="IO")) is not None


def test_the_word_now_decides_over_the_stamp_which_is_the_fallback() -> None:
    objected = {"dmp_status": "ACTIF", "feeding": "IO", "source_event_id": "adt-2"}
    lifted = {"dmp_status": "ACTIF", "feeding": "INO", "source_event_id": "adt-3"}
    # stamped before the objection, filed after it: refused
    refusal = consent_refusal(request(feeding="INO"), objected)
    assert refusal is not None
    assert refusal.code == OPPOSITION
    assert "adt-2" in refusal.detail
    # stamped with the objection, lifted since (a replay): filed
    assert consent_refusal(request(feeding="IO"), lifted) is None
    # nothing published for the patient: the stamp
    assert consent_refusal(request(feeding="IO"), None) is not None
    assert consent_refusal(request("DELETE"), objected) is None
