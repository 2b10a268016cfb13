"""How far the document index is behind its topics: records that expired (before the
partition's log start) are never counted as still to read."""

from __future__ import annotations

import pytest

from ops.index.offsets import Extents, to_read


@pytest.mark.parametrize(
    ("position", "start", "end", "left"),
    [
        (None, 0, 0, 0),  # an empty partition the index never read
        (None, 0, 7, 7),  # never read: everything
        (3, 0, 7, 4),
        (7, 0, 7, 0),
        (None, 5, 5, 0),  # every record expired, never read: nothing left (no phantom lag)
        (2, 5, 5, 0),  # read, then the rest expired
        (2, 5, 9, 4),  # from the log start, not from the position
        (8, 5, 9, 1),
        (12, 0, 9, 0),  # a position past the end (a topic made again) is never negative
    ],
)
def test_records_to_read_count_from_the_position_or_the_log_start(
    position: int | None, start: int, end: int, left: int
) -> None:
    assert to_read(position, start, end) == left


def test_every_partition_is_measured_whether_or_not_the_index_holds_a_position() -> None:
    extents = Extents(
        starts={("a", 0): 0, ("a", 1): 40, ("b", 0): 0},
        ends={("a", 0): 10, ("a", 1): 40, ("b", 0): 3},
    )
    assert extents.behind({("a", 0): 4, ("gone", 0): 99}) == {("a", 0): 6, ("a", 1): 0, ("b", 0): 3}
    assert extents.behind({("a", 0): 10, ("a", 1): 12, ("b", 0): 3}) == dict.fromkeys(
        extents.ends, 0
    )
