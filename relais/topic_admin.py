"""Create and list the catalogue's topics, idempotently, and check their partition counts.

Every topic gets ``partitions`` (RELAIS_PARTITIONS, ``KafkaSettings.partitions``). Neither
tansu nor Relais changes the count of a topic that exists (tansu has no CreatePartitions,
and more partitions would move keys to others), and Faust tables break when their sources
and changelogs differ: a topic with another count stops the start with
:class:`PartitionCountError`, naming RELAIS_PARTITIONS, instead of running half right.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from relais import kafka_clients
from relais.kafka_clients import Target
from relais.topics import ALL_TOPICS, DEFAULT_PARTITIONS, TopicSpec

#: Faust names a table's changelog ``<app id>-<table>-changelog``; app ids are ``<prefix>-...``
CHANGELOG_SUFFIX = "-changelog"


class PartitionCountError(Exception):
    """Topics exist with another partition count than RELAIS_PARTITIONS asks for."""


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    created: bool
    purpose: str


async def ensure_topics(
    bootstrap: Target,
    prefix: str,
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    *,
    replication_factor: int = 1,
    partitions: int = DEFAULT_PARTITIONS,
    min_insync_replicas: int = 1,
) -> list[TopicState]:
    """Create every missing topic with ``partitions``, ``replication_factor`` replicas and
    ``min.insync.replicas``; leave existing ones as they are.

    Raises :class:`PartitionCountError` when one of them, or a Faust changelog under
    ``prefix``, has another count.
    """
    admin = kafka_clients.admin(bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = list(specs)
        missing = [s for s in wanted if s.name(prefix) not in existing]
        if missing:
            new = _new_topics(missing, prefix, partitions, replication_factor, min_insync_replicas)
            # Another process may race us: the outcome is the same.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        names = [s.name(prefix) for s in wanted]
        counts = await _partition_counts(admin, names + _changelogs(existing, prefix))
    finally:
        await admin.close()
    check_counts(counts, partitions)
    return [
        TopicState(s.name(prefix), counts.get(s.name(prefix), 0), s in missing, s.purpose)
        for s in wanted
    ]


def _new_topics(
    specs: list[TopicSpec], prefix: str, partitions: int, replicas: int, insync: int
) -> list[NewTopic]:
    """The topics to create: the catalogue's configs and ``min.insync.replicas``."""
    configs = {"min.insync.replicas": str(insync)}
    return [
        NewTopic(s.name(prefix), partitions, replicas, topic_configs={**s.configs, **configs})
        for s in specs
    ]


async def check_partitions(bootstrap: Target, prefix: str, partitions: int) -> None:
    """Refuse to start (:class:`PartitionCountError`) when a topic of the catalogue or a Faust
    changelog under ``prefix`` exists with another count than ``partitions``."""
    admin = kafka_clients.admin(bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [s.name(prefix) for s in ALL_TOPICS if s.name(prefix) in existing]
        names += _changelogs(existing, prefix)
        counts = await _partition_counts(admin, names) if names else {}
    finally:
        await admin.close()
    check_counts(counts, partitions)


def check_counts(counts: Mapping[str, int], partitions: int) -> None:
    """:class:`PartitionCountError` in one line when a topic has not ``partitions``."""
    wrong = sorted((name, n) for name, n in counts.items() if n and n != partitions)
    if not wrong:
        return
    shown = ", ".join(f"{name} ({n})" for name, n in wrong[:3])
    more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
    found = sorted({n for _, n in wrong})
    raise PartitionCountError(
        f"RELAIS_PARTITIONS={partitions} but topics exist with another partition count: "
        f"{shown}{more}; Faust tables and ledgers need one count: set "
        f"RELAIS_PARTITIONS={found[0]} or delete and recreate the topics"
    )


def _changelogs(existing: Iterable[str], prefix: str) -> list[str]:
    return sorted(
        t for t in existing if t.startswith(f"{prefix}-") and t.endswith(CHANGELOG_SUFFIX)
    )


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    described = await admin.describe_topics(names)
    return {str(t["topic"]): len(t["partitions"]) for t in described}


async def list_topics(bootstrap: Target, prefix: str) -> dict[str, int]:
    """Topics on the broker under ``prefix``, with their partition counts."""
    admin = kafka_clients.admin(bootstrap)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix + "."))
        return await _partition_counts(admin, names) if names else {}
    finally:
        await admin.close()
