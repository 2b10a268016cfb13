"""The one processing loop of every stage's Faust agent: step, send, wait for the acks, count.

:func:`register_stage` makes a stage (:class:`streams.stage.Stage`) an agent named
``relais.<stage>`` over its input topic(s). For each record the agent's loop:

1. counts it in (``StageMetrics.received``) and times it;
2. runs :func:`streams.stage.step`: decode (one of the stage's record types), the
   handler (awaited when it is asynchronous), encode; a failure of any of these is
   the record's dead letter, built there and nowhere else;
3. on a failure, calls the hooks' ``discard`` (drop what the handler staged);
4. sends every output, then calls the hooks' ``commit``. A stage whose hooks keep state
   outside its Faust table (``hooks.waits_for_acks``: identity) first waits for the
   broker's acknowledgements (acks=all), so that state moves only once its outputs are on
   the bus and a crash in between replays the record; the others leave the sends to
   Faust's producer, which has them acknowledged before it commits the input's offset;
5. counts the outputs by topic, and a failure by reason, logging
   "stage <name> dead-lettered event <id> at <partition>/<offset>: <reason code>"
   (never the record's content);
6. calls the hooks' ``finished`` (the identity stage reports its decisions there).

The identity stage adds its hooks (:class:`streams.identity.shell.IdentityShell`); the
others need none. An exception that escapes the loop is the bus failing under it (a send
that was not acknowledged): the agent crashes the worker (see :mod:`streams.worker`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import faust
from mode import CrashingSupervisor

from relais.contracts import Codec
from relais.document_store import DocumentStore
from relais.keyring import Keyring
from relais.metrics import StageMetrics
from streams.stage import Encoded, Stage, StageContext, StepResult, step

log = logging.getLogger(__name__)


class StageHooks:
    """What a stage adds around the loop; these defaults do nothing."""

    #: wait for the broker's acknowledgement of a record's outputs before ``commit``
    waits_for_acks = False

    def discard(self) -> None:
        """The record was dead-lettered: drop what handling it staged."""

    def commit(self) -> None:
        """The record's outputs are acknowledged: make what handling it staged durable."""

    def finished(self) -> None:
        """The record is done with, whatever came of it."""


class StageLoop:
    """One stage's agent: the loop above, over the records of the agent's stream."""

    def __init__(
        self,
        app: faust.App,
        stage: Stage,
        *,
        keyring: Keyring,
        prefix: str,
        metrics: StageMetrics,
        hooks: StageHooks,
        state: MutableMapping[str, str] | None = None,
        store: DocumentStore | None = None,
    ) -> None:
        self.app, self.stage, self.keyring, self.prefix = app, stage, keyring, prefix
        self.store = store
        self.metrics, self.hooks, self.state = metrics, hooks, state
        self.codec = Codec()
        self._topics: dict[str, Any] = {}

    def topic(self, name: str) -> Any:
        if name not in self._topics:
            self._topics[name] = self.app.topic(name, key_type=bytes, value_type=bytes)
        return self._topics[name]

    async def agent(self, stream: Any) -> None:
        async for event in stream.events():
            await self.process(event.message)

    async def process(self, message: Any) -> None:
        """One record, from its step to its acknowledged outputs."""
        self.metrics.received()
        with self.metrics.timed():
            ctx = StageContext(
                keyring=self.keyring, now=datetime.now(UTC), state=self.state, store=self.store
            )
            result = await step(
                self.stage,
                self.codec,
                ctx,
                self.prefix,
                key=message.key,
                value=message.value,
                partition=message.partition,
                offset=message.offset,
                topic=message.topic,
            )
            if result.failure is not None:
                self.hooks.discard()
            await self.send(result.outputs)
            self.hooks.commit()
        if result.failure is not None:
            self._dead_lettered(result, message)
        self.hooks.finished()

    async def send(self, outputs: list[Encoded]) -> None:
        """Send every output; with ``hooks.waits_for_acks``, wait until all are acknowledged."""
        acks = [await self.topic(o.topic).send(key=o.key, value=o.value) for o in outputs]
        if self.hooks.waits_for_acks:
            await asyncio.gather(*acks)  # acks=all: on the bus before the state moves
        for out in outputs:
            self.metrics.emitted(out.topic)

    def _dead_lettered(self, result: StepResult, message: Any) -> None:
        assert result.failure is not None
        self.metrics.failed(result.failure.reason_code, dead_lettered=True)
        log.warning(
            "stage %s dead-lettered event %s at %s/%s: %s",
            self.stage.name,
            result.event_id,
            message.partition,
            message.offset,
            result.failure.reason_code,
        )


def register_stage(
    app: faust.App,
    stage: Stage,
    *,
    keyring: Keyring,
    prefix: str,
    hooks: StageHooks | None = None,
    metrics: StageMetrics | None = None,
    store: DocumentStore | None = None,
) -> StageLoop:
    """The stage as the agent ``relais.<name>`` of ``app``, over its input topic(s).

    A stateful stage gets the table ``<name>-state`` as ``StageContext.state``.
    """
    state = _state_table(app, stage) if stage.stateful else None
    loop = StageLoop(
        app,
        stage,
        keyring=keyring,
        prefix=prefix,
        metrics=metrics or StageMetrics(stage.name),
        hooks=hooks or StageHooks(),
        state=state,
        store=store,
    )
    names = [source.name(prefix) for source in stage.sources]
    source = app.topic(*names, key_type=bytes, value_type=bytes)
    # crash-only: see streams.worker
    app.agent(source, name=f"relais.{stage.name}", supervisor_strategy=CrashingSupervisor)(
        loop.agent
    )
    return loop


def _state_table(app: faust.App, stage: Stage) -> Any:
    """The table ``<name>-state``, with as many partitions as its source topics.

    Written only while handling a record of the same partition: Faust logs each change to
    the changelog partition of that record, so a rebalance moves a patient's state with it.
    ``app.conf.topic_partitions`` is RELAIS_PARTITIONS (streams.worker).
    """
    partitions = app.conf.topic_partitions
    return app.Table(
        f"{stage.name}-state", default=None, partitions=partitions, key_type=str, value_type=str
    )
