"""Where the public ANS reference data lives: ``../shared/data`` beside the checkout.

Tests read the samples there and never copy them into the project. CI puts
that folder beside the checkout; a missing folder fails the tests that need it.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A path under ../shared/data (the caller fails if it is missing)."""
    return SHARED_DATA.joinpath(*parts)
