"""Exponential backoff with full jitter, as a pure generator of delays in seconds."""

from __future__ import annotations

import random
from collections.abc import Iterator


def exponential_backoff(
    base_s: float = 0.2, cap_s: float = 30.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Delays ``uniform(0, min(cap, base * 2**n))`` for n = 0, 1, 2, ..."""
    draw = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    attempt = 0
    while True:
        window = min(cap_s, base_s * 2.0**attempt)
        yield draw.uniform(0, window)
        if window < cap_s:
            attempt += 1
