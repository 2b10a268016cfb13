"""The import contracts (pyproject.toml [tool.importlinter]) hold, and would catch a reversed import.

`make lint` runs lint-imports on the tree; these tests also show that the contracts are not
vacuous: a copy of the tree with one import pointing up (the core importing the CLI) or across
(one stage importing a sibling) must be refused, naming the offending import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "benchmarks",
    "ops",
    "sandboxes",
    "consumers",
    "mss_bridge",
    "streams",
    "producers",
    "domain",
    "relais",
    "schemas",
)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return root


def with_import(root: Path, module: str, statement: str) -> Path:
    """A copy of ``root`` where ``module`` (a path) ends with ``statement``."""
    copy = root.parent / f"{root.name}-{module.replace('/', '-')}"
    shutil.copytree(root, copy)
    target = copy / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{statement}  # noqa\n")
    return copy


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_core_importing_the_cli_is_refused(tree_copy: Path) -> None:
    reversed_tree = with_import(tree_copy, "relais/topics.py", "import ops.cli.main")
    result = lint_imports(reversed_tree)
    assert result.returncode != 0
    assert "relais is not allowed to import ops" in result.stdout
    assert "relais.topics -> ops.cli.main" in result.stdout


def test_a_stage_importing_its_sibling_is_refused(tree_copy: Path) -> None:
    across = with_import(tree_copy, "streams/route/stage.py", "import streams.identity.rules")
    result = lint_imports(across)
    assert result.returncode != 0
    assert "streams.route is not allowed to import streams.identity" in result.stdout


def test_intake_importing_a_stage_is_refused(tree_copy: Path) -> None:
    upward = with_import(tree_copy, "producers/publisher.py", "import streams.stage")
    result = lint_imports(upward)
    assert result.returncode != 0
    assert "producers is not allowed to import streams" in result.stdout
