"""Lab traffic findings: written into audit details, read back and counted for the work list."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.lab_results import LOINC_OID, CodedResult, LabResult, MappingStatus, ValueType
from streams.transcode.lab_findings import (
    NO_CATALOGUE,
    Finding,
    SeenLine,
    findings,
    format_seen,
    parse_line,
    seen_in_traffic,
)


def coded(code: str, unit: str | None, *problems: str) -> CodedResult:
    result = LabResult(code, "libellé", "12", ValueType.NUMERIC, unit)
    status = MappingStatus.SUSPICIOUS if problems else MappingStatus.MAPPED
    return CodedResult(result, "718-7", LOINC_OID, "Hémoglobine", unit, status, problems)


def test_one_finding_per_problem_and_none_for_clean_results() -> None:
    found = findings(
        "LABO-X",
        "2026-06",
        [coded("HB", "g/L", "unit-mismatch"), coded("TSH1", "m[IU]/L"), coded("Z", None, "a", "b")],
        {"HB": "g/dL"},
    )
    assert found == [
        Finding("LABO-X", "2026-06", "HB", "unit-mismatch", "g/L", "g/dL"),
        Finding("LABO-X", "2026-06", "Z", "a", "", ""),
        Finding("LABO-X", "2026-06", "Z", "b", "", ""),
    ]


text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12)


@given(st.lists(text, min_size=6, max_size=6))
def test_lines_read_back_as_written(fields: list[str]) -> None:
    finding = Finding(*fields)
    parsed = parse_line(finding.line())
    assert parsed == Finding(*(" ".join(f.split()) for f in fields))


def test_other_lines_are_not_findings() -> None:
    assert parse_line("route: DMP") is None
    assert parse_line("lab-mapping\tonly\tthree") is None


def test_traffic_is_counted_most_frequent_first_and_filtered_by_laboratory() -> None:
    mismatch = Finding("LABO-X", "2026-06", "HB", "unit-mismatch", "g/L", "g/dL")
    unmapped = Finding("LABO-X", "2026-06", "CRPX", "unmapped", "mg/L", "")
    other = Finding("LABO-Y", NO_CATALOGUE, "K", "no-catalogue", "", "")
    details = [
        f"{unmapped.line()}\n{mismatch.line()}",
        unmapped.line(),
        f"{other.line()}\nnot a finding",
    ]
    assert seen_in_traffic(details) == [
        SeenLine(unmapped, 2),
        SeenLine(mismatch, 1),
        SeenLine(other, 1),
    ]
    assert seen_in_traffic(details, "LABO-Y") == [SeenLine(other, 1)]
    table = format_seen(seen_in_traffic(details, "LABO-X"))
    assert "| LABO-X | 2026-06 | CRPX | unmapped | 2 |" in table
    assert "(sent g/L, catalogue g/dL)" in table
    assert format_seen([]).startswith("No unmapped")
