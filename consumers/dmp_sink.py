"""The DMP sink: file each DMP delivery request, then report and commit.

A plain aiokafka consumer (manual commits). For each request it decrypts the
document and the INS, files them with :class:`DmpClient`, writes a
``DeliveryStatus`` (and a dead letter when the DMP refuses), waits for the
broker's acknowledgement, and only then commits the offset. Transient
failures (DMP down, 5xx) are retried with backoff on the same record, so
nothing is skipped; the DMP recognises a re-sent document by its unique id,
which makes a replay after a crash harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers.dmp_submission import (
    Answer,
    DmpError,
    DmpRejected,
    DmpUnavailable,
    Submission,
    http_request,
    patient_cx,
    read_answer,
)
from relais.backoff import exponential_backoff
from relais.contracts import Codec, ContractError, Record
from relais.deadletter import Failure, Origin, dead_letter
from relais.envelope import Envelope, EnvelopeError, open_envelope
from relais.keyring import Keyring
from relais.metrics import DMP_DELIVERIES, StageMetrics
from relais.settings import Settings
from relais.topics import DEADLETTER, DELIVERY_DMP, DELIVERY_STATUS

log = logging.getLogger(__name__)
STAGE = "dmp-sink"


class StopRequested(Exception):
    """Shutdown was asked while a delivery was waiting to be retried."""


class DmpClient:
    """The one seam to the DMP endpoint: ``file(submission)``."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.url = base_url.rstrip("/") + "/documents"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def file(self, submission: Submission) -> Answer:
        headers, body = http_request(submission)
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                try:
                    payload = await response.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    payload = {"detail": "answer is not JSON"}
                return read_answer(response.status, payload if isinstance(payload, dict) else {})
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DmpUnavailable(f"DMP unreachable: {type(exc).__name__}") from None

    async def close(self) -> None:
        await self._session.close()


def submission_of(request: Record, keyring: Keyring) -> Submission:
    """Decrypt what the DMP needs from a ``DeliveryRequest``."""
    event_id = request["event_id"]
    document = request["document"]
    content = open_envelope(
        keyring, Envelope.from_record(document["content"]), event_id=event_id, purpose="content"
    )
    traits = json.loads(
        open_envelope(
            keyring,
            Envelope.from_record(request["patient"]["identity"]),
            event_id=event_id,
            purpose="identity",
        )
    )
    return Submission(
        unique_id=document["unique_id"],
        patient_id=patient_cx(str(traits["ins"]), str(traits["ins_oid"])),
        type_code=document["type_code"],
        content=content,
    )


def status_record(
    request: Record,
    *,
    outcome: str,
    code: str | None,
    detail: str | None,
    attempt: int,
    now: datetime,
) -> Record:
    return {
        "event_id": request["event_id"],
        "request_id": request["request_id"],
        "destination": "DMP",
        "document_unique_id": request["document"]["unique_id"],
        "outcome": outcome,
        "code": code,
        "detail": detail,
        "attempt": attempt,
        "at": now,
        "submitted_at": request["submitted_at"],
    }


class DmpSink:
    def __init__(
        self,
        *,
        bootstrap: str,
        prefix: str,
        keyring: Keyring,
        client: DmpClient,
        session_timeout_s: float = 6.0,
    ) -> None:
        self.prefix, self.keyring, self.client = prefix, keyring, client
        self.codec = Codec()
        self.metrics = StageMetrics(STAGE)
        self.consumer = AIOKafkaConsumer(
            DELIVERY_DMP.name(prefix),
            bootstrap_servers=bootstrap,
            group_id=f"{prefix}-dmp-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=1000,
            max_partition_fetch_bytes=16 << 20,
            fetch_max_bytes=64 << 20,
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_request_size=16 << 20
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self.producer.start()
        await self.consumer.start()
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=500, max_records=50)
                for tp, messages in batches.items():
                    for message in messages:
                        await self._handle(message, stop)
                        await self.consumer.commit({tp: message.offset + 1})
        except StopRequested:
            log.info("stopping with a delivery in hand: it stays uncommitted and is retried")
        finally:
            await self.consumer.stop()
            await self.producer.stop()

    async def _handle(self, message: Any, stop: asyncio.Event) -> None:
        self.metrics.received()
        with self.metrics.timed():
            outputs = await self._outputs(message, stop)
            sends = [await self.producer.send(t, key=message.key, value=v) for t, v in outputs]
            await asyncio.gather(*sends)
            for topic, _ in outputs:
                self.metrics.emitted(topic)

    async def _outputs(self, message: Any, stop: asyncio.Event) -> list[tuple[str, bytes]]:
        topic = DELIVERY_DMP.name(self.prefix)
        origin = Origin(topic, message.partition, message.offset)
        try:
            _, request = self.codec.decode(
                message.value,
                expected="DeliveryRequest",
                topic=topic,
                partition=message.partition,
                offset=message.offset,
            )
            origin = Origin(topic, message.partition, message.offset, request["event_id"])
            submission = submission_of(request, self.keyring)
        except (ContractError, EnvelopeError, KeyError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            return [self._dead_letter(Failure("undecodable-record", reason), origin, message)]
        attempt = 0
        for delay in exponential_backoff():
            attempt += 1
            try:
                answer = await self.client.file(submission)
            except DmpUnavailable as exc:
                DMP_DELIVERIES.labels("RETRYING").inc()
                log.warning(
                    "DMP unavailable for event %s (attempt %d): %s",
                    request["event_id"],
                    attempt,
                    exc.code,
                )
                if stop.is_set():
                    raise StopRequested from None
                await asyncio.sleep(delay)
                continue
            except DmpRejected as exc:
                return self._rejected(request, exc, attempt, origin, message)
            outcome = "DELIVERED" if answer.status == "success" else "DUPLICATE"
            DMP_DELIVERIES.labels(outcome).inc()
            status = status_record(
                request, outcome=outcome, code=answer.code, detail=None, attempt=attempt, now=_now()
            )
            return [
                (DELIVERY_STATUS.name(self.prefix), self.codec.encode("DeliveryStatus", status))
            ]
        raise AssertionError("unreachable: backoff is endless")

    def _rejected(
        self, request: Record, exc: DmpError, attempt: int, origin: Origin, message: Any
    ) -> list[tuple[str, bytes]]:
        DMP_DELIVERIES.labels("REJECTED").inc()
        status = status_record(
            request, outcome="REJECTED", code=exc.code, detail=str(exc), attempt=attempt, now=_now()
        )
        failure = Failure("dmp-rejected", f"{exc.code}: {exc}")
        return [
            (DELIVERY_STATUS.name(self.prefix), self.codec.encode("DeliveryStatus", status)),
            self._dead_letter(failure, origin, message),
        ]

    def _dead_letter(self, failure: Failure, origin: Origin, message: Any) -> tuple[str, bytes]:
        self.metrics.failed(failure.reason_code, dead_lettered=True)
        letter = dead_letter(
            self.keyring,
            stage=STAGE,
            failure=failure,
            origin=origin,
            original=message.value or b"",
            now=_now(),
        )
        return DEADLETTER.name(self.prefix), self.codec.encode("DeadLetter", letter)


def _now() -> datetime:
    return datetime.now(UTC)


async def run_dmp_sink(settings: Settings, keyring: Keyring) -> None:
    """Run the sink until SIGINT/SIGTERM; finish the record in hand, then stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = DmpClient(settings.dmp_url)
    sink = DmpSink(
        bootstrap=settings.bootstrap_servers,
        prefix=settings.topic_prefix,
        keyring=keyring,
        client=client,
        session_timeout_s=settings.session_timeout_s,
    )
    try:
        await sink.run(stop)
    finally:
        await client.close()
