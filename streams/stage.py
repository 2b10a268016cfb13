"""What a stage is, and one step of it, with no Kafka in sight.

A :class:`Stage` names its input topic and record type and a pure ``handle``
function from a decoded record to the records it emits. :func:`run_step`
wraps ``handle`` with decoding, encoding and the error path: a record that
cannot be decoded, decrypted or processed becomes a dead letter (reason,
stage, sealed original bytes) and the step still returns normally, so the
shell moves on to the next record. Only bugs in Relais itself escape as
exceptions other than those listed below, and even they are dead-lettered by
:func:`run_step` rather than stopping the worker.

Errors a ``handle`` function raises: :class:`relais.deadletter.StageFailure` and its
subclasses (the record is wrong; dead-letter it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relais.contracts import Codec, Record
from relais.deadletter import Failure, Origin, dead_letter, failure_of
from relais.keyring import Keyring
from relais.patient_traits import open_traits
from relais.topics import DEADLETTER, TopicSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageContext:
    """What a core may use besides the record: the keys, the time, and the stage's state.

    ``state`` is the stage's table (a Faust table in the worker, a dict in tests),
    shared by the records of one partition; stateless stages leave it None.
    """

    keyring: Keyring
    now: datetime
    state: MutableMapping[str, str] | None = None


@dataclass(frozen=True)
class Output:
    """A record to emit: its topic, its record type and its key."""

    topic: TopicSpec
    record_type: str
    record: Record
    key: bytes | None


Handler = Callable[[Record, StageContext], list[Output]]


@dataclass(frozen=True)
class Stage:
    name: str
    source: TopicSpec
    record_type: str
    handle: Handler
    stateful: bool = False  # the shell gives it a table as ``StageContext.state``


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


def run_step(
    stage: Stage,
    codec: Codec,
    ctx: StageContext,
    prefix: str,
    *,
    key: bytes | None,
    value: bytes | None,
    partition: int | None,
    offset: int | None,
) -> StepResult:
    """Decode, handle and encode one record; turn any failure into a dead letter."""
    topic = stage.source.name(prefix)
    event_id: str | None = None
    try:
        _, record = codec.decode(
            value, expected=stage.record_type, topic=topic, partition=partition, offset=offset
        )
        event_id = str(record.get("event_id") or "") or None
        outputs = [
            Encoded(o.topic.name(prefix), o.key, codec.encode(o.record_type, o.record))
            for o in stage.handle(record, ctx)
        ]
        return StepResult(outputs=outputs, event_id=event_id)
    except Exception as exc:  # every failure of one record becomes a dead letter
        failure = failure_of(exc)
        if failure.reason_code == "internal-error":
            log.exception("stage %s: internal error on event %s", stage.name, event_id)
        origin = Origin(topic=topic, partition=partition, offset=offset, event_id=event_id)
        letter = dead_letter(
            ctx.keyring,
            stage=stage.name,
            failure=failure,
            origin=origin,
            original=value or b"",
            now=ctx.now,
        )
        encoded = Encoded(DEADLETTER.name(prefix), key, codec.encode("DeadLetter", letter))
        return StepResult(outputs=[encoded], failure=failure, event_id=event_id)


def read_traits(record: Record, ctx: StageContext) -> dict[str, Any]:
    """The patient's INS and traits (:func:`relais.patient_traits.open_traits`)."""
    return open_traits(record, ctx.keyring)
