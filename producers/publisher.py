"""The producer library: parse, validate, seal, store, publish; return once acknowledged.

>>> async with Publisher(bootstrap="127.0.0.1:39092", keyring=keyring) as publisher:
...     event_ids = await publisher.submit_lab_result(raw_oru_r01)

Each sector has its entry point (hospital, lab, radiology) that checks the
message types that sector sends. Each document's bytes are written once
to the document store (``store``; :mod:`relais.document_store`), durably, and only then
are the records, which carry a reference, sent with ``acks=all`` and awaited: when a
``submit_*`` call returns, the documents are safely in the store and on the bus.
Bad input raises an :class:`~producers.hl7.errors.Hl7Error` that names the
field and the rule (the MLLP gateway turns it into an AE/AR acknowledgement).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType

from producers.document_files import FileSubmission
from producers.door.admit import DoorPolicy, admit, content_problems, is_test
from producers.door.known_documents import (
    DocumentKey,
    KnownDocuments,
    document_keys,
    known_problem,
)
from producers.hl7.errors import Hl7ValidationError
from producers.hl7.message import Hl7Message
from producers.submission import (
    document_submitted,
    identity_update,
    patient_key,
    patient_key_of,
    submissions,
)
from relais import kafka_clients
from relais.audit_records import received
from relais.contracts import Codec, Record
from relais.deadletter import Failure, Origin, dead_letter
from relais.document_store import DocumentStore, StoreUnavailableError
from relais.document_store.bodies import BodyWriter
from relais.kafka_clients import Target
from relais.keyring import Keyring, warm_patient_key
from relais.topics import (
    AUDIT,
    DEADLETTER,
    DOCUMENT_IDS,
    IDENTITY_EVENTS,
    SUBMITTED,
    TEST_DOCUMENTS,
)

_ADT = {"ADT^A01", "ADT^A04", "ADT^A08", "ADT^A40"}
SECTOR_MESSAGES = {
    "LAB": {"ORU^R01"} | _ADT,
    "RADIOLOGY": {"ORU^R01", "MDM^T02", "MDM^T10", "MDM^T04"} | _ADT,
    "HOSPITAL": {"ORU^R01", "MDM^T02", "MDM^T10", "MDM^T04"} | _ADT,
}


def check_sector(message: Hl7Message, sector: str) -> None:
    """Refuse a message type the sector does not send (an SGL sends no MDM)."""
    allowed = SECTOR_MESSAGES.get(sector)
    if allowed is None:
        raise Hl7ValidationError(
            f"unknown sector {sector!r}; expected one of {', '.join(SECTOR_MESSAGES)}",
            hl7_error_code="207",
            app_error_code="906",
        )
    if message.message_type not in allowed:
        raise Hl7ValidationError(
            f"a {sector.lower()} producer sends {', '.join(sorted(allowed))}, "
            f"not {message.message_type}",
            hl7_error_code="200",
            app_error_code="906",
            location="MSH-9",
        )


MAX_REQUEST_BYTES = 16 << 20


def _patient_of(keyring: Keyring, message: Hl7Message | None) -> str | None:
    """The pseudonym of the patient a parsed message names (its INS or a local id), if any."""
    if message is None or keyring.patients is None:
        return None
    named = message.patient
    return patient_key(keyring, message) if named.ins or named.local_ids else None


class Publisher:
    """Publishes documents onto ``documents.submitted``; an async context manager."""

    def __init__(
        self,
        *,
        bootstrap: Target,
        keyring: Keyring,
        topic_prefix: str = "relais",
        codec: Codec | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        policy: DoorPolicy | None = None,
        known: KnownDocuments | None = None,
        store: DocumentStore | None = None,
    ) -> None:
        self.known = known
        self.store = store  # None: contents sealed inline (tools, tests of the library)
        self.keyring = keyring
        self.policy = policy or DoorPolicy()
        self.test_topic = TEST_DOCUMENTS.name(topic_prefix)
        self.ids_topic = DOCUMENT_IDS.name(topic_prefix)
        self.codec = codec or Codec()
        self.topic = SUBMITTED.name(topic_prefix)
        self.identity_topic = IDENTITY_EVENTS.name(topic_prefix)
        self.deadletter_topic = DEADLETTER.name(topic_prefix)
        self.audit_topic = AUDIT.name(topic_prefix)
        self.clock = clock
        self._producer = kafka_clients.producer(
            bootstrap,
            acks="all",
            max_request_size=MAX_REQUEST_BYTES,
            request_timeout_ms=30_000,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def submit_hl7(self, raw: bytes, *, sector: str) -> list[str]:
        """Check (the door's rules) and publish an HL7 v2 message; return the event ids, once
        acknowledged."""
        return await self.publish_message(admit(raw, self.policy), sector=sector)

    async def publish_message(
        self, message: Hl7Message, *, sector: str, keys: tuple[DocumentKey, ...] | None = None
    ) -> list[str]:
        """Publish an admitted message: documents, or an identity event for ADT.

        A test message (MSH-11 T/D) goes to the test topic only: no stage reads it, and it
        never makes a patient's key. Only a message accepted for publishing (after the
        registry's checks) makes the patient's key when they have none.
        """
        check_sector(message, sector)
        now, patient = self.clock(), patient_key(self.keyring, message)
        if is_test(message):
            await warm_patient_key(self.keyring, patient, create=False)
            return await self._publish_test(message, sector=sector, now=now)
        checked = self._check_known(message, keys) if message.documents else ()
        keyring = self.keyring.minting()  # accepted: the intake point makes the key
        await warm_patient_key(keyring, patient)
        if not message.documents:
            update = identity_update(message, sector=sector, keyring=keyring, now=now)
            await self._send([(self.identity_topic, "IdentityUpdate", update)])
            return [str(update["event_id"])]
        bodies = BodyWriter(keyring, self.store)
        records = submissions(message, sector=sector, keyring=keyring, now=now, sealer=bodies)
        earlier = self.known.reserve(checked) if self.known is not None else {}
        try:  # reserved before the await: a racing message with the same id is refused
            await bodies.flush()  # the bodies are durable before their references are sent
            await self._send([(self.topic, "DocumentSubmitted", r) for r in records], checked)
        except BaseException:
            if self.known is not None:
                self.known.release(earlier)
            raise
        return [str(r["event_id"]) for r in records]

    async def _publish_test(self, message: Hl7Message, *, sector: str, now: datetime) -> list[str]:
        """A test message onto the test topic, sealed inline under the patient's existing
        key or the shared key (nothing in the store, no key made)."""
        if not message.documents:
            update = identity_update(message, sector=sector, keyring=self.keyring, now=now)
            await self._send([(self.test_topic, "IdentityUpdate", update)])
            return [str(update["event_id"])]
        records = submissions(message, sector=sector, keyring=self.keyring, now=now)
        await self._send([(self.test_topic, "DocumentSubmitted", r) for r in records])
        return [str(r["event_id"]) for r in records]

    def _check_known(
        self, message: Hl7Message, keys: tuple[DocumentKey, ...] | None
    ) -> tuple[DocumentKey, ...]:
        """Refuse a reused id or an unknown parent (when the registry is attached); ``keys``
        as the door's worker read them, else read here."""
        if self.known is None:
            return ()
        keys = keys if keys is not None else document_keys(message)
        if problem := known_problem(self.known.ids, keys, self.policy.refuse_unknown_parents):
            raise problem
        return keys

    async def publish_document(self, submission: FileSubmission) -> str:
        """Check (the door's content rules) and publish a CDA or PDF described by
        :mod:`producers.document_files`."""
        document = submission.document
        problems = content_problems(
            document.content, document.media_type, submission.patient, self.policy
        )
        if problems:
            raise Hl7ValidationError(
                f"document refused: {'; '.join(problems[:5])}",
                hl7_error_code="207",
                app_error_code="906",
            )
        keyring = self.keyring.minting()  # accepted: the intake point makes the key
        patient = patient_key_of(keyring, submission.patient, submission.origin.facility)
        await warm_patient_key(keyring, patient)
        bodies = BodyWriter(keyring, self.store)
        record = document_submitted(
            submission.document,
            patient=submission.patient,
            origin=submission.origin,
            delivery=submission.delivery,
            sector=submission.sector,
            keyring=keyring,
            now=self.clock(),
            event_id=str(uuid.uuid4()),
            sealer=bodies,
        )
        await bodies.flush()
        await self._send([(self.topic, "DocumentSubmitted", record)])
        return str(record["event_id"])

    async def dead_letter(
        self, raw: bytes, *, stage: str, failure: Failure, message: Hl7Message | None = None
    ) -> str:
        """Record input Relais refused (sealed), so that nothing refused is silently gone;
        under the data key of the patient ``message`` (parsed) names when they have one (a
        refused message never makes a key), else under the shared key."""
        patient = _patient_of(self.keyring, message)
        try:
            await warm_patient_key(self.keyring, patient, create=False)
        except StoreUnavailableError:
            patient = None  # the key store down: the shared key, and the refusal is recorded
        letter = dead_letter(
            self.keyring,
            stage=stage,
            failure=failure,
            origin=Origin(stage),
            original=raw,
            now=self.clock(),
            patient_key=patient,
        )
        value = self.codec.encode("DeadLetter", letter)
        await (await self._producer.send(self.deadletter_topic, value=value))
        return str(letter["dead_letter_id"])

    async def _send(
        self, records: list[tuple[str, str, Record]], keys: tuple[DocumentKey, ...] = ()
    ) -> None:
        """Send all, with each document's RECEIVED audit event and its id entry, then wait
        until the broker acknowledged every one (acks=all)."""
        keyed = [(t, n, r, r["patient"]["patient_key"].encode()) for t, n, r in records]
        audits = [
            (self.audit_topic, "AuditEvent", received(r), key)
            for _, n, r, key in keyed
            if n == "DocumentSubmitted"
        ]
        sends = [
            await self._producer.send(topic, key=key, value=self.codec.encode(record_type, record))
            for topic, record_type, record, key in keyed + audits
        ]
        for document in keys:
            key, value = document.entry()
            sends.append(await self._producer.send(self.ids_topic, key=key, value=value))
        await asyncio.gather(*sends)

    async def submit_identity(self, raw: bytes, *, sector: str = "HOSPITAL") -> str:
        """An identity server (ADT A01/A04/A08/A40) hands over a patient identity event."""
        message = admit(raw, self.policy)
        if message.documents or not message.message_type.startswith("ADT^"):
            raise Hl7ValidationError(
                f"identity events are ADT messages, not {message.message_type}",
                hl7_error_code="200",
                app_error_code="906",
                location="MSH-9",
            )
        return (await self.publish_message(message, sector=sector))[0]

    async def submit_lab_result(self, raw: bytes) -> list[str]:
        """A lab system (SGL) hands over an ORU^R01 compte rendu de biologie."""
        return await self.submit_hl7(raw, sector="LAB")

    async def submit_imaging_report(self, raw: bytes) -> list[str]:
        """An imaging system (RIS) hands over a CR d'imagerie (ORU^R01 or MDM)."""
        return await self.submit_hl7(raw, sector="RADIOLOGY")

    async def submit_hospital_document(self, raw: bytes) -> list[str]:
        """A hospital DPI/PFI hands over a document (lettre de liaison, CR...)."""
        return await self.submit_hl7(raw, sector="HOSPITAL")
