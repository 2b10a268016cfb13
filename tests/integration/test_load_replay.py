"""`relais load` on a tiny profile: every document accounted for, the report written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ops.cli.main import main
from tests.shared_data import shared


def replay(tmp_path: Path, out: Path, *options: str) -> dict[str, Any]:
    """Run `relais load` into ``out``; it must exit 0; its summary.json."""
    result = CliRunner().invoke(
        main,
        ["load", *options, "--out", str(out)],
        env={"RELAIS_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    assert "all accounted for" in result.output
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True
    return summary


def test_a_tiny_replay_accounts_for_every_document_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "load"
    summary = replay(
        tmp_path,
        out,
        "--documents", "30",
        "--span-in", "8",
        "--city-doctors",
        "--unqualified", "0.1",
        "--duplicates", "0.1",
        "--bad-inputs", "0.1",
        "--seed", "7",
        "--cda-xsd-dir", str(shared("cda-xsd")),
        "--drain-timeout", "40",
        "--progress-every", "2",
    )  # fmt: skip
    assert summary["documents"] == 30
    outcomes = summary["outcomes"]
    assert sum(outcomes.values()) == 30
    # seed 7 plans every kind of outcome
    assert set(outcomes) == {"delivered", "held", "duplicate-ignored", "refused"}
    report = (out / "report.md").read_text()
    for heading in ("## Accounting", "## Latency (ms, HDR histograms)", "## Processes"):
        assert heading in report
    assert "| end to end |" in report
    # the notifications the route stage asked for were accounted, and mailed once each
    assert "MSSanté and notification outcomes are accounted" in report
    mails = re.search(r"received (\d+) mails with (\d+) distinct Message-IDs", report)
    assert mails is not None
    assert int(mails.group(1)) > 0
    assert mails.group(1) == mails.group(2)
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")
    lines = (out / "accounting.csv").read_text().splitlines()
    assert len(lines) == 31


def test_a_chaos_replay_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """Workers SIGKILLed and restarted, the broker restarted on its S3 store: 0 lost, 0 doubled."""
    summary = replay(
        tmp_path,
        tmp_path / "chaos",
        "--documents", "24",
        "--rate", "1.5",
        "--chaos",
        "--kills", "2",
        "--seed", "3",
        "--drain-timeout", "240",
        "--progress-every", "4",
    )  # fmt: skip
    assert sum(summary["outcomes"].values()) == 24
    events = [what for _, what, _ in summary["chaos_events"]]
    assert sum(e.startswith("SIGKILL ") for e in events) == 2
    assert "broker restart (s3://tansu/)" in events
    # nothing lost: every document the route stage sent to the DMP was filed there, once
    dmp = summary["dmp_sandbox"]
    assert dmp["documents"] == summary["delivered"] > 0
    assert dmp["max_per_document"] == 1
    mails = summary["mails"]
    assert mails["received"] == mails["message_ids"] > 0
