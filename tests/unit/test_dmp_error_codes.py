"""The table of DMP error codes decides retry or refusal, and what the producer is told."""

from __future__ import annotations

import pytest

from consumers.dmp.error_codes import CODES, Decision, decide, metric_label, retriable
from consumers.dmp.reuse import refusal
from consumers.dmp.submission import DmpRejected, DmpUnavailable, read_answer
from sandboxes.dmp_answers import Error, fault, registry_response


def test_every_code_names_its_source_and_says_what_to_do() -> None:
    for code, row in CODES.items():
        assert row.code == code
        assert row.source, code
        assert row.operator, code
        assert row.text, code
        assert row.label, code
        assert row.text.isascii() or code.startswith("DMP"), code  # ERR-8 in ASCII
    # the one DMP code seen in public material cites the CI-SIS example; the others say assumed
    assert "ZAM^Z01" in CODES["DMPClosed"].source
    for code in ("DMPNotFound", "DMPPatientOpposition", "DMPAccessDenied"):
        assert CODES[code].source.startswith("assumed"), code
    assert CODES["XDSRegistryBusy"].source.startswith("IHE ITI TF-3 Table 4.2.4.1-2")


@pytest.mark.parametrize(
    ("code", "decision"),
    [
        ("XDSRegistryBusy", Decision.RETRY),
        ("XDSRepositoryBusy", Decision.RETRY),
        ("XDSRegistryOutOfResources", Decision.RETRY),
        ("XDSRegistryNotAvailable", Decision.RETRY),
        ("Unreachable", Decision.RETRY),
        ("HTTP503", Decision.RETRY),
        ("HTTP429", Decision.RETRY),
        ("DMPClosed", Decision.REFUSE),
        ("DMPNotFound", Decision.REFUSE),
        ("DMPPatientOpposition", Decision.REFUSE),
        ("DMPAccessDenied", Decision.REFUSE),
        ("XDSUnknownPatientId", Decision.REFUSE),
        ("XDSPatientIdDoesNotMatch", Decision.REFUSE),
        ("XDSNonIdenticalHash", Decision.REFUSE),
        ("XDSRegistryMetadataError", Decision.REFUSE),
        ("XDSRegistryError", Decision.REFUSE),
        ("UnresolvedReferenceException", Decision.REFUSE),
        ("HTTP400", Decision.REFUSE),
        ("TD02Unreadable", Decision.REFUSE),  # an answer Relais cannot read: not retried
    ],
)
def test_the_table_decides(code: str, decision: Decision) -> None:
    assert decide(code).decision is decision
    assert retriable(code) is (decision is Decision.RETRY)


def test_an_unknown_code_is_refused_with_the_code_quoted() -> None:
    row = decide("DMPSomethingNew")
    assert row.decision is Decision.REFUSE
    assert "DMPSomethingNew" in row.operator
    assert "DMPSomethingNew" in row.text
    assert decide(None).decision is Decision.REFUSE
    assert "DMPSomethingNew" in refusal("DMPSomethingNew", "1.2.3").reason


def test_a_registry_answer_is_retried_or_refused_from_the_table() -> None:
    """The answers are the DMP sandbox's (sandboxes.dmp_answers), not the client's."""
    busy = registry_response([Error("XDSRepositoryBusy", "busy")], relates_to="")
    with pytest.raises(DmpUnavailable) as retried:
        read_answer(200, "application/soap+xml", busy)
    assert retried.value.code == "XDSRepositoryBusy"
    closed = registry_response([Error("DMPClosed", "closed")], relates_to="")
    with pytest.raises(DmpRejected) as refused:
        read_answer(200, "application/soap+xml", closed)
    assert refused.value.code == "DMPClosed"
    later = fault("Sender", "XDSRegistryBusy", "later", relates_to="")
    with pytest.raises(DmpUnavailable):  # a Sender fault the table says is worth retrying
        read_answer(400, "application/soap+xml", later)
    other = fault("Sender", "wsse:FailedAuthentication", "no", relates_to="")
    with pytest.raises(DmpRejected):
        read_answer(400, "application/soap+xml", other)


def test_a_metric_label_is_a_code_of_the_table_or_other() -> None:
    """The DMP's raw codes are unbounded; a Prometheus label's values must not be."""
    assert metric_label(None) == "open"
    assert metric_label("DMPClosed") == "DMPClosed"
    assert metric_label("TD02Unreadable") == "TD02Unreadable"
    assert metric_label("DMPSomethingNew") == "other"
    assert metric_label("x" * 500) == "other"
    assert {metric_label(f"DMP{n}") for n in range(1000)} == {"other"}


def test_the_dead_letter_says_what_the_code_means_never_the_dmps_text() -> None:
    failure = refusal("DMPClosed", "1.2.3")
    assert failure.reason_code == "dmp-rejected"
    assert "DMPClosed" in failure.reason
    assert "closed" in failure.reason
    assert refusal("XDSNonIdenticalHash", "1.2.3").reason_code == "document-id-reused"
