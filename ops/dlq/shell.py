"""The bus side of ``relais dlq``: read dead letters and replays, send originals back, follow.

Thin: every decision is in :mod:`ops.dlq.letters` and :mod:`ops.dlq.replay`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from ops.dlq.letters import LetterView, describe
from ops.dlq.replay import Outcome, Planned, Replay, Sent, outcomes_of, replay_audit
from ops.dlq.replay import replays_of as parse_replays
from ops.dlq.replay import settled as all_settled
from relais import kafka_clients
from relais.contracts import Codec, ContractError, Record
from relais.deadletter import REPLAY_HEADER
from relais.envelope import Envelope, EnvelopeError, open_envelope
from relais.kafka_clients import Target
from relais.keyring import Keyring
from relais.topic_reader import Message, Offsets, end_offsets, follow, partitions_of, read_to_end
from relais.topics import ALL_TOPICS, AUDIT, DEADLETTER, DELIVERY_STATUS, IDENTITY_PENDING

#: where the stages say what became of a replayed record
OUTCOME_TOPICS = (DEADLETTER, DELIVERY_STATUS, IDENTITY_PENDING, AUDIT)


def decoded(codec: Codec, messages: Iterable[Message]) -> list[tuple[str, Record, Message]]:
    """The records among ``messages`` that decode (others are skipped, never fatal)."""
    found = []
    for m in messages:
        try:
            name, record = codec.decode(m.value, topic=m.topic, offset=m.offset)
        except ContractError:
            continue
        found.append((name, record, m))
    return found


def open_original(keyring: Keyring | None, letter: Record) -> tuple[bytes | None, str | None]:
    """The original bytes of a dead letter, or None and why not."""
    if keyring is None:
        return None, "no keyring given"
    try:
        envelope = Envelope.from_record(letter["original"])
        plain = open_envelope(
            keyring, envelope, event_id=letter["dead_letter_id"], purpose="original"
        )
    except EnvelopeError as exc:
        return None, str(exc)
    return plain, None


def letter_view(
    codec: Codec, keyring: Keyring | None, letter: Record, key: bytes | None
) -> LetterView:
    """The view of a decoded dead letter, its original opened when ``keyring`` can."""
    original, problem = open_original(keyring, letter)
    return describe(letter, key=key, original=original, problem=problem, codec=codec)


@dataclass
class DlqBus:
    """Dead letters on one broker under one topic prefix."""

    bootstrap: Target
    prefix: str
    keyring: Keyring | None
    codec: Codec

    async def letters(self) -> list[LetterView]:
        """Every dead letter on the topic now, with its original opened when possible."""
        messages = await read_to_end(
            self.bootstrap, await partitions_of(self.bootstrap, [DEADLETTER], self.prefix)
        )
        return [
            letter_view(self.codec, self.keyring, letter, m.key)
            for name, letter, m in decoded(self.codec, messages)
            if name == "DeadLetter"
        ]

    async def audits(self) -> list[Record]:
        messages = await read_to_end(
            self.bootstrap, await partitions_of(self.bootstrap, [AUDIT], self.prefix)
        )
        return [r for name, r, _ in decoded(self.codec, messages) if name == "AuditEvent"]

    async def replays(self) -> dict[str, list[Replay]]:
        """Earlier replays, by dead-letter id."""
        return parse_replays(await self.audits())

    def topics(self) -> list[str]:
        return [spec.name(self.prefix) for spec in ALL_TOPICS]

    async def outcome_offsets(self) -> Offsets:
        """Where the outcome topics end now: what comes after a replay is read from there."""
        return await end_offsets(
            self.bootstrap, await partitions_of(self.bootstrap, OUTCOME_TOPICS, self.prefix)
        )

    async def send_back(
        self,
        planned: Sequence[Planned],
        replays: dict[str, list[Replay]],
        *,
        by: str,
        sent_one: Callable[[Planned, Sent], None],
    ) -> list[Sent]:
        """Produce each planned original on its topic, then its ``REPLAYED`` audit (acks=all)."""
        producer = kafka_clients.producer(self.bootstrap, acks="all", max_request_size=16 << 20)
        sent: list[Sent] = []
        try:
            await producer.start()  # closed below even when the broker is down
            for p in planned:
                if p.skip is not None or p.topic is None:
                    continue
                one = await self._send_one(producer, p, p.topic, replays, by=by)
                sent.append(one)
                sent_one(p, one)
        finally:
            await producer.stop()
        return sent

    async def _send_one(
        self,
        producer: AIOKafkaProducer,
        p: Planned,
        topic: str,
        replays: dict[str, list[Replay]],
        *,
        by: str,
    ) -> Sent:
        """One original back on ``topic`` (marked as a replay), then its ``REPLAYED`` audit."""
        view = p.view
        metadata = await producer.send_and_wait(
            topic,
            value=view.original,
            key=view.key,
            partition=p.partition,
            headers=[(REPLAY_HEADER, view.dead_letter_id.encode())],
        )
        one = Sent(view.dead_letter_id, view.event_id, topic, metadata.partition, metadata.offset)
        nth = len(replays.get(view.dead_letter_id, [])) + 1
        audit = replay_audit(view, one, by=by, nth=nth, now=datetime.now(UTC))
        await producer.send_and_wait(
            AUDIT.name(self.prefix),
            value=self.codec.encode("AuditEvent", audit),
            key=view.key,
        )
        return one

    async def follow(
        self,
        sent: Sequence[Sent],
        starts: Offsets,
        *,
        timeout_s: float,
        progress: Callable[[float], None] | None = None,
    ) -> dict[str, list[Outcome]]:
        """What became of each sent record, read until all settled or ``timeout_s``."""

        def records(messages: list[Message]) -> list[tuple[str, Record]]:
            return [(name, r) for name, r, _ in decoded(self.codec, messages)]

        messages = await follow(
            self.bootstrap,
            starts,
            lambda found: all_settled(sent, records(found)),
            timeout_s=timeout_s,
            progress=progress,
        )
        later = records(messages)
        return {s.dead_letter_id: outcomes_of(s, later) for s in sent}
