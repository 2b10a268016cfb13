"""Read the audit topic back, keeping the records a predicate wants (``relais catalogue``'s
senders); one document's story is the document index's (``relais trace``, ``explain``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from relais import kafka_clients
from relais.contracts import Codec, ContractError
from relais.kafka_clients import Target
from relais.topics import AUDIT


async def read_audits(
    bootstrap: Target,
    prefix: str,
    wanted: Callable[[dict[str, Any]], bool],
    *,
    quiet_s: float = 1.0,
    timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    """The ``wanted`` audit records, oldest first.

    Reads the whole audit topic from the start until it has been quiet for ``quiet_s``.
    """
    codec = Codec()
    consumer = kafka_clients.consumer(
        bootstrap,
        AUDIT.name(prefix),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    found: list[dict[str, Any]] = []
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        quiet_until = time.monotonic() + quiet_s
        while time.monotonic() < min(deadline, quiet_until):
            batches = await consumer.getmany(timeout_ms=200)
            for message in (m for batch in batches.values() for m in batch):
                quiet_until = time.monotonic() + quiet_s
                try:
                    _, record = codec.decode(message.value, expected="AuditEvent")
                except ContractError:
                    continue
                if wanted(record):
                    found.append(record)
    finally:
        await consumer.stop()
    return sorted(found, key=lambda r: r["at"])
