"""The one stage loop: step, dead letter, sends and their acks, hooks, with a fake Faust app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from ops.demo.samples import DOMINIQUE, LAB, sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec, Record
from relais.keyring import Keyring
from relais.metrics import REGISTRY
from relais.topics import (
    AUDIT,
    DEADLETTER,
    IDENTITY_COMMANDS,
    IDENTITY_EVENTS,
    QUALIFIED,
    SUBMITTED,
)
from streams.identity.rules import InsiOutcome
from streams.identity.shell import register_identity
from streams.stage import Output, Stage, StageContext
from streams.stage_loop import StageHooks, register_stage

PREFIX = "t"
KEYRING = Keyring.generate("k-loop")
CODEC = Codec()
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)


class FakeTopic:
    """A topic whose sends are acknowledged a moment later, like the broker's."""

    def __init__(self, app: FakeApp, names: tuple[str, ...]) -> None:
        self.app, self.names = app, names

    async def send(self, *, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(ack.set_result, None)
        self.app.sent.append((self.names[0], key, value, ack))
        return ack


class FakeApp:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, asyncio.Future[None]]] = []
        self.agents: dict[str, tuple[FakeTopic, Callable[[Any], Any]]] = {}
        self.tables: dict[str, dict[str, Any]] = {}
        self.table_partitions: dict[str, int] = {}
        self.conf = SimpleNamespace(topic_partitions=7)  # RELAIS_PARTITIONS, via streams.worker

    def topic(self, *names: str, key_type: type, value_type: type) -> FakeTopic:
        return FakeTopic(self, names)

    def Table(self, name: str, **options: Any) -> dict[str, Any]:
        self.table_partitions[name] = options["partitions"]
        return self.tables.setdefault(name, {})

    def agent(self, source: FakeTopic, *, name: str, supervisor_strategy: type) -> Any:
        def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self.agents[name] = (source, fn)
            return fn

        return register

    def timer(self, interval: float, *, name: str) -> Any:
        return lambda fn: fn

    async def run(self, agent: str, *messages: SimpleNamespace) -> None:
        class Stream:
            async def events(self) -> AsyncIterator[SimpleNamespace]:
                for message in messages:
                    yield SimpleNamespace(message=message)

        _, fn = self.agents[agent]
        await fn(Stream())

    def decoded(self) -> list[tuple[str, str, Record]]:
        return [(topic, *CODEC.decode(value)) for topic, _, value, _ in self.sent]


def message(topic: str, value: bytes, offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic=topic, key=b"pk", value=value, partition=1, offset=offset)


def submitted() -> tuple[Record, bytes]:
    [record] = submissions(
        parse_message(sample(LAB, DOMINIQUE, 1)), sector="LAB", keyring=KEYRING, now=NOW
    )
    return record, CODEC.encode("DocumentSubmitted", record)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _audit_of(record: Record, ctx: StageContext) -> list[Output]:
    audit = {
        "audit_id": "a",
        "event_id": record["event_id"],
        "at": ctx.now,
        "component": "test",
        "action": "OTHER",
        "outcome": str(ctx.record_type),
        "document_unique_id": None,
        "detail": None,
        "facility": None,
        "application": None,
        "message_control_id": None,
        "type_code": None,
        "operator": None,
    }
    return [Output(AUDIT, "AuditEvent", audit, None)]


async def test_a_stage_sends_its_outputs_and_dead_letters_what_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FakeApp()
    stage = Stage("loop-sync", SUBMITTED, "DocumentSubmitted", _audit_of)
    register_stage(app, stage, keyring=KEYRING, prefix=PREFIX)  # type: ignore[arg-type]
    source, _ = app.agents["relais.loop-sync"]
    assert source.names == (SUBMITTED.name(PREFIX),)
    _, value = submitted()
    with caplog.at_level(logging.WARNING, logger="streams.stage_loop"):
        await app.run(
            "relais.loop-sync",
            message(SUBMITTED.name(PREFIX), b"garbage", 7),
            message(SUBMITTED.name(PREFIX), value, 8),
        )
    [(dl_topic, dl_type, letter), (out_topic, out_type, audit)] = app.decoded()
    assert (dl_topic, dl_type) == (DEADLETTER.name(PREFIX), "DeadLetter")
    assert letter["stage"] == "loop-sync"
    assert letter["reason_code"] == "undecodable-record"
    assert (letter["source_topic"], letter["source_offset"]) == (SUBMITTED.name(PREFIX), 7)
    assert (out_topic, out_type) == (AUDIT.name(PREFIX), "AuditEvent")
    assert audit["outcome"] == "DocumentSubmitted"
    assert "stage loop-sync dead-lettered event None at 1/7: undecodable-record" in caplog.text
    assert metric("relais_stage_records_in_total", stage="loop-sync") == 2
    assert metric("relais_deadletters_total", stage="loop-sync", reason="undecodable-record") == 1
    out = {"stage": "loop-sync", "topic": AUDIT.name(PREFIX)}
    assert metric("relais_stage_records_out_total", **out) == 1


async def test_a_stage_without_state_leaves_the_acks_to_fausts_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Transcode and route do not wait for each record's acks (Faust's commit does)."""
    app = FakeApp()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def unacknowledged(
        topic: FakeTopic, *, key: bytes | None, value: bytes
    ) -> asyncio.Future[None]:
        app.sent.append((topic.names[0], key, value, never))
        return never

    monkeypatch.setattr(FakeTopic, "send", unacknowledged)
    stage = Stage("loop-noack", SUBMITTED, "DocumentSubmitted", _audit_of)
    register_stage(app, stage, keyring=KEYRING, prefix=PREFIX)  # type: ignore[arg-type]
    _, value = submitted()
    run = app.run("relais.loop-noack", message(SUBMITTED.name(PREFIX), value, 1))
    await asyncio.wait_for(run, timeout=5)
    assert len(app.sent) == 1
    assert not never.done()


class Hooks(StageHooks):
    waits_for_acks = True

    def __init__(self, app: FakeApp) -> None:
        self.app, self.calls = app, list[str]()

    def discard(self) -> None:
        self.calls.append("discard")

    def commit(self) -> None:
        assert all(ack.done() for *_, ack in self.app.sent), "committed before the acks"
        self.calls.append(f"commit after {len(self.app.sent)} sent")

    def finished(self) -> None:
        self.calls.append("finished")


async def test_an_async_handler_of_two_record_types_with_hooks() -> None:
    async def handle(record: Record, ctx: StageContext) -> list[Output]:
        await asyncio.sleep(0)
        if ctx.record_type == "AuditEvent":
            raise ValueError("a bug")
        assert ctx.raw == value
        return _audit_of(record, ctx)

    app = FakeApp()
    stage = Stage("loop-async", (SUBMITTED, AUDIT), ("DocumentSubmitted", "AuditEvent"), handle)
    hooks = Hooks(app)
    register_stage(app, stage, keyring=KEYRING, prefix=PREFIX, hooks=hooks)  # type: ignore[arg-type]
    source, _ = app.agents["relais.loop-async"]
    assert source.names == (SUBMITTED.name(PREFIX), AUDIT.name(PREFIX))
    record, value = submitted()
    [audit] = _audit_of(record, StageContext(keyring=KEYRING, now=NOW))
    audit_value = CODEC.encode("AuditEvent", audit.record)
    qualified = CODEC.encode("IdentityQualified", _qualified(record))
    await app.run(
        "relais.loop-async",
        message(SUBMITTED.name(PREFIX), value, 1),
        message(AUDIT.name(PREFIX), audit_value, 2),
        message(SUBMITTED.name(PREFIX), qualified, 3),
    )
    assert hooks.calls == [
        "commit after 1 sent",
        "finished",
        "discard",
        "commit after 2 sent",
        "finished",
        "discard",
        "commit after 3 sent",
        "finished",
    ]
    _, (_, _, bug), (_, _, wrong_type) = app.decoded()
    assert (bug["reason_code"], bug["source_topic"]) == ("internal-error", AUDIT.name(PREFIX))
    assert bug["event_id"] == record["event_id"]
    assert wrong_type["reason_code"] == "undecodable-record"
    assert "expected a DocumentSubmitted or AuditEvent record" in wrong_type["reason"]


def _qualified(record: Record) -> Record:
    fields = ("event_id", "submitted_at", "sector", "source", "patient", "document", "hints")
    return {f: record[f] for f in fields} | {
        "qualified_at": NOW,
        "identity_status": "QUAL",
        "identity_attributes": [],
    }


async def test_the_identity_stage_runs_on_the_loop_with_its_tables_and_hooks() -> None:
    async def verify(traits: Mapping[str, Any]) -> InsiOutcome:
        return InsiOutcome("00")

    app = FakeApp()
    shell = register_identity(
        app,  # type: ignore[arg-type]
        prefix=PREFIX,
        keyring=KEYRING,
        verify=verify,
        consistency=lambda _: [],
        insi_ready=lambda: True,
    )
    assert set(app.tables) == {"identity-patients", "identity-seen"}
    # the tables (their changelogs) have as many partitions as the topics they follow
    assert app.table_partitions == {"identity-patients": 7, "identity-seen": 7}
    source, _ = app.agents["relais.identity"]
    assert source.names == (
        SUBMITTED.name(PREFIX),
        IDENTITY_EVENTS.name(PREFIX),
        IDENTITY_COMMANDS.name(PREFIX),
    )
    record, value = submitted()
    resent = CODEC.encode("DocumentSubmitted", {**record, "event_id": "resent"})
    await app.run(
        "relais.identity",
        message(SUBMITTED.name(PREFIX), value, 1),
        message(SUBMITTED.name(PREFIX), resent, 2),  # the same message again: a duplicate
        message(IDENTITY_EVENTS.name(PREFIX), b"garbage", 3),
    )
    sent = [(topic, name) for topic, name, _ in app.decoded()]
    assert sent == [
        (QUALIFIED.name(PREFIX), "IdentityQualified"),
        (AUDIT.name(PREFIX), "AuditEvent"),  # IDENTITY_DECIDED
        (AUDIT.name(PREFIX), "AuditEvent"),  # the duplicate's
        (DEADLETTER.name(PREFIX), "DeadLetter"),
    ]
    decided, duplicate, letter = (r for _, _, r in app.decoded()[1:])
    assert decided["action"] == "IDENTITY_DECIDED"
    assert (duplicate["action"], duplicate["event_id"]) == ("DUPLICATE_IGNORED", "resent")
    assert (letter["stage"], letter["source_topic"]) == ("identity", IDENTITY_EVENTS.name(PREFIX))
    assert record["patient"]["patient_key"] in app.tables["identity-patients"]
    assert shell.processor.observed.verdicts == ()  # reported, then reset
    assert metric("relais_stage_events_total", stage="identity", event="duplicate") >= 1
