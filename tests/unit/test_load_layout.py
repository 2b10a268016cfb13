"""`relais load --workers N`: which processes the replay's stack runs (pure)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ops.load.profile import Profile
from ops.load.runner import LoadConfig


def config(workers: int, *, combined: bool = False) -> LoadConfig:
    return LoadConfig(Profile(documents=10, rate=1.0), Path("out"), workers, combined)


def test_one_worker_is_one_process_of_each_and_a_plain_listener() -> None:
    assert config(1).layout(2575) == (
        ("worker", "identity"),
        ("worker", "transcode"),
        ("worker", "route"),
        ("sink", "dmp"),
        ("mllp", "--port", "2575"),
    )


def test_n_workers_run_n_of_every_stage_sink_and_gateway_on_one_port() -> None:
    layout = config(3).layout(2575)
    assert Counter(layout) == {
        ("worker", "identity"): 3,
        ("worker", "transcode"): 3,
        ("worker", "route"): 3,
        ("sink", "dmp"): 3,
        ("mllp", "--port", "2575", "--reuse-port"): 3,  # SO_REUSEPORT: the kernel spreads
    }
    assert Counter(config(2, combined=True).layout(1)) == {
        ("worker", "identity", "transcode", "route"): 2,
        ("sink", "dmp"): 2,
        ("mllp", "--port", "1", "--reuse-port"): 2,
    }
