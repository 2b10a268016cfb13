"""The identity stage's state and commands on the bus, for ``relais identity``.

The patients' state is read from the changelog of the identity stage's
``identity-patients`` table (``<prefix>-<stages>-identity-patients-changelog``: Faust
names it after the worker's app, ``<prefix>-identity`` or ``<prefix>-identity-transcode-
route``...): the last value of each key is the patient's state. Commands go to
``identity.commands`` keyed by the patient key, so the stage applies them in the
partition that owns the patient; audit events (a reveal) go to ``audit``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from relais import kafka_clients
from relais.audit import audit_event
from relais.contracts import Codec, Record
from relais.kafka_clients import Target
from relais.topic_reader import partitions_of, read_to_end
from relais.topics import AUDIT, IDENTITY_ALERTS, IDENTITY_COMMANDS
from streams.identity.state import PatientState

CHANGELOG_SUFFIX = "-identity-patients-changelog"


def command_record(
    key: str,
    action: str,
    operator: str,
    *,
    event_ids: tuple[str, ...] = (),
    comment: str | None = None,
) -> Record:
    """An ``IdentityCommand`` from an operator."""
    return {
        "event_id": str(uuid.uuid4()),
        "at": datetime.now(UTC),
        "patient_key": key,
        "action": action,
        "operator": operator,
        "event_ids": list(event_ids),
        "comment": comment,
    }


def reveal_audit(operator: str, keys: list[str], documents: int) -> Record:
    """The audit event of a reveal: who saw the traits of which (pseudonymised) patients."""
    event_id = str(uuid.uuid4())
    return audit_event(
        event_id=event_id,
        component="identity-cli",
        action="OTHER",
        outcome="identity-operation:revealed",
        now=datetime.now(UTC),
        operator=operator,
        detail=f"operator {operator} revealed the identity traits of {documents} held "
        f"document(s) of {len(keys)} patient(s): {', '.join(k[:16] for k in keys) or '-'}",
    )


@dataclass
class IdentityBus:
    """The identity stage's patients, alerts and commands on one broker and prefix."""

    bootstrap: Target
    prefix: str
    codec: Codec

    async def changelogs(self) -> list[tuple[str, int]]:
        """(topic, partition) of every identity-patients changelog under the prefix."""
        consumer = kafka_clients.consumer(self.bootstrap, group_id=None)
        try:
            await consumer.start()  # closed below even when the broker is down
            names = sorted(
                t
                for t in await consumer.topics()
                if t.startswith(f"{self.prefix}-") and t.endswith(CHANGELOG_SUFFIX)
            )
            return [(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
        finally:
            await consumer.stop()

    async def states(self) -> dict[str, PatientState]:
        """Each patient's latest state (a key last written empty is forgotten)."""
        latest: dict[str, bytes | None] = {}
        messages = await read_to_end(self.bootstrap, await self.changelogs())
        for m in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
            if m.key is not None:
                latest[_table_key(m.key)] = m.value
        return {k: PatientState.from_bytes(v) for k, v in latest.items() if v}

    async def alerts(self) -> list[Record]:
        messages = await read_to_end(
            self.bootstrap, await partitions_of(self.bootstrap, [IDENTITY_ALERTS], self.prefix)
        )
        found = []
        for m in messages:
            name, record = self.codec.decode(m.value, topic=m.topic, offset=m.offset)
            if name == "IdentityAlert":
                found.append(record)
        return found

    async def send(self, record_type: str, record: Record, *, key: str) -> None:
        """One record to its topic (a command or an audit event), acknowledged by all."""
        topic = IDENTITY_COMMANDS if record_type == "IdentityCommand" else AUDIT
        producer = kafka_clients.producer(self.bootstrap, acks="all")
        try:
            await producer.start()  # closed below even when the broker is down
            value = self.codec.encode(record_type, record)
            await producer.send_and_wait(topic.name(self.prefix), value, key=key.encode())
        finally:
            await producer.stop()

    async def wait_for(
        self,
        key: str,
        done: Callable[[PatientState], bool],
        *,
        timeout_s: float,
        progress: Callable[[float], None] | None = None,
    ) -> PatientState | None:
        """The patient's state once ``done`` holds for it; None after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while (waited := loop.time() - start) < timeout_s:
            state = (await self.states()).get(key, PatientState())
            if done(state):
                return state
            if progress is not None:
                progress(waited)
            await asyncio.sleep(0.5)
        return None


def _table_key(raw: bytes) -> str:
    """A table key as the stage wrote it: Faust serialises a ``str`` key as JSON."""
    text = raw.decode()
    return str(json.loads(text)) if text.startswith('"') else text
