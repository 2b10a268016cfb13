"""Every `relais` command and subcommand answers --help with a usage and a description."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from ops.cli.main import main


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


@pytest.mark.parametrize("path", _commands(main), ids=lambda p: " ".join(p) or "relais")
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], env={})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    description = result.output.split("\n\n")[1].strip()
    assert len(description) > 20, f"{' '.join(path)} needs a real description"


def test_every_component_has_a_command() -> None:
    names = {" ".join(p) for p in _commands(main)}
    assert {
        "broker",
        "topics create",
        "topics list",
        "worker",
        "sink dmp",
        "sandbox dmp",
        "publish",
        "demo",
        "keys generate",
    } <= names


def test_bad_setting_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["topics", "list"], env={"RELAIS_METRICS_PORT": "nine"})
    assert result.exit_code == 2
    assert "RELAIS_METRICS_PORT='nine' is not a whole number" in result.output
