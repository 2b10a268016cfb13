"""What lab traffic tells about the catalogues: codes seen unmapped or suspicious (pure).

The transcode stage writes one line per problem result into the audit record of
the document it built (no values, no patient data: the laboratory, the
catalogue version, the local code, the problem and the units);
``relais catalogue report --seen`` reads them back from the audit topic and
adds to the catalogue's own problems the codes laboratories actually send —
unmapped codes missing from the catalogue, units that differ from the
catalogue's — with how often each was seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from domain.lab_results import CodedResult
from streams.transcode.lab_catalogue import markdown_table

PREFIX: Final = "lab-mapping"
NO_CATALOGUE: Final = "-"

SUGGESTIONS: Final = {
    "unmapped": "add the code and its LOINC mapping to the catalogue",
    "no-catalogue": "load this laboratory's catalogue (RELAIS_CATALOGUE_DIR)",
    "unknown-loinc": "the catalogue's LOINC code is not in the LOINC-FR table: check it",
    "unit-mismatch": "the laboratory sends another unit than the catalogue's: fix one of them",
    "unit-not-ucum": "the laboratory sends a unit that is not UCUM",
}


@dataclass(frozen=True)
class Finding:
    facility: str
    version: str  # catalogue version used, NO_CATALOGUE when the laboratory has none
    local_code: str
    problem: str
    sent_unit: str  # unit of the result as sent ("" when none)
    catalogue_unit: str  # unit in the catalogue ("" when none or unknown)

    def line(self) -> str:
        fields = (PREFIX, *(_clean(v) for v in vars(self).values()))
        return "\t".join(fields)


def _clean(value: str) -> str:
    return " ".join(value.split())


def findings(
    facility: str,
    version: str,
    coded: Sequence[CodedResult],
    catalogue_units: dict[str, str | None],
) -> list[Finding]:
    """One finding per problem of each coded result of one report."""
    return [
        Finding(
            facility,
            version,
            item.result.local_code.strip(),
            problem,
            (item.result.unit or "").strip(),
            catalogue_units.get(item.result.local_code.strip()) or "",
        )
        for item in coded
        for problem in item.problems
    ]


def parse_line(line: str) -> Finding | None:
    """A finding written by :meth:`Finding.line`; None for any other line."""
    parts = line.split("\t")
    if len(parts) != 7 or parts[0] != PREFIX:
        return None
    return Finding(*parts[1:])


@dataclass(frozen=True)
class SeenLine:
    finding: Finding
    count: int

    @property
    def suggestion(self) -> str:
        base = SUGGESTIONS.get(self.finding.problem, "check the mapping")
        found = self.finding
        if found.problem == "unit-mismatch":
            return f"{base} (sent {found.sent_unit}, catalogue {found.catalogue_unit})"
        return base


def seen_in_traffic(details: Iterable[str], facility: str | None = None) -> list[SeenLine]:
    """Findings from audit details, counted, most frequent first (then by laboratory, code)."""
    counts: Counter[Finding] = Counter(
        found
        for detail in details
        for found in map(parse_line, detail.splitlines())
        if found is not None and (facility is None or found.facility == facility)
    )
    ordered = sorted(
        counts.items(), key=lambda kv: (-kv[1], kv[0].facility, kv[0].local_code, kv[0].problem)
    )
    return [SeenLine(found, count) for found, count in ordered]


def format_seen(lines: Sequence[SeenLine]) -> str:
    """The traffic part of ``relais catalogue report`` as a Markdown table."""
    if not lines:
        return "No unmapped or suspicious codes seen in traffic.\n"
    header = ("Facility", "Version", "Local code", "Problem", "Seen", "Suggestion")
    rows: list[tuple[str, ...]] = []
    for ln in lines:
        f = ln.finding
        rows.append((f.facility, f.version, f.local_code, f.problem, str(ln.count), ln.suggestion))
    return markdown_table(header, rows)
