"""Checks made once before any test is collected."""

from __future__ import annotations

import pytest

from tests.shared_data import SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
    """Without ../shared/data the suite cannot run: say so in one line, not in a traceback
    from the first module that lists its samples at collection."""
    if not (SHARED_DATA / "MANIFEST.md").is_file():
        pytest.exit(
            f"the ANS reference data is missing: expected {SHARED_DATA} (MANIFEST.md inside). "
            "Put the project's `shared` folder beside this checkout (../shared), as CI does.",
            returncode=2,
        )
