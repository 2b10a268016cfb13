"""From one inbound HL7 v2 message to its technical acknowledgement.

The MLLP gateway calls :class:`Ingest` once per frame. It parses the
message, publishes it with the producer library and answers:

- ``AA`` only once the broker acknowledged every record (``acks=all``): the
  bus has taken responsibility for the message;
- ``AE`` with an ERR segment naming the field and the rule when the message
  itself is wrong (resending it unchanged fails again);
- ``AR`` when Relais cannot store it now (broker down, timeout): the sender
  keeps it and resends later. A resend of a message that did reach the bus is
  recognised downstream as a duplicate, so it is delivered once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Protocol

from aiokafka.errors import KafkaError

from producers.door.admit import Admitted, DoorPolicy, Refused, admit_or_refuse
from producers.door.known_documents import DocumentKey
from producers.hl7.ack import build_ack
from producers.hl7.errors import Hl7Error, Hl7ValidationError
from producers.hl7.message import Hl7Message, MessageHeader, message_digest, read_header
from relais.deadletter import Failure

log = logging.getLogger(__name__)

SECTOR_BY_DOCUMENT_TYPE = {"11502-2": "LAB", "18748-4": "RADIOLOGY"}


def sector_of(message: Hl7Message, fixed: str | None) -> str:
    """The listener's sector if it has one, else the sector a document type implies."""
    if fixed:
        return fixed
    for document in message.documents:
        if document.type_code in SECTOR_BY_DOCUMENT_TYPE:
            return SECTOR_BY_DOCUMENT_TYPE[document.type_code]
    return "HOSPITAL"


class MessagePublisher(Protocol):
    async def publish_message(
        self, message: Hl7Message, *, sector: str, keys: tuple[DocumentKey, ...] | None = None
    ) -> list[str]: ...
    async def dead_letter(
        self, raw: bytes, *, stage: str, failure: Failure, message: Hl7Message | None = None
    ) -> str: ...


class IngestObserver(Protocol):
    def accepted(
        self, sector: str, message_type: str, documents: int, sender: str | None = None
    ) -> None: ...
    def refused(self, code: str, reason: str, sender: str | None = None) -> None: ...


class Ingest:
    """The gateway's message handler: parse, publish, acknowledge."""

    def __init__(
        self,
        publisher: MessagePublisher,
        *,
        sector: str | None = None,
        publish_timeout_s: float = 30.0,
        observer: IngestObserver | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        policy: DoorPolicy | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.policy = policy or DoorPolicy()
        self.executor = executor
        self.publisher = publisher
        self.sector = sector
        self.publish_timeout_s = publish_timeout_s
        self.observer = observer
        self.clock = clock

    async def __call__(self, payload: bytes) -> bytes:
        try:
            admission = await self._admit(payload)
        except Exception as exc:  # a broken worker pool: transient, the sender resends
            log.warning(
                "message %s not checked: %s", message_digest(payload)[:12], type(exc).__name__
            )
            return await self._refuse(read_header(payload), payload, "AR", _unavailable("checked"))
        if isinstance(admission, Refused):
            return await self._refuse(admission.header, payload, "AE", admission.error)
        message = admission.message
        sector = sector_of(message, self.sector)
        try:
            event_ids = await asyncio.wait_for(
                self.publisher.publish_message(message, sector=sector, keys=admission.keys),
                self.publish_timeout_s,
            )
        except Hl7Error as exc:
            return await self._refuse(message, payload, "AE", exc)
        except Exception as exc:  # broker down, timeout, or a bug: the sender keeps it (AR)
            digest = message_digest(payload)[:12]
            log.warning("message %s not stored: %s", digest, type(exc).__name__)
            return await self._refuse(message, payload, "AR", _unavailable("stored on the bus"))
        if self.observer:
            documents, facility = len(message.documents), message.sending_facility
            self.observer.accepted(sector, message.message_type, documents, facility)
        log.info("accepted %s as events %s", message.message_type, ",".join(event_ids))
        return build_ack(message, payload, code="AA", control_id=self._ack_id(), now=self.clock())

    async def _admit(self, payload: bytes) -> Admitted | Refused:
        """The door's pure checks, in the worker pool when there is one (CPU off the loop)."""
        if self.executor is None:
            return admit_or_refuse(payload, self.policy)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, admit_or_refuse, payload, self.policy)

    async def _refuse(
        self, header: MessageHeader | None, payload: bytes, code: str, error: Hl7Error
    ) -> bytes:
        """AE/AR with its ERR; ``header`` is the MSH as read (None: unreadable)."""
        reason = f"{error.hl7_error_code}-{error.location or 'message'}"
        if self.observer:
            self.observer.refused(code, reason, header.sending_facility if header else None)
        log.info("refused message %s: %s %s", message_digest(payload)[:12], code, reason)
        if code == "AE":  # bad input: keep a sealed copy and the reason (AR: the sender keeps it)
            failure = Failure(f"hl7-{error.hl7_error_code}", str(error))
            try:
                await asyncio.wait_for(
                    self.publisher.dead_letter(
                        payload,
                        stage="mllp",
                        failure=failure,
                        message=header if isinstance(header, Hl7Message) else None,
                    ),
                    self.publish_timeout_s,
                )
            except (KafkaError, TimeoutError, OSError) as exc:
                log.warning("dead letter for %s not stored: %s", reason, type(exc).__name__)
        return build_ack(
            header, payload, code=code, error=error, control_id=self._ack_id(), now=self.clock()
        )

    @staticmethod
    def _ack_id() -> str:
        return uuid.uuid4().hex[:20]


def _unavailable(what: str) -> Hl7ValidationError:
    return Hl7ValidationError(
        f"Relais could not have the message {what} now; keep it and resend it later",
        hl7_error_code="207",
        location="MSH-10",
    )
