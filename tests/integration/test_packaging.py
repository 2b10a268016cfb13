"""The built wheel carries everything a non-editable install needs (the Docker image)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from schemas import SCHEMA_DIR

REPO = Path(__file__).resolve().parents[2]


def test_wheel_has_schemas_and_every_package(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("relais-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("types", "records", "released"):
        for schema in (SCHEMA_DIR / folder).glob("*.avsc"):
            assert f"schemas/{folder}/{schema.name}" in names, f"{folder}/{schema.name} not shipped"
    assert "streams/route/release_policy.toml" in names, "the bundled release policy is not shipped"
    for package in (
        "relais",
        "domain",
        "producers",
        "streams",
        "consumers",
        "mss_bridge",
        "sandboxes",
        "ops",
    ):
        assert f"{package}/__init__.py" in names, f"package {package} not shipped"
