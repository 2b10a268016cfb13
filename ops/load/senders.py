"""The replay's senders: MLLP connections to ``relais mllp`` and the producer library.

The pacer puts each built document on its channel's queue at its planned
instant; each sender takes the next one, sends it and waits for the answer (an
MLLP ACK, or ``submit_*`` returning), like a real producer. What the bus cannot
take now (AR, a broken connection, a broker that is restarting) is sent again
after a pause, as a producer keeps and resends it; a bad message's AE is final.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiokafka.errors import KafkaError

from ops.load.documents import Built
from ops.load.profile import Channel, PlannedDocument
from producers.hl7.ack import read_msa
from producers.hl7.errors import Hl7Error
from producers.mllp.framing import MllpDecoder, frame
from producers.publisher import Publisher

ACK_TIMEOUT_S: Final = 60.0
MAX_PAUSE_S: Final = 5.0
LIBRARY_CALLS: Final = {
    "LAB": "submit_lab_result",
    "RADIOLOGY": "submit_imaging_report",
    "HOSPITAL": "submit_hospital_document",
}

Clock = Callable[[], float]
Item = tuple[PlannedDocument, Built]


@dataclass(frozen=True)
class Answer:
    """How the entry point answered one document."""

    seq: int
    answer: str  # AA / AE (MLLP), OK / ERROR (library)
    scheduled_s: float
    sent_s: float  # the last (answered) attempt
    answered_s: float
    attempts: int


class Unavailable(Exception):
    """The bus could not take the message now: send it again later."""


class MllpConnection:
    """One sender connection: frames out one at a time, each ACK awaited."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = MllpDecoder(1 << 20)

    async def send(self, raw: bytes, control_id: str) -> str:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self._decoder = MllpDecoder(1 << 20)
        assert self._reader is not None
        self._writer.write(frame(raw))
        await self._writer.drain()
        acks: list[bytes] = []
        while not acks:
            data = await asyncio.wait_for(self._reader.read(65536), ACK_TIMEOUT_S)
            if not data:
                raise ConnectionResetError("the gateway closed the connection")
            acks = self._decoder.feed(data)
        code, echoed = read_msa(acks[0]) or ("", "")
        if echoed != control_id or code == "AR":
            raise Unavailable(code or "no MSA")
        return code

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def mllp_sender(
    host: str, port: int, queue: asyncio.Queue[Item | None], answers: list[Answer], clock: Clock
) -> None:
    connection = MllpConnection(host, port)
    try:
        while (item := await queue.get()) is not None:
            doc, built = item
            assert built.hl7 is not None

            async def attempt(raw: bytes = built.hl7, cid: str = built.control_id) -> str:
                try:
                    return await connection.send(raw, cid)
                except (OSError, TimeoutError, Unavailable):
                    connection.close()
                    raise

            answers.append(await _until_answered(doc, attempt, clock))
    finally:
        connection.close()


async def library_sender(
    publisher: Publisher, queue: asyncio.Queue[Item | None], answers: list[Answer], clock: Clock
) -> None:
    while (item := await queue.get()) is not None:
        doc, built = item

        async def attempt(built: Built = built, sector: str = doc.sector) -> str:
            try:
                if built.file is not None:
                    await publisher.publish_document(built.file)
                else:
                    assert built.hl7 is not None
                    await getattr(publisher, LIBRARY_CALLS[sector])(built.hl7)
            except Hl7Error:
                return "ERROR"
            return "OK"

        answers.append(await _until_answered(doc, attempt, clock))


async def _until_answered(
    doc: PlannedDocument, attempt: Callable[[], Awaitable[str]], clock: Clock
) -> Answer:
    tries = 0
    while True:
        tries += 1
        sent = clock()
        try:
            code = await attempt()
        except (OSError, TimeoutError, Unavailable, KafkaError):
            await asyncio.sleep(min(MAX_PAUSE_S, 0.5 * tries))
            continue
        return Answer(doc.seq, code, doc.at_s, sent, clock(), tries)


async def pace(
    items: deque[Item],
    queues: dict[Channel, asyncio.Queue[Item | None]],
    senders: dict[Channel, int],
    clock: Clock,
) -> None:
    """Hand each document to its channel at its planned instant, then tell senders to stop."""
    while items:
        doc, built = items.popleft()  # the sender holds the only reference from now on
        delay = doc.at_s - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        queues[doc.channel].put_nowait((doc, built))
    for channel, count in senders.items():
        for _ in range(count):
            queues[channel].put_nowait(None)
