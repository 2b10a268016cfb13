"""A stage worker logs at RELAIS_LOG_LEVEL and builds no record below it.

Faust's terminal spinner would set the root logger to DEBUG (so that it spins on every
record): every debug call of Faust and aiokafka, some with the bytes they send, would then
be formatted in every worker. The worker has no spinner.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

import faust
import pytest

from relais.settings import Settings
from streams.worker import faust_worker


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.parametrize("level", ["warn", "info"])
def test_nothing_below_the_level_is_even_built(level: str, root_logging: None) -> None:
    settings = Settings()
    settings = replace(settings, process=replace(settings.process, log_level=level))
    app = faust.App(f"logging-{level}", broker="kafka://127.0.0.1:1", web_enabled=False)
    worker = faust_worker(app, settings)
    worker._setup_logging()  # what execute_from_commandline does first
    assert not logging.getLogger("faust.topics").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("faust").isEnabledFor(logging.WARNING)
