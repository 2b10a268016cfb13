"""What a stage is, and one step of it, with no Kafka in sight.

A :class:`Stage` names its input topic(s) and record type(s) and a ``handle``
function from a decoded record to the records it emits (synchronous for
transcode and route; asynchronous for identity, which calls INSi). :func:`step`
wraps ``handle`` with decoding, encoding and the error path: a record that
cannot be decoded, decrypted or processed becomes a dead letter (reason,
stage, sealed original bytes) and the step still returns normally, so the
loop (:mod:`streams.stage_loop`) moves on to the next record. Only bugs in
Relais itself escape as exceptions other than those listed below, and even
they are dead-lettered by :func:`step` rather than stopping the worker.

Errors a ``handle`` function raises: :class:`relais.deadletter.StageFailure` and its
subclasses (the record is wrong; dead-letter it). A
:class:`relais.document_store.StoreUnavailableError` is not the record's fault: it escapes
:func:`step`, the worker crashes (crash-only) and the record is handled again after the
restart, never dead-lettered. So is the patient key store down or not there; a patient's
key the store answers it does not have is a dead letter, ``patient-key-missing``.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from relais.contracts import Codec, Record, UnexpectedRecordError
from relais.deadletter import Failure, Origin, dead_letter, failure_of, patient_of_key
from relais.document_store import DocumentStore, StoreUnavailableError
from relais.document_store.bodies import (
    BodyWriter,
    ContentSealer,
    inline_content,
    inline_sealer,
    read_content,
)
from relais.keyring import Keyring, warm_patient_key
from relais.patient_traits import open_traits
from relais.topics import DEADLETTER, TopicSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageContext:
    """What a core may use besides the record: the keys, the time, and the stage's state.

    ``state`` is the stage's table (a Faust table in the worker, a dict in tests),
    shared by the records of one partition; stateless stages leave it None.
    ``record_type`` and ``raw`` are the record's type and its bytes as they came off
    the bus, filled in by :func:`step` (a stage of several record types dispatches on
    the type; the identity stage holds the bytes of the documents it holds). ``store``
    is the document store: only a stage that reads or writes a body touches it.
    """

    keyring: Keyring
    now: datetime
    state: MutableMapping[str, str] | None = None
    record_type: str | None = None
    raw: bytes = b""
    store: DocumentStore | None = None  # document bodies (None: contents travel inline)
    body: bytes | None = None  # the document's bytes, fetched by step for a reads_body stage
    bodies: ContentSealer | None = None  # seals a body the core builds; step writes it

    def content(self, record: Record) -> bytes:
        """The record's document bytes: what :func:`step` fetched, or its inline envelope."""
        if self.body is not None:
            return self.body
        return inline_content(self.keyring, record["document"], event_id=record["event_id"])

    def seal_content(self, content: bytes, *, unique_id: str, event_id: str) -> Record:
        """``Document.content`` for bytes the core built (written by :func:`step`)."""
        sealer = self.bodies or inline_sealer(self.keyring)
        return sealer(content, unique_id, event_id)


@dataclass(frozen=True)
class Output:
    """A record to emit: its topic, its record type and its key."""

    topic: TopicSpec
    record_type: str
    record: Record
    key: bytes | None


#: A stage's core: synchronous (transcode, route) or asynchronous (identity awaits INSi).
Handler = Callable[[Record, StageContext], list[Output] | Awaitable[list[Output]]]


@dataclass(frozen=True)
class Stage:
    """A stage: its name, what it reads (one or several topics and record types), its core."""

    name: str
    source: TopicSpec | tuple[TopicSpec, ...]
    record_type: str | tuple[str, ...]
    handle: Handler
    stateful: bool = False  # the shell gives it a table as ``StageContext.state``
    reads_body: bool = False  # step fetches the document's bytes into ``StageContext.body``

    @property
    def sources(self) -> tuple[TopicSpec, ...]:
        return self.source if isinstance(self.source, tuple) else (self.source,)

    @property
    def record_types(self) -> tuple[str, ...]:
        return self.record_type if isinstance(self.record_type, tuple) else (self.record_type,)


@dataclass(frozen=True)
class Encoded:
    """An output ready for the producer."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class StepResult:
    outputs: list[Encoded] = field(default_factory=list)
    failure: Failure | None = None
    event_id: str | None = None


async def step(
    stage: Stage,
    codec: Codec,
    ctx: StageContext,
    prefix: str,
    *,
    key: bytes | None,
    value: bytes | None,
    partition: int | None,
    offset: int | None,
    topic: str | None = None,
) -> StepResult:
    """Decode, handle and encode one record; turn any failure into a dead letter.

    ``topic`` is the topic the record came from (default: the stage's first source).
    """
    topic = topic or stage.sources[0].name(prefix)
    event_id: str | None = None
    try:
        name, record = decode(stage, codec, value, topic=topic, partition=partition, offset=offset)
        event_id = str(record.get("event_id") or "") or None
        ctx = replace(ctx, keyring=ctx.keyring.for_patient(patient_of(record)))
        # the core only hits the cache; a stage never makes a patient's key (intake does)
        await warm_patient_key(ctx.keyring, ctx.keyring.patient, create=False)
        body = await _body(ctx, record) if stage.reads_body else None
        writer = BodyWriter(ctx.keyring, ctx.store)
        produced = stage.handle(
            record, replace(ctx, record_type=name, raw=value or b"", body=body, bodies=writer)
        )
        outputs = produced if isinstance(produced, list) else await produced
        await writer.flush()  # what the outputs refer to is durable before they are sent
        return StepResult(outputs=_encoded(codec, prefix, outputs), event_id=event_id)
    except StoreUnavailableError:
        raise  # not the record's fault: the worker crashes and handles it again after
    except Exception as exc:  # every failure of one record becomes a dead letter
        origin = Origin(topic=topic, partition=partition, offset=offset, event_id=event_id)
        return dead_lettered(
            stage, codec, ctx, prefix, exc=exc, origin=origin, key=key, value=value
        )


def _encoded(codec: Codec, prefix: str, outputs: list[Output]) -> list[Encoded]:
    return [
        Encoded(o.topic.name(prefix), o.key, codec.encode(o.record_type, o.record)) for o in outputs
    ]


async def _body(ctx: StageContext, record: Record) -> bytes | None:
    if record["document"]["action"] == "DELETE":  # a deletion names a document: no bytes
        return None
    return await read_content(
        ctx.store, ctx.keyring, record["document"], event_id=str(record["event_id"])
    )


def decode(
    stage: Stage,
    codec: Codec,
    value: bytes | None,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
) -> tuple[str, Record]:
    """The record and its type, which must be one of the stage's record types."""
    types = stage.record_types
    expected = types[0] if len(types) == 1 else None
    name, record = codec.decode(
        value, expected=expected, topic=topic, partition=partition, offset=offset
    )
    if name not in types:
        raise UnexpectedRecordError(
            f"expected a {' or '.join(types)} record, got a {name}",
            topic=topic,
            partition=partition,
            offset=offset,
        )
    return name, record


def dead_lettered(
    stage: Stage,
    codec: Codec,
    ctx: StageContext,
    prefix: str,
    *,
    exc: Exception,
    origin: Origin,
    key: bytes | None,
    value: bytes | None,
) -> StepResult:
    """The step's result for a record that failed: its dead letter, the only output."""
    failure = failure_of(exc)
    if failure.reason_code == "internal-error":
        # the frames, not the exception's text: it may quote a record's content (patient data)
        log.error(
            "stage %s: internal error on event %s: %s\n%s",
            stage.name,
            origin.event_id,
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
    letter = dead_letter(
        ctx.keyring,
        stage=stage.name,
        failure=failure,
        origin=origin,
        original=value or b"",
        now=ctx.now,
        patient_key=ctx.keyring.patient or patient_of_key(key),
    )
    encoded = Encoded(DEADLETTER.name(prefix), key, codec.encode("DeadLetter", letter))
    return StepResult(outputs=[encoded], failure=failure, event_id=origin.event_id)


def patient_of(record: Record) -> str | None:
    """The record's patient pseudonym (``patient.patient_key``, or ``patient_key`` at the
    top of an identity command), whose existing data key seals what the stage seals for it;
    None for a record of no patient."""
    patient = record.get("patient")
    if isinstance(patient, dict) and patient:
        return str(patient["patient_key"])
    top = record.get("patient_key")
    return str(top) if isinstance(top, str) and top else None


def read_traits(record: Record, ctx: StageContext) -> dict[str, Any]:
    """The patient's INS and traits (:func:`relais.patient_traits.open_traits`)."""
    return open_traits(record, ctx.keyring)
