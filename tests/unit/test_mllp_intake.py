"""RELAIS_MLLP_* of issue 15 and the worker pool of ``relais mllp``."""

from __future__ import annotations

import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

from producers.mllp.service import gateway_config
from producers.mllp_intake import WorkerPool, worker_pool
from relais.settings import MllpSettings, Settings, SettingsError


def test_defaults() -> None:
    mllp = Settings.from_env({}).mllp
    assert mllp.workers == min(4, os.cpu_count() or 1)
    assert (mllp.idle_timeout_s, mllp.frame_timeout_s, mllp.max_connections_per_peer) == (
        60.0,
        60.0,
        20,
    )


def test_workers_zero_means_in_process_and_negative_is_refused() -> None:
    assert Settings.from_env({"RELAIS_MLLP_WORKERS": "0"}).mllp.workers == 0
    with pytest.raises(SettingsError, match="RELAIS_MLLP_WORKERS"):
        Settings.from_env({"RELAIS_MLLP_WORKERS": "-1"})
    with worker_pool(0) as executor:
        assert executor is None


def test_the_listener_gets_the_limits() -> None:
    config = gateway_config(MllpSettings(max_connections_per_peer=3, frame_timeout_s=7.5))
    assert (config.max_connections_per_peer, config.frame_timeout_s) == (3, 7.5)


def test_a_pool_whose_worker_died_is_replaced() -> None:
    """A killed worker breaks a ProcessPoolExecutor for good; WorkerPool starts a new one."""
    with worker_pool(1) as pool:
        assert isinstance(pool, WorkerPool)
        first = pool.submit(os.getpid).result(timeout=60)
        os.kill(first, signal.SIGKILL)
        pids: list[int] = []
        broken = 0
        while not pids:
            assert broken < 5
            try:
                pids.append(pool.submit(os.getpid).result(timeout=60))
            except BrokenProcessPool:
                broken += 1  # submitted before the pool saw its worker die: an AR, once
        assert pids[0] != first
