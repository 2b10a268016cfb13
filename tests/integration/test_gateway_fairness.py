"""One sender cannot stall the others (issue 15, "One sender can stall all").

The gateway here is the production wiring: :class:`~producers.ingest.Ingest` over the
real broker, its checks in the worker pool of ``producers.mllp_intake``. A sender's
5 MB pathological message keeps one worker busy for a while; another sender's small
message must be answered meanwhile, i.e. before the gateway has even finished checking
the big one. With the checks on the event loop (RELAIS_MLLP_WORKERS=0, or main e78dc4f)
the small message is not read until the big one's check is over: the test fails.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from ops.localstack import LocalStack
from producers.ingest import Ingest
from producers.mllp.framing import MllpDecoder, frame
from producers.mllp.gateway import GatewayConfig, MllpGateway
from producers.mllp.metrics import PrometheusGatewayObserver, PrometheusIngestObserver
from producers.mllp_intake import WorkerPool, warm_up, worker_pool
from producers.publisher import Publisher
from relais.metrics import REGISTRY
from relais.topic_admin import ensure_topics
from tests.shared_data import shared

SMALL = shared("hl7v2", "ADT_A01_PAMFR_INS_admission.er7")
HEADER = b"MSH|^~\\&|SIL|LAB|RELAIS|RELAIS|20240301101530||ORU^R01^ORU_R01|BIG-1|P|2.5\r"


def pathological() -> bytes:
    """5 MB of distinct PID fields: the most expensive shape to split (about 2 s of CPU)."""
    fields = b"|".join(b"%x" % n for n in range(1_200_000))
    return HEADER + b"PID|" + fields[:5_000_000]


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with worker_pool(2) as executor:
        assert executor is not None
        yield executor


@pytest.fixture(scope="module")
async def port(stack: LocalStack, pool: WorkerPool) -> AsyncIterator[int]:
    await warm_up(pool, 2)
    prefix = f"f{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.broker.bootstrap, prefix)
    async with Publisher(
        bootstrap=stack.broker.bootstrap, keyring=stack.keyring, topic_prefix=prefix
    ) as publisher:
        ingest = Ingest(publisher, observer=PrometheusIngestObserver(), executor=pool)
        gateway = MllpGateway(GatewayConfig(port=0), ingest, PrometheusGatewayObserver())
        try:
            yield await gateway.start()
        finally:
            await gateway.stop()


def total(name: str) -> float:
    return sum(s.value for family in REGISTRY.collect() for s in family.samples if s.name == name)


async def ack_of(reader: asyncio.StreamReader) -> bytes:
    decoder = MllpDecoder(1 << 20)
    while True:
        data = await reader.read(65536)
        assert data, "the gateway closed the connection without an ACK"
        if acks := decoder.feed(data):
            return acks[0]


def msa(ack: bytes) -> list[str]:
    line = next(s for s in ack.decode().split("\r") if s.startswith("MSA|"))
    return line.split("|")


async def test_a_small_message_is_answered_while_a_5_mb_one_is_checked(port: int) -> None:
    received = total("relais_mllp_message_bytes_count")
    refused = total("relais_producer_messages_refused_total")
    big_reader, big_writer = await asyncio.open_connection("127.0.0.1", port)
    big_writer.write(frame(pathological()))
    big_ack = asyncio.create_task(ack_of(big_reader))
    async with asyncio.timeout(30):
        while total("relais_mllp_message_bytes_count") < received + 1:
            await asyncio.sleep(0.01)  # the whole 5 MB frame is in: its check has started
    small_reader, small_writer = await asyncio.open_connection("127.0.0.1", port)
    small_writer.write(frame(SMALL.read_bytes()))
    async with asyncio.timeout(30):
        small_ack = await ack_of(small_reader)
    # Ordering, not timing: the small one's AA came before the big one was even refused.
    assert msa(small_ack)[1] == "AA"
    assert total("relais_producer_messages_refused_total") == refused
    assert not big_ack.done()
    async with asyncio.timeout(60):
        answer = await big_ack
    assert msa(answer)[1:3] == ["AE", "BIG-1"]
    assert "\rERR|" in answer.decode()
    assert total("relais_producer_messages_refused_total") == refused + 1
    for writer in (big_writer, small_writer):
        writer.close()
        await writer.wait_closed()
