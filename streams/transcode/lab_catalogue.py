"""Laboratory exam catalogues (CSV, versioned per sending facility) and LOINC transcoding.

:func:`map_result` codes a :class:`LabResult` with LOINC and its French display name, or
with the LOINC *waiting* code system when the catalogue has no mapping (nothing disappears);
:func:`catalogue_report` is each laboratory's work list of missing and suspicious mappings.
Only :func:`load_directory` touches files; everything else takes text or bytes. The LOINC
and UCUM reference data, and the errors' tree, are in :mod:`streams.transcode.lab_codes`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Final

from domain.lab_results import LOINC_OID, LOINC_WAITING_OID, CodedResult, LabResult, MappingStatus
from streams.transcode.lab_codes import (
    CatalogueError,
    LoincTable,
    UcumUnits,
    loinc_code_problem,
    same_unit,
)

COLUMNS: Final = ("local_code", "label", "specimen", "unit", "loinc_code")


@dataclass(frozen=True)
class CatalogueProblem:
    line: int
    message: str


class InvalidCatalogue(CatalogueError):
    """A catalogue file with problems; every problem names its line and what to fix."""

    def __init__(self, source: str, problems: Sequence[CatalogueProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(f"{source} line {p.line}: {p.message}" for p in problems))


class UnknownFacility(CatalogueError):
    """No catalogue has been loaded for this sending facility."""


class VersionConflict(CatalogueError):
    """A facility's version is already loaded with different content."""


@dataclass(frozen=True)
class CatalogueRow:
    line: int
    local_code: str
    label: str
    specimen: str
    unit: str | None
    loinc_code: str | None  # None: not mapped yet


@dataclass(frozen=True)
class CatalogueVersion:
    facility: str
    version: str
    loaded_at: datetime
    sha256: str  # of the text as UTF-8 (= of the file's bytes when read by load_directory)


@dataclass(frozen=True)
class Catalogue:
    info: CatalogueVersion
    rows: Mapping[str, CatalogueRow]  # by local code, in file order

    def row(self, local_code: str) -> CatalogueRow | None:
        return self.rows.get(local_code.strip())


def load_catalogue(
    text: str,
    *,
    facility: str,
    version: str,
    source: str | None = None,
    loaded_at: datetime | None = None,
) -> Catalogue:
    """Parse and check a catalogue; raises :class:`InvalidCatalogue` listing every problem."""
    name = source or f"{facility}/{version}.csv"
    delimiter, columns = _header(text.removeprefix("\ufeff"), name)
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), delimiter=delimiter)
    next(reader)
    rows: dict[str, CatalogueRow] = {}
    problems: list[CatalogueProblem] = []
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            row, messages = _row(record, columns, reader.line_num, rows)
            problems += [CatalogueProblem(reader.line_num, message) for message in messages]
            if row is not None:
                rows[row.local_code] = row
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit()
        problems.append(CatalogueProblem(reader.line_num, f"unreadable CSV: {exc}"))
    if not rows and not problems:
        problems.append(CatalogueProblem(1, "no exam rows: list one exam per line"))
    if problems:
        raise InvalidCatalogue(name, problems)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    info = CatalogueVersion(facility, version, loaded_at or datetime.now(UTC), digest)
    return Catalogue(info, MappingProxyType(rows))


def _header(text: str, source: str) -> tuple[str, list[str]]:
    """The delimiter (``;`` or ``,``, whichever splits the header into the columns) and names."""
    first = text.splitlines()[0] if text.strip() else ""
    for delimiter in (";", ","):
        names = [cell.strip().lower() for cell in next(csv.reader([first], delimiter=delimiter))]
        if set(COLUMNS) <= set(names) and len(set(names)) == len(names):
            return delimiter, names
    wanted = ",".join(COLUMNS)
    problem = f"the header must name the columns {wanted} (';' or ','), found {first!r}"
    raise InvalidCatalogue(source, [CatalogueProblem(1, problem)])


def _row(
    record: list[str], columns: list[str], line: int, seen: Mapping[str, CatalogueRow]
) -> tuple[CatalogueRow | None, list[str]]:
    if len(record) != len(columns):
        found = f"{len(record)} fields where the header has {len(columns)}"
        return None, [f"{found}: quote any field that contains the delimiter"]
    cells = {name: cell.strip() for name, cell in zip(columns, record, strict=True)}
    code, loinc = cells["local_code"], cells["loinc_code"]
    problems: list[str] = []
    if not code:
        problems.append("empty local_code: give the laboratory's own code for this exam")
    elif code in seen:
        first = seen[code].line
        problems.append(f"duplicate local_code {code!r} (first on line {first}): keep one row")
    if not cells["label"]:
        problems.append("empty label: name the exam (shown while it has no LOINC code)")
    if loinc and (why := loinc_code_problem(loinc)):
        problems.append(f"loinc_code {loinc!r}: {why}; correct it or leave it empty")
    if problems:
        return None, problems
    unit = cells["unit"] or None
    row = CatalogueRow(line, code, cells["label"], cells["specimen"], unit, loinc or None)
    return row, []


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Natural sort key: digit runs compare as numbers (``v9`` < ``v10``)."""
    parts = re.findall(r"[0-9]+|[^0-9]+", version)
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts)


class CatalogueStore:
    """The catalogue versions of each sending facility; the current one is the highest version."""

    def __init__(self) -> None:
        self._versions: dict[str, dict[str, Catalogue]] = {}

    def add(self, catalogue: Catalogue) -> None:
        """Add a version; the same content again is a no-op, other content is a conflict."""
        info = catalogue.info
        versions = self._versions.setdefault(info.facility, {})
        known = versions.setdefault(info.version, catalogue)
        if known.info.sha256 != info.sha256:
            raise VersionConflict(
                f"{info.facility} version {info.version} is already loaded with other content: "
                "give the changed catalogue a new version name"
            )

    def facilities(self) -> tuple[str, ...]:
        return tuple(sorted(self._versions))

    def current(self, facility: str) -> Catalogue:
        versions = self._of(facility)
        return versions[max(versions, key=version_key)]

    def history(self, facility: str) -> tuple[CatalogueVersion, ...]:
        """Every loaded version of a facility, oldest (lowest version) first."""
        versions = self._of(facility)
        return tuple(versions[name].info for name in sorted(versions, key=version_key))

    def _of(self, facility: str) -> dict[str, Catalogue]:
        versions = self._versions.get(facility)
        if not versions:
            raise UnknownFacility(f"no catalogue loaded for facility {facility!r}")
        return versions


def load_directory(path: Path) -> CatalogueStore:
    """Load ``<path>/<FACILITY>/<version>.csv``; each facility's highest version is current."""
    if not path.is_dir():
        raise CatalogueError(f"{path}: not a directory (expected <dir>/<FACILITY>/<version>.csv)")
    store, load = CatalogueStore(), partial(load_catalogue, loaded_at=datetime.now(UTC))
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(folder.glob("*.csv"), key=lambda f: version_key(f.stem)):
            content = file.read_bytes()
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = content[: exc.start].count(b"\n") + 1
                fix = "not UTF-8: save the file as UTF-8 (with or without BOM)"
                raise InvalidCatalogue(str(file), [CatalogueProblem(line, fix)]) from exc
            store.add(load(text, facility=folder.name, version=file.stem, source=str(file)))
    return store


def map_result(
    result: LabResult, catalogue: Catalogue, loinc: LoincTable, ucum: UcumUnits
) -> CodedResult:
    """LOINC-code one result with its laboratory's catalogue (WAITING when not mapped)."""
    row = catalogue.row(result.local_code)
    unit = (result.unit or "").strip() or None
    ucum_unit = ucum.spelling(unit)
    unit_problems = ("unit-not-ucum",) if unit is not None and ucum_unit is None else ()
    if row is None or row.loinc_code is None:
        label = result.local_label.strip() or (row.label if row else result.local_code.strip())
        return _waiting(result, label, ucum_unit, ("unmapped", *unit_problems))
    display = loinc.display_name(row.loinc_code)
    if not display:  # not in the LOINC-FR table: never sent as LOINC, like an unmapped code
        label = result.local_label.strip() or row.label
        return _waiting(result, label, ucum_unit, ("unknown-loinc", *unit_problems))
    found = (*unit_problems, *([] if same_unit(unit, row.unit) else ["unit-mismatch"]))
    status = MappingStatus.SUSPICIOUS if found else MappingStatus.MAPPED
    return CodedResult(result, row.loinc_code, LOINC_OID, display, ucum_unit, status, found)


def _waiting(
    result: LabResult, label: str, ucum_unit: str | None, problems: tuple[str, ...]
) -> CodedResult:
    """``result`` sent with the laboratory's own code and no LOINC claim (WAITING)."""
    code = result.local_code.strip()
    return CodedResult(
        result, code, LOINC_WAITING_OID, label, ucum_unit, MappingStatus.WAITING, problems
    )


@dataclass(frozen=True)
class ReportLine:
    facility: str
    version: str
    local_code: str
    label: str
    problem: str  # unmapped | unknown-loinc | unit-not-ucum
    suggestion: str


def catalogue_report(
    store: CatalogueStore, loinc: LoincTable, ucum: UcumUnits, facility: str | None = None
) -> list[ReportLine]:
    """Missing and suspicious mappings of each facility's current catalogue (or of one)."""
    facilities = store.facilities() if facility is None else (facility,)
    lines: list[ReportLine] = []
    for catalogue in map(store.current, facilities):
        info = catalogue.info
        lines += [
            ReportLine(info.facility, info.version, row.local_code, row.label, *finding)
            for row in catalogue.rows.values()
            for finding in _findings(row, loinc, ucum)
        ]
    return lines


def _findings(row: CatalogueRow, loinc: LoincTable, ucum: UcumUnits) -> Iterator[tuple[str, str]]:
    """(problem, suggestion) for one catalogue row."""
    if row.loinc_code is None:
        yield "unmapped", "add its LOINC code (results go out with a waiting code meanwhile)"
    elif not loinc.knows(row.loinc_code):
        yield "unknown-loinc", f"{row.loinc_code} is not in the LOINC-FR table: check the code"
    if row.unit is not None and not ucum.valid(row.unit):
        spelled = ucum.spelling(row.unit)
        yield "unit-not-ucum", f"write it {spelled} (UCUM)" if spelled else "use a UCUM unit"


def format_report(lines: Sequence[ReportLine]) -> str:
    """The report as a Markdown table (what ``relais catalogue report LAB`` prints)."""
    if not lines:
        return "No missing or suspicious mappings.\n"
    header = ("Facility", "Version", "Local code", "Label", "Problem", "Suggestion")
    rows = (
        (ln.facility, ln.version, ln.local_code, ln.label, ln.problem, ln.suggestion)
        for ln in lines
    )
    return markdown_table(header, (tuple(" ".join(v.split()) for v in row) for row in rows))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of ``rows`` under ``header``; ``|`` in a cell is escaped."""
    table = [header, ["---"] * len(header), *([v.replace("|", "\\|") for v in r] for r in rows)]
    return "".join("| " + " | ".join(row) + " |\n" for row in table)
