"""The identity stage's Faust shell: one agent over documents and identity events.

Documents (``documents.submitted``) and identity events (``identity.events``)
are both keyed by the patient's pseudonym, so partition *p* of both topics,
and of the two tables (patients, seen), belong to the same worker: a patient's
documents, its ADT events and its state meet in one place and in order.

The agent is the loop every stage runs (:mod:`streams.stage_loop`: decode,
dead letters, sends and their acks, stage metrics); the shell is its handler
and its hooks: the processor's staged patient states are dropped when a record
is dead-lettered and written once its outputs are acknowledged, and the
decisions the processor observed become the identity metrics.

A timer re-checks patients whose documents wait for INSi: when the circuit
breaker lets calls through again, it publishes a RETRY identity event for each
such patient, and the agent (the only writer of the tables) releases them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import faust

from relais.audit_records import identity_decided
from relais.contracts import Codec, Record
from relais.deadletter import derived_id
from relais.keyring import Keyring
from relais.metrics import StageMetrics
from relais.topics import AUDIT, IDENTITY_COMMANDS, IDENTITY_EVENTS, SUBMITTED
from streams.identity.dedupe import dedupe_keys, duplicate_audit, first_owner
from streams.identity.metrics import IdentityMetrics
from streams.identity.operations import (
    SYSTEM_OPERATOR,
    Operations,
    expiry_due,
    on_command,
)
from streams.identity.processor import IdentityProcessor, InsiVerifier, Observed
from streams.identity.rules import InsChecker
from streams.identity.state import PatientState
from streams.stage import Output, Stage, StageContext
from streams.stage_loop import StageHooks, register_stage

log = logging.getLogger(__name__)
RETRY_EVERY_S = 2.0
HOLD_EXPIRY_S = 7 * 24 * 3600.0  # RELAIS_IDENTITY_HOLD_EXPIRY_S


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


class IdentityShell(StageHooks):
    """The identity stage's handler and hooks, its tables, its processor."""

    #: the processor's patient state moves only once the outputs are acknowledged
    waits_for_acks = True

    def __init__(
        self,
        app: faust.App,
        *,
        prefix: str,
        keyring: Keyring,
        verify: InsiVerifier,
        consistency: InsChecker,
        hold_expiry_s: float = HOLD_EXPIRY_S,
    ) -> None:
        self.app, self.prefix, self.keyring = app, prefix, keyring
        self.operations = Operations(prefix, keyring, hold_expiry_s)
        self.codec = Codec()
        self.stage_metrics = StageMetrics("identity")
        self.metrics = IdentityMetrics()
        partitions = app.conf.topic_partitions  # RELAIS_PARTITIONS: as the source topics
        self.patients = app.Table(
            "identity-patients", default=None, partitions=partitions, key_type=str, value_type=bytes
        )
        self.seen = app.Table(
            "identity-seen", default=None, partitions=partitions, key_type=str, value_type=str
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

    def as_stage(self) -> Stage:
        """The stage the loop runs: documents, identity events and operators' commands."""
        return Stage(
            "identity",
            (SUBMITTED, IDENTITY_EVENTS, IDENTITY_COMMANDS),
            ("DocumentSubmitted", "IdentityUpdate", "IdentityCommand"),
            self.handle,
        )

    async def handle(self, record: Record, ctx: StageContext) -> list[Output]:
        """What one document or identity event gives, with the decisions' audit events."""
        if ctx.record_type == "IdentityUpdate":
            outputs = await self.processor.on_identity(record, ctx.now)
        elif ctx.record_type == "IdentityCommand":
            outputs = await self._command(record, ctx)
        else:
            outputs = await self._document(record, ctx)
        return [*outputs, *decision_audits(outputs, ctx.now)]

    async def _document(self, record: Record, ctx: StageContext) -> list[Output]:
        owner = first_owner(self.seen, record)
        if owner is not None:
            self.stage_metrics.noted("duplicate")
            return [duplicate_audit(record, owner, ctx)]
        outputs = await self.processor.on_document(record, ctx.raw, ctx.now)
        for key in dedupe_keys(record):
            self.seen[key] = record["event_id"]
        return outputs

    async def _command(self, record: Record, ctx: StageContext) -> list[Output]:
        """An operator's command (or an expiry); a dead-lettered document is forgotten by the
        duplicate check, so that its sender may send it again once corrected."""
        held = {h.event_id: h for h in self.processor.state(record["patient_key"]).held}
        outputs = await on_command(self.processor, record, ctx.now, self.operations)
        for out in outputs:
            if out.record_type == "DeadLetter" and out.record["event_id"] in held:
                value = held[out.record["event_id"]].value
                _, document = self.codec.decode(value, expected="DocumentSubmitted")
                for key in dedupe_keys(document):
                    if self.seen.get(key) == document["event_id"]:
                        del self.seen[key]
        return outputs

    # -- hooks of the stage loop -------------------------------------------------------------
    def discard(self) -> None:
        self.processor.discard()

    def commit(self) -> None:
        self.processor.commit()

    def finished(self) -> None:
        self.metrics.observe(self.processor.observed)
        self.processor.observed = Observed()

    async def retry_waiting(self, insi_ready: Callable[[], bool]) -> None:
        """Publish RETRY for patients waiting on INSi, once INSi may be called again, and
        EXPIRE for patients holding documents older than the hold expiry."""
        held_total, waiting, expiring = 0, [], []
        now_ms = int(time.time() * 1000)
        for key, value in list(self.patients.items()):
            state = PatientState.from_bytes(value)
            held_total += len(state.held)
            if state.waiting_for_insi:
                waiting.append(key)
            if expiry_due(state, now_ms, self.operations.hold_expiry_s):
                expiring.append(key)
        self.metrics.held(held_total)
        await self._expire(expiring)
        if not waiting or not insi_ready():
            return
        stamp = int(time.time() // RETRY_EVERY_S)
        for key in waiting:
            value = self.codec.encode("IdentityUpdate", _retry_record(key, stamp))
            await self.topic(IDENTITY_EVENTS.name(self.prefix)).send(key=key.encode(), value=value)

    async def _expire(self, keys: list[str]) -> None:
        """An EXPIRE command per patient (the agent, the tables' only writer, applies it)."""
        stamp = int(time.time() // RETRY_EVERY_S)
        for key in keys:
            value = self.codec.encode("IdentityCommand", _expire_record(key, stamp))
            await self.topic(IDENTITY_COMMANDS.name(self.prefix)).send(
                key=key.encode(), value=value
            )


def register_identity(
    app: faust.App,
    *,
    prefix: str,
    keyring: Keyring,
    verify: InsiVerifier,
    consistency: InsChecker,
    insi_ready: Callable[[], bool],
    hold_expiry_s: float = HOLD_EXPIRY_S,
) -> IdentityShell:
    shell = IdentityShell(
        app,
        prefix=prefix,
        keyring=keyring,
        verify=verify,
        consistency=consistency,
        hold_expiry_s=hold_expiry_s,
    )
    register_stage(
        app,
        shell.as_stage(),
        keyring=keyring,
        prefix=prefix,
        hooks=shell,
        metrics=shell.stage_metrics,
    )

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
        "patient": {
            "patient_key": key,
            "identity": empty,
            "ins_oid": None,
            "reliability": None,
            "dmp_consent": None,
        },
        "merged": None,
        "target_key": key,
    }


def _expire_record(key: str, stamp: int) -> Record:
    return {
        "event_id": derived_id("hold-expiry", key, stamp),
        "at": datetime.now(UTC),
        "patient_key": key,
        "action": "EXPIRE",
        "operator": SYSTEM_OPERATOR,
        "event_ids": [],
        "comment": "hold expiry (RELAIS_IDENTITY_HOLD_EXPIRY_S)",
    }
