"""`relais catalogue report`: the laboratories' work list, exit 1 while there is work."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ops.cli.main import main
from tests.shared_data import shared

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "catalogues"
ARGS = [
    "--dir",
    str(FIXTURES),
    "--loinc",
    str(shared("loinc", "loinc_fr_labels_from_ans_crbio_examples.csv")),
    "--ucum",
    str(shared("jdv", "UCUM_2.16.840.1.113883.6.8.xml")),
]


def test_report_lists_missing_and_suspicious_mappings() -> None:
    result = CliRunner().invoke(main, ["catalogue", "report", "LABO-X", *ARGS], env={})
    assert result.exit_code == 1, result.output
    assert "| LABO-X | 2026-06 | CRPX |" in result.output
    assert "unmapped" in result.output
    assert "unknown-loinc" in result.output
    assert "unit-not-ucum" in result.output


def test_unknown_laboratory_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["catalogue", "report", "NOPE", *ARGS], env={})
    assert result.exit_code == 1
    assert "NOPE" in result.output
    assert "Traceback" not in result.output
