"""Lab exam catalogues and LOINC transcoding: loading and checking catalogues (line numbers,
delimiter, BOM), versions per facility, the LOINC Mod 10 check digit, UCUM units, mapping
results (mapped / waiting / suspicious) and the catalogue report.

Catalogues here are fictitious (tests/fixtures/catalogues/LABO-X); the LOINC-FR table and the
UCUM list are the shared ANS reference files, read from ../shared/data."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.lab_results import (
    LOINC_OID,
    LOINC_WAITING_OID,
    LabResult,
    MappingStatus,
    ValueType,
)
from streams.transcode.lab_catalogue import (
    Catalogue,
    CatalogueStore,
    InvalidCatalogue,
    ReportLine,
    UnknownFacility,
    VersionConflict,
    catalogue_report,
    format_report,
    load_catalogue,
    load_directory,
    map_result,
    version_key,
)
from streams.transcode.lab_codes import (
    LOINC_KNOWN_BAD_CHECK_DIGITS,
    CatalogueError,
    LoincTable,
    ReferenceDataError,
    UcumUnits,
    loinc_check_digit,
    loinc_code_problem,
    same_unit,
    valid_loinc_code,
)
from tests.shared_data import shared

CATALOGUES = Path(__file__).resolve().parents[1] / "fixtures" / "catalogues"
LOINC_CSV = shared("loinc", "loinc_fr_labels_from_ans_crbio_examples.csv")
UCUM_XML = shared("jdv", "UCUM_2.16.840.1.113883.6.8.xml")
HEADER = "local_code,label,specimen,unit,loinc_code\n"
TSH_FR = "Thyréostimuline [Arbitraire/Volume] Sérum/Plasma ; Numérique"


@pytest.fixture(scope="module")
def loinc() -> LoincTable:
    return LoincTable.from_csv(LOINC_CSV.read_text("utf-8"), source=str(LOINC_CSV))


@pytest.fixture(scope="module")
def ucum() -> UcumUnits:
    return UcumUnits.from_xml(UCUM_XML.read_bytes(), source=str(UCUM_XML))


@pytest.fixture(scope="module")
def store() -> CatalogueStore:
    return load_directory(CATALOGUES)


def catalogue(text: str, version: str = "v1", facility: str = "LABO-T") -> Catalogue:
    return load_catalogue(text, facility=facility, version=version)


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(InvalidCatalogue) as caught:
        catalogue(text)
    return [(p.line, p.message) for p in caught.value.problems]


def result(code: str, unit: str | None = None, label: str = "") -> LabResult:
    return LabResult(code, label, "1.2", ValueType.NUMERIC, unit)


# --- LOINC check digit ----------------------------------------------------------------------


def test_check_digit_of_the_users_guide_example() -> None:
    assert loinc_check_digit("12345") == 5  # LOINC Users' Guide, appendix C, worked example


@given(st.text(alphabet="0123456789", min_size=1, max_size=7), st.integers(0, 9))
def test_computed_check_digit_validates_and_any_other_digit_fails(body: str, digit: int) -> None:
    check = loinc_check_digit(body)
    assert valid_loinc_code(f"{body}-{check}")
    assert valid_loinc_code(f"{body}-{digit}") == (digit == check)


def test_every_code_of_the_shared_loinc_table_validates() -> None:
    codes = [line.split(",", 1)[0] for line in LOINC_CSV.read_text("utf-8").splitlines()[1:]]
    assert len(codes) == 52
    assert all(valid_loinc_code(code) for code in codes)
    assert {"3016-3", "718-7", "22664-7", "6690-2"} <= set(codes)


@pytest.mark.parametrize("code", sorted(LOINC_KNOWN_BAD_CHECK_DIGITS))
def test_deprecated_codes_with_a_known_bad_check_digit_are_refused_by_name(code: str) -> None:
    assert "deprecated" in (loinc_code_problem(code) or "")


@pytest.mark.parametrize("code", ["718", "718-", "-7", "12345678-9", "71a-7", "718-77", "LP1-2"])
def test_malformed_codes(code: str) -> None:
    assert "not a LOINC code" in (loinc_code_problem(code) or "")


def test_check_digit_refuses_non_digits() -> None:
    with pytest.raises(ValueError, match="digits only"):
        loinc_check_digit("12a")


# --- loading a catalogue ---------------------------------------------------------------------


def test_comma_catalogue() -> None:
    loaded = catalogue(HEADER + "TSH1,TSH,Sérum,m[IU]/L,3016-3\nUREE,Urée,Sérum,mmol/L,\n")
    tsh, uree = loaded.rows["TSH1"], loaded.rows["UREE"]
    assert (tsh.line, tsh.label, tsh.specimen, tsh.unit, tsh.loinc_code) == (
        2,
        "TSH",
        "Sérum",
        "m[IU]/L",
        "3016-3",
    )
    assert uree.loinc_code is None
    assert loaded.row(" TSH1 ") == tsh
    assert loaded.row("NOPE") is None


def test_semicolon_bom_crlf_and_quoted_delimiter() -> None:
    text = (
        "\ufefflocal_code;label;specimen;unit;loinc_code\r\n" + 'HB;"Hb; sang";Sang;g/dL;718-7\r\n'
    )
    row = catalogue(text).rows["HB"]
    assert (row.label, row.loinc_code) == ("Hb; sang", "718-7")


def test_header_is_case_insensitive_in_any_order_with_extra_columns() -> None:
    text = "LOINC_CODE,Local_Code,comment,Label,Unit,Specimen\n718-7,HB,à revoir,Hb,g/dL,Sang\n"
    row = catalogue(text).rows["HB"]
    assert (row.label, row.unit, row.specimen, row.loinc_code) == ("Hb", "g/dL", "Sang", "718-7")


def test_blank_lines_are_skipped_and_line_numbers_stay_true() -> None:
    loaded = catalogue(HEADER + "\nHB,Hb,Sang,g/dL,718-7\n\n")
    assert loaded.rows["HB"].line == 3


def test_every_row_problem_is_reported_with_its_line() -> None:
    text = HEADER + (
        "TSH1,TSH,Sérum,m[IU]/L,3016-3\n"  # 2: fine
        ",Sans code,Sérum,,\n"  # 3: empty local code
        "TSH1,TSH bis,Sérum,m[IU]/L,3016-3\n"  # 4: duplicate of line 2
        "HB,Hb,Sang,g/dL,718-8\n"  # 5: wrong check digit
        "GB,Leucocytes,Sang,10*9/L,66902\n"  # 6: not a LOINC code
        "X1,,Sang,,\n"  # 7: empty label
        "X2,Trop,de,champs,,ici\n"  # 8: six fields
    )
    found = problems(text)
    assert [line for line, _ in found] == [3, 4, 5, 6, 7, 8]
    messages = dict(found)
    assert "empty local_code" in messages[3]
    assert "duplicate local_code 'TSH1' (first on line 2)" in messages[4]
    assert "wrong check digit (Mod 10 of 718 is 7)" in messages[5]
    assert "'66902': not a LOINC code" in messages[6]
    assert "empty label" in messages[7]
    assert "6 fields where the header has 5" in messages[8]


def test_error_message_names_file_line_and_fix() -> None:
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(HEADER + "HB,Hb,Sang,g/dL,718-8\n", facility="LABO-T", version="v1")
    assert str(caught.value).startswith("LABO-T/v1.csv line 2: loinc_code '718-8': wrong check")
    assert "correct it or leave it empty" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ["", "\ufeff", "code,label,unit\nHB,Hb,g/dL\n", "local_code|label|specimen|unit|loinc_code\n"],
)
def test_a_missing_or_wrong_header_is_line_1(text: str) -> None:
    [(line, message)] = problems(text)
    assert line == 1
    assert "the header must name the columns local_code,label,specimen,unit,loinc_code" in message


def test_a_csv_the_reader_cannot_read_is_reported() -> None:
    [(line, message)] = problems(HEADER + "HB,Hb,Sang,g/dL,718-7\nGB," + "x" * 200_000 + "\n")
    assert line == 3
    assert message.startswith("unreadable CSV: field larger than field limit")


def test_a_loaded_catalogue_is_read_only() -> None:
    loaded = catalogue(HEADER + "HB,Hb,Sang,g/dL,718-7\n")
    with pytest.raises(TypeError):
        loaded.rows["GB"] = loaded.rows["HB"]  # type: ignore[index]


def test_a_header_without_rows_is_refused() -> None:
    assert problems(HEADER) == [(1, "no exam rows: list one exam per line")]


def test_content_hash_and_loaded_time() -> None:
    text = HEADER + "HB,Hb,Sang,g/dL,718-7\n"
    at = datetime(2026, 1, 5, tzinfo=UTC)
    info = load_catalogue(text, facility="F", version="1", loaded_at=at).info
    assert info.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert (info.facility, info.version, info.loaded_at) == ("F", "1", at)


# --- versions per facility ---------------------------------------------------------------------


def test_natural_version_order() -> None:
    versions = ["v10", "2026-10", "v9", "2026-06", "2026-1", "v9a"]
    assert sorted(versions, key=version_key) == ["2026-1", "2026-06", "2026-10", "v9", "v9a", "v10"]


def test_a_new_version_becomes_current_and_history_is_kept() -> None:
    store = CatalogueStore()
    store.add(catalogue(HEADER + "HB,Hb,Sang,g/dL,\n", "v9"))
    assert store.current("LABO-T").info.version == "v9"
    store.add(catalogue(HEADER + "HB,Hb,Sang,g/dL,718-7\n", "v10"))
    assert store.current("LABO-T").rows["HB"].loinc_code == "718-7"
    assert [v.version for v in store.history("LABO-T")] == ["v9", "v10"]
    store.add(catalogue(HEADER + "HB,Hb,Sang,g/dL,\n", "v9"))  # same content again: no-op
    assert len(store.history("LABO-T")) == 2


def test_facilities_are_separate() -> None:
    store = CatalogueStore()
    store.add(catalogue(HEADER + "HB,Hb,Sang,g/dL,718-7\n", "2", facility="LABO-A"))
    store.add(catalogue(HEADER + "GB,Gb,Sang,10*9/L,6690-2\n", "1", facility="LABO-B"))
    assert store.facilities() == ("LABO-A", "LABO-B")
    assert set(store.current("LABO-B").rows) == {"GB"}


def test_a_version_cannot_change_content() -> None:
    store = CatalogueStore()
    store.add(catalogue(HEADER + "HB,Hb,Sang,g/dL,\n", "v1"))
    with pytest.raises(VersionConflict, match=r"LABO-T version v1 .* new version name"):
        store.add(catalogue(HEADER + "HB,Hb,Sang,g/dL,718-7\n", "v1"))


def test_unknown_facility() -> None:
    with pytest.raises(UnknownFacility, match="LABO-Z"):
        CatalogueStore().current("LABO-Z")
    with pytest.raises(UnknownFacility):
        CatalogueStore().history("LABO-Z")


def test_directory_layout(store: CatalogueStore) -> None:
    assert store.facilities() == ("LABO-X",)
    current = store.current("LABO-X")
    assert current.info.version == "2026-06"
    assert current.rows["VITX"].label == "Vitamine X; dosage fictif"
    history = store.history("LABO-X")
    assert [v.version for v in history] == ["2026-01", "2026-06"]
    for info in history:
        content = (CATALOGUES / "LABO-X" / f"{info.version}.csv").read_bytes()
        assert info.sha256 == hashlib.sha256(content).hexdigest()


def test_directory_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "LABO-Y").mkdir()
    bad = tmp_path / "LABO-Y" / "3.csv"
    bad.write_text(HEADER + "HB,Hb,Sang,g/dL,718-7\nHB,Hb,Sang,g/dL,718-7\n", "utf-8")
    with pytest.raises(InvalidCatalogue, match=r"LABO-Y/3\.csv line 3: duplicate local_code"):
        load_directory(tmp_path)
    bad.write_bytes(HEADER.encode() + "HB,Hémoglobine,Sang,g/dL,718-7\n".encode("latin-1"))
    with pytest.raises(InvalidCatalogue, match=r"3\.csv line 2: not UTF-8"):
        load_directory(tmp_path)
    with pytest.raises(CatalogueError, match="not a directory"):
        load_directory(bad)


def test_directory_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("catalogues", "utf-8")
    (tmp_path / "LABO-Y").mkdir()
    (tmp_path / "LABO-Y" / "notes.txt").write_text("x", "utf-8")
    (tmp_path / "LABO-Y" / "v2.csv").write_text(HEADER + "HB,Hb,Sang,g/dL,718-7\n", "utf-8")
    assert load_directory(tmp_path).current("LABO-Y").info.version == "v2"


# --- reference tables --------------------------------------------------------------------------


def test_loinc_table_french_names(loinc: LoincTable) -> None:
    assert loinc.display_name("3016-3") == TSH_FR
    assert loinc.display_name("718-7") == "Hémoglobine"
    assert loinc.knows(" 6690-2 ")
    assert not loinc.knows("12345-5")
    assert loinc.display_name("12345-5") is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("code,name\n718-7,Hb\n", "needs the columns"),
        ("loinc_code,display_name_fr\n718-8,Hb\n", "line 2: '718-8': wrong check digit"),
        ("loinc_code,display_name_fr\n718-7,Hb\n718-7,Hb\n", "line 3: '718-7': duplicate"),
        ("loinc_code,display_name_fr\n718-7,\n", "no display name"),
    ],
)
def test_loinc_table_errors(text: str, error: str) -> None:
    with pytest.raises(ReferenceDataError, match=error):
        LoincTable.from_csv(text)


def test_ucum_list(ucum: UcumUnits) -> None:
    for unit in ["m[IU]/L", "g/dL", "mmol/L", "10*9/L", "%", " fL ", "[arb'U]", "L/(min.m2)"]:
        assert ucum.valid(unit), unit  # &apos; decoded; a code with a trailing space trimmed
    for wrong in ["10^9/L", "µmol/L", "mmol/l", "G/L", "", None]:
        assert not ucum.valid(wrong), wrong


def test_ucum_spelling(ucum: UcumUnits) -> None:
    assert ucum.spelling("mmol/l") == "mmol/L"
    assert ucum.spelling("ml") == "mL"
    assert ucum.spelling("g/dl") == "g/dL"
    assert ucum.spelling("l") == "l"  # both are in the list
    assert ucum.spelling("10^9/L") is None
    assert ucum.spelling(None) is None


def test_ucum_parser_expands_no_external_entity(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do-not-read", "utf-8")
    xml = (
        f'<!DOCTYPE root [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
        "<root><row><code>&x;mL</code></row><row><code>g/L</code></row></root>"
    ).encode()
    units = UcumUnits.from_xml(xml)
    assert not units.valid("do-not-readmL")
    assert units.valid("g/L")


@pytest.mark.parametrize(
    ("content", "error"),
    [(b"<root><row><code>mL</row></root>", "not well-formed"), (b"<root/>", "no <row><code>")],
)
def test_ucum_list_errors(content: bytes, error: str) -> None:
    with pytest.raises(ReferenceDataError, match=error):
        UcumUnits.from_xml(content)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("mmol/L", " mmol/L ", True),
        ("mmol/l", "mmol/L", True),  # UCUM defines both l and L as the liter
        ("ml", "mL", True),
        ("10*9/l", "10*9/L", True),
        ("mL/(24.h)", "ml/(24.h)", True),
        ("mol/L", "moL/L", False),  # only a liter atom, never an l inside another unit
        ("mmol/L", "umol/L", False),
        ("µmol/L", "umol/L", False),  # µ is not UCUM: strict
        ("10^9/L", "10*9/L", False),
        ("g/L", "G/L", False),
        ("lm", "Lm", False),
        (None, None, True),
        ("g/L", None, False),
    ],
)
def test_same_unit(a: str | None, b: str | None, same: bool) -> None:
    assert same_unit(a, b) is same
    assert same_unit(b, a) is same


# --- mapping results -------------------------------------------------------------------------


def test_mapped_result(store: CatalogueStore, loinc: LoincTable, ucum: UcumUnits) -> None:
    lab = store.current("LABO-X")
    coded = map_result(result("TSH1", "m[IU]/L", "TSH"), lab, loinc, ucum)
    assert (coded.code, coded.code_system, coded.display_name) == ("3016-3", LOINC_OID, TSH_FR)
    assert (coded.ucum_unit, coded.status, coded.problems) == ("m[IU]/L", MappingStatus.MAPPED, ())


def test_a_liter_spelling_is_written_as_the_list_has_it(
    store: CatalogueStore, loinc: LoincTable, ucum: UcumUnits
) -> None:
    coded = map_result(result("UREE", "mmol/l"), store.current("LABO-X"), loinc, ucum)
    assert (coded.code, coded.ucum_unit, coded.status) == ("22664-7", "mmol/L", "mapped")


def test_unmapped_rows_and_unknown_codes_wait(
    store: CatalogueStore, loinc: LoincTable, ucum: UcumUnits
) -> None:
    lab = store.current("LABO-X")
    crp = map_result(result("CRPX", "mg/L", "CRP"), lab, loinc, ucum)
    assert (crp.code, crp.code_system, crp.display_name) == ("CRPX", LOINC_WAITING_OID, "CRP")
    assert (crp.status, crp.problems, crp.ucum_unit) == (
        MappingStatus.WAITING,
        ("unmapped",),
        "mg/L",
    )
    other = map_result(result(" ZZ9 ", "U/ml"), lab, loinc, ucum)
    assert (other.code, other.display_name, other.status) == ("ZZ9", "ZZ9", "waiting")
    assert other.ucum_unit == "U/mL"


def test_waiting_keeps_the_catalogue_label_without_a_sent_label(
    store: CatalogueStore, loinc: LoincTable, ucum: UcumUnits
) -> None:
    coded = map_result(result("CRPX", "µg/L"), store.current("LABO-X"), loinc, ucum)
    assert coded.display_name == "Protéine C réactive"
    assert coded.problems == ("unmapped", "unit-not-ucum")
    assert coded.ucum_unit is None


def test_unknown_loinc_is_never_sent_as_loinc(
    store: CatalogueStore, loinc: LoincTable, ucum: UcumUnits
) -> None:
    coded = map_result(result("VITX", "nmol/L"), store.current("LABO-X"), loinc, ucum)
    assert coded.code_system != LOINC_OID  # 12345-5 is not in the LOINC-FR table
    assert coded.code == "VITX"
    assert (coded.status, coded.problems) == (MappingStatus.WAITING, ("unknown-loinc",))


@pytest.mark.parametrize(
    ("code", "unit", "ucum_unit", "found"),
    [
        ("HB", "g/L", "g/L", ("unit-mismatch",)),  # UCUM, but not the catalogue's unit
        ("HB", None, None, ("unit-mismatch",)),  # the catalogue expects g/dL
        ("HB", "gr/dl", None, ("unit-not-ucum", "unit-mismatch")),
        ("GB", "10^9/L", None, ("unit-not-ucum",)),  # as in the catalogue, but not UCUM
        ("GB", "10*9/L", "10*9/L", ("unit-mismatch",)),  # the catalogue says 10^9/L
    ],
)
def test_unit_checks(
    code: str,
    unit: str | None,
    ucum_unit: str | None,
    found: tuple[str, ...],
    store: CatalogueStore,
    loinc: LoincTable,
    ucum: UcumUnits,
) -> None:
    coded = map_result(result(code, unit), store.current("LABO-X"), loinc, ucum)
    assert coded.status is MappingStatus.SUSPICIOUS
    assert coded.code_system == LOINC_OID
    assert (coded.ucum_unit, coded.problems) == (ucum_unit, found)


def test_text_result_without_units_is_mapped(loinc: LoincTable, ucum: UcumUnits) -> None:
    lab = catalogue(HEADER + "GRAM,Gram urine,Urine,,653-6\n")
    text = LabResult("GRAM", "Gram", "Cocci Gram +", ValueType.TEXT)
    coded = map_result(text, lab, loinc, ucum)
    assert (coded.status, coded.ucum_unit, coded.code) == (MappingStatus.MAPPED, None, "653-6")


def test_the_previous_version_maps_differently(
    store: CatalogueStore, loinc: LoincTable, ucum: UcumUnits
) -> None:
    january = load_catalogue(
        (CATALOGUES / "LABO-X" / "2026-01.csv").read_text("utf-8"),
        facility="LABO-X",
        version="2026-01",
    )
    assert map_result(result("UREE", "mmol/L"), january, loinc, ucum).status == "waiting"
    assert map_result(result("UREE", "mmol/L"), store.current("LABO-X"), loinc, ucum).status == (
        "mapped"
    )


# --- the catalogue report ----------------------------------------------------------------------


def test_report_lists_missing_and_suspicious_rows(
    store: CatalogueStore, loinc: LoincTable, ucum: UcumUnits
) -> None:
    lines = catalogue_report(store, loinc, ucum)
    assert [(ln.local_code, ln.problem) for ln in lines] == [
        ("UREE", "unit-not-ucum"),
        ("GB", "unit-not-ucum"),
        ("VITX", "unknown-loinc"),
        ("CRPX", "unmapped"),
    ]
    assert {(ln.facility, ln.version) for ln in lines} == {("LABO-X", "2026-06")}
    by_code = {ln.local_code: ln for ln in lines}
    assert by_code["UREE"].suggestion == "write it mmol/L (UCUM)"
    assert by_code["GB"].suggestion == "use a UCUM unit"
    assert "12345-5 is not in the LOINC-FR table" in by_code["VITX"].suggestion
    assert by_code["CRPX"].label == "Protéine C réactive"


def test_report_for_one_facility(loinc: LoincTable, ucum: UcumUnits) -> None:
    store = CatalogueStore()
    store.add(catalogue(HEADER + "HB,Hb,Sang,g/dL,\n", facility="LABO-A"))
    store.add(catalogue(HEADER + "GB,Gb,Sang,10*9/L,\n", facility="LABO-B"))
    assert [ln.local_code for ln in catalogue_report(store, loinc, ucum)] == ["HB", "GB"]
    assert [ln.local_code for ln in catalogue_report(store, loinc, ucum, "LABO-B")] == ["GB"]
    with pytest.raises(UnknownFacility):
        catalogue_report(store, loinc, ucum, "LABO-Z")


def test_report_of_a_clean_catalogue_is_empty(loinc: LoincTable, ucum: UcumUnits) -> None:
    store = CatalogueStore()
    store.add(catalogue(HEADER + "HB,Hb,Sang,g/dL,718-7\n"))
    assert catalogue_report(store, loinc, ucum) == []
    assert format_report([]) == "No missing or suspicious mappings.\n"


def test_format_report_is_a_markdown_table(
    store: CatalogueStore, loinc: LoincTable, ucum: UcumUnits
) -> None:
    text = format_report(catalogue_report(store, loinc, ucum))
    rows = text.splitlines()
    assert rows[0] == "| Facility | Version | Local code | Label | Problem | Suggestion |"
    assert rows[1] == "| --- | --- | --- | --- | --- | --- |"
    assert rows[2] == "| LABO-X | 2026-06 | UREE | Urée | unit-not-ucum | write it mmol/L (UCUM) |"
    assert len(rows) == 6
    assert text.endswith("|\n")


def test_format_report_escapes_cells() -> None:
    line = ReportLine("L", "1", "A|B", "two\nlines", "unmapped", "x")
    assert format_report([line]).splitlines()[2] == "| L | 1 | A\\|B | two lines | unmapped | x |"
