"""The identity stage's Faust shell: one agent over documents and identity events.

Documents (``documents.submitted``) and identity events (``identity.events``)
are both keyed by the patient's pseudonym, so partition *p* of both topics,
and of the two tables (patients, seen), belong to the same worker: a patient's
documents, its ADT events and its state meet in one place and in order.

A timer re-checks patients whose documents wait for INSi: when the circuit
breaker lets calls through again, it publishes a RETRY identity event for each
such patient, and the agent (the only writer of the tables) releases them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import faust
from mode import CrashingSupervisor

from relais.audit_records import identity_decided
from relais.contracts import Codec, Record
from relais.deadletter import Origin, dead_letter, derived_id, failure_of
from relais.keyring import Keyring
from relais.metrics import StageMetrics
from relais.topics import AUDIT, DEADLETTER, IDENTITY_EVENTS, SUBMITTED
from streams.identity.dedupe import dedupe_keys, duplicate_audit, first_owner
from streams.identity.metrics import IdentityMetrics
from streams.identity.processor import IdentityProcessor, InsiVerifier, Observed
from streams.identity.rules import InsChecker
from streams.identity.state import PatientState
from streams.stage import Output, StageContext

log = logging.getLogger(__name__)
RETRY_EVERY_S = 2.0


class _TableView:
    """The Faust table seen as the mapping the processor expects."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        value = self.table.get(key)
        return default if value is None else bytes(value)

    def __getitem__(self, key: str) -> bytes:
        return bytes(self.table[key])

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key] = value


def decision_audits(outputs: list[Output], now: datetime) -> list[Output]:
    """The IDENTITY_DECIDED audit event of each document the step qualified, held or blocked."""
    return [
        Output(AUDIT, "AuditEvent", audit, o.key)
        for o in outputs
        if (audit := identity_decided(o.record_type, o.record, now)) is not None
    ]


class IdentityShell:
    """Decode, dispatch to the processor, dead-letter failures, send, count."""

    def __init__(
        self,
        app: faust.App,
        *,
        prefix: str,
        keyring: Keyring,
        verify: InsiVerifier,
        consistency: InsChecker,
    ) -> None:
        self.app, self.prefix, self.keyring = app, prefix, keyring
        self.codec = Codec()
        self.stage = StageMetrics("identity")
        self.metrics = IdentityMetrics()
        self.patients = app.Table(
            "identity-patients", default=None, partitions=4, key_type=str, value_type=bytes
        )
        self.seen = app.Table(
            "identity-seen", default=None, partitions=4, key_type=str, value_type=str
        )
        self.processor = IdentityProcessor(
            _TableView(self.patients),  # type: ignore[arg-type]
            keyring=keyring,
            verify=verify,
            consistency=consistency,
        )
        self._topics: dict[str, Any] = {}

    def topic(self, name: str) -> Any:
        return self._topics.setdefault(name, self.app.topic(name, key_type=bytes, value_type=bytes))

    async def agent(self, stream: Any) -> None:
        async for event in stream.events():
            message, now = event.message, datetime.now(UTC)
            self.stage.received()
            with self.stage.timed():
                try:
                    outputs = await self.handle(message, now)
                except Exception as exc:  # one bad record never stops the stage
                    self.processor.discard()
                    outputs = [self._dead_letter(message, exc, now)]
                sent = [await self.topic(n).send(key=k, value=v) for n, k, v in outputs]
                await asyncio.gather(*sent)  # acknowledged (acks=all) before the state moves
                self.processor.commit()
                for name, _, _ in outputs:
                    self.stage.emitted(name)
            self.metrics.observe(self.processor.observed)
            self.processor.observed = Observed()

    async def handle(self, message: Any, now: datetime) -> list[tuple[str, bytes | None, bytes]]:
        name, record = self.codec.decode(
            message.value, topic=message.topic, partition=message.partition, offset=message.offset
        )
        if name == "IdentityUpdate":
            outputs = await self.processor.on_identity(record, now)
        elif name == "DocumentSubmitted":
            outputs = await self._document(record, message.value, now)
        else:
            raise ValueError(f"the identity stage does not take {name} records")
        return [
            (o.topic.name(self.prefix), o.key, self.codec.encode(o.record_type, o.record))
            for o in [*outputs, *decision_audits(outputs, now)]
        ]

    async def _document(self, record: Record, raw: bytes, now: datetime) -> list[Output]:
        owner = first_owner(self.seen, record)
        if owner is not None:
            self.stage.noted("duplicate")
            ctx = StageContext(keyring=self.keyring, now=now)
            return [duplicate_audit(record, owner, ctx)]
        outputs = await self.processor.on_document(record, raw, now)
        for key in dedupe_keys(record):
            self.seen[key] = record["event_id"]
        return outputs

    def _dead_letter(
        self, message: Any, exc: Exception, now: datetime
    ) -> tuple[str, bytes | None, bytes]:
        failure = failure_of(exc)
        self.stage.failed(failure.reason_code, dead_lettered=True)
        origin = Origin(message.topic, message.partition, message.offset)
        letter = dead_letter(
            self.keyring,
            stage="identity",
            failure=failure,
            origin=origin,
            original=message.value or b"",
            now=now,
        )
        return DEADLETTER.name(self.prefix), message.key, self.codec.encode("DeadLetter", letter)

    async def retry_waiting(self, insi_ready: Callable[[], bool]) -> None:
        """Publish RETRY for patients waiting on INSi, once INSi may be called again."""
        held_total, waiting = 0, []
        for key, value in list(self.patients.items()):
            state = PatientState.from_bytes(value)
            held_total += len(state.held)
            if state.waiting_for_insi:
                waiting.append(key)
        self.metrics.held(held_total)
        if not waiting or not insi_ready():
            return
        stamp = int(time.time() // RETRY_EVERY_S)
        for key in waiting:
            value = self.codec.encode("IdentityUpdate", _retry_record(key, stamp))
            await self.topic(IDENTITY_EVENTS.name(self.prefix)).send(key=key.encode(), value=value)


def register_identity(
    app: faust.App,
    *,
    prefix: str,
    keyring: Keyring,
    verify: InsiVerifier,
    consistency: InsChecker,
    insi_ready: Callable[[], bool],
) -> IdentityShell:
    shell = IdentityShell(
        app, prefix=prefix, keyring=keyring, verify=verify, consistency=consistency
    )
    source = app.topic(
        SUBMITTED.name(prefix), IDENTITY_EVENTS.name(prefix), key_type=bytes, value_type=bytes
    )
    # crash-only, like the other stages (see streams.worker)
    app.agent(source, name="relais.identity", supervisor_strategy=CrashingSupervisor)(shell.agent)

    async def retry() -> None:
        await shell.retry_waiting(insi_ready)

    app.timer(RETRY_EVERY_S, name="relais.identity.insi-retry")(retry)
    return shell


def _retry_record(key: str, stamp: int) -> Record:
    now = datetime.now(UTC)
    empty = {"key_id": "none", "nonce": b"\x00" * 12, "ciphertext": b"\x00" * 16}
    return {
        "event_id": derived_id("insi-retry", key, stamp),
        "received_at": now,
        "sector": "OTHER",
        "source": {
            "facility": "relais",
            "application": "identity",
            "message_control_id": "retry",
            "message_type": "RETRY",
            "received_at": now,
            "author": None,
        },
        "trigger": "RETRY",
        "kind": "RETRY",
        "patient": {"patient_key": key, "identity": empty, "ins_oid": None, "reliability": None},
        "merged": None,
        "target_key": key,
    }
