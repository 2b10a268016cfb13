"""Create and list the catalogue's topics, idempotently."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from relais.topics import ALL_TOPICS, TopicSpec


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    created: bool
    purpose: str


async def ensure_topics(
    bootstrap: str,
    prefix: str,
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    replication_factor: int = 1,
) -> list[TopicState]:
    """Create every missing topic; leave existing ones as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = list(specs)
        missing = [s for s in wanted if s.name(prefix) not in existing]
        if missing:
            new = [
                NewTopic(s.name(prefix), s.partitions, replication_factor, topic_configs=s.configs)
                for s in missing
            ]
            # Another process may race us: the outcome is the same.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        partitions = await _partition_counts(admin, [s.name(prefix) for s in wanted])
    finally:
        await admin.close()
    return [
        TopicState(s.name(prefix), partitions.get(s.name(prefix), 0), s in missing, s.purpose)
        for s in wanted
    ]


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    described = await admin.describe_topics(names)
    return {str(t["topic"]): len(t["partitions"]) for t in described}


async def list_topics(bootstrap: str, prefix: str) -> dict[str, int]:
    """Topics on the broker under ``prefix``, with their partition counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix + "."))
        return await _partition_counts(admin, names) if names else {}
    finally:
        await admin.close()
