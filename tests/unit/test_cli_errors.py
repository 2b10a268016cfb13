"""What an operator who got a setting wrong sees: one line naming it, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli.main import main as relais
from relais.keyring import Keyring


@pytest.fixture
def keyring_env(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "keyring.json"
    Keyring.generate().write(path)
    return {
        "RELAIS_KEYRING_FILE": str(path),
        "RELAIS_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens there
        "RELAIS_METRICS_PORT": "0",
        "RELAIS_DATA_DIR": str(tmp_path / "data"),
    }


@pytest.mark.parametrize(
    ("args", "code", "names"),
    [
        (["sink", "dmp"], 2, "RELAIS_DMP_CLIENT_CERT"),
        (["mss", "watch"], 2, "RELAIS_MSS_IMAP_USER"),
        (["worker", "identity"], 2, "RELAIS_BOOTSTRAP_SERVERS"),
    ],
)
def test_a_missing_or_wrong_setting_is_one_line_naming_it(
    args: list[str], code: int, names: str, keyring_env: dict[str, str]
) -> None:
    result = CliRunner().invoke(relais, args, env=keyring_env)
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    assert names in errors[0]
    assert "Traceback" not in result.output
