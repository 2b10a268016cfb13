"""docs/metrics.md is the code's metrics catalogue, and every metric follows the conventions."""

from __future__ import annotations

from click.testing import CliRunner

from ops.cli.main import main
from ops.metrics_catalogue import MetricDoc, catalogue, convention_problems, markdown
from tests.shared_data import REPO


def test_docs_metrics_md_is_the_catalogue_of_the_code() -> None:
    documented = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert documented == markdown(catalogue()), (
        "docs/metrics.md is stale: run `relais metrics catalogue > docs/metrics.md`"
    )


def test_every_metric_follows_the_conventions_and_carries_no_patient_data() -> None:
    docs = catalogue()
    assert len(docs) >= 40
    assert convention_problems(docs) == []
    names = {d.name for d in docs}
    for needed in (
        "relais_deliveries_total",
        "relais_delivery_latency_seconds",
        "relais_consumer_lag_records",
        "relais_deadletters_total",
        "relais_identity_held_documents",
        "relais_insi_call_seconds",
        "relais_mss_smtp_seconds",
    ):
        assert needed in names, needed


def test_the_conventions_check_can_fail() -> None:
    bad = [
        MetricDoc("relais_sent", "counter", (), "x", "p"),
        MetricDoc("relais_delay_ms", "gauge", (), "x", "p"),
        MetricDoc("relais_size", "histogram", (), "x", "p"),
        MetricDoc("relais_by_patient_total", "counter", ("ins",), "x", "p"),
        MetricDoc("other_total", "counter", (), "", "p"),
    ]
    problems = " | ".join(convention_problems(bad))
    for expected in (
        "_total",
        "base units",
        "seconds or bytes",
        "patient data",
        "namespace",
        "help",
    ):
        assert expected in problems, expected


def test_the_cli_prints_it_and_checks_it() -> None:
    result = CliRunner().invoke(main, ["metrics", "catalogue", "--check"])
    assert result.exit_code == 0, result.output
    assert result.output == markdown(catalogue())
