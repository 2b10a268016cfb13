"""The document ids the door already accepted, and what each one's content was.

A document id (CDA id, TXA-12, OBR-3 + OBX-1) names one content for ever: the DMP
keeps it and every later version names it as its parent. So the door refuses, by
name, before its ACK:

* an id already accepted with **another content** (a resend of the same bytes is
  accepted again: the sinks deliver it once);
* a **replacement or deletion** of an id it never accepted (volet: the sender must
  first send the document, or name the right parent in TXA-13 / the CDA's
  relatedDocument).

The ids live on the compacted topic ``documents.ids.v1`` (key: the id; value: the
content's SHA-256 and the action), written by the producer library in the same batch as
the documents. Each gateway reads it whole at start, then follows it, so several
gateways share what each accepted. Bound: memory grows with the ids kept (about 150
bytes each); the topic's retention (a year) bounds it, and the DMP sink refuses a
reused id it filed earlier, as a backstop with a business acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from domain.document_id import cda_id_of, parent_id_of, parse
from producers.hl7.errors import Hl7ValidationError
from producers.hl7.message import EmbeddedDocument, Hl7Message
from producers.submission import ACTIONS, unique_id
from relais import kafka_clients
from relais.kafka_clients import Target
from relais.settings_env import SettingsError

log = logging.getLogger(__name__)
_DIGEST_CHARS: Final = 32


@dataclass(frozen=True)
class DocumentKey:
    """One document of a message as the registry sees it."""

    unique_id: str
    digest: str  # SHA-256 of the content, first 32 hex characters
    action: str  # SUBMIT | REPLACE | DELETE
    parent_id: str | None

    def entry(self) -> tuple[bytes, bytes]:
        """(key, value) of this document on ``documents.ids.v1``."""
        value = {"sha256": self.digest, "action": self.action}
        return self.unique_id.encode(), json.dumps(value, sort_keys=True).encode()


def document_keys(message: Hl7Message) -> tuple[DocumentKey, ...]:
    """Each document's id, digest, action and parent (TXA-13, else the CDA's RPLC parent);
    a CDA is parsed once for both ids."""
    keys = []
    for document in message.documents:
        document_id, parent_id = _ids(message, document)
        keys.append(
            DocumentKey(
                unique_id=normal_id(document_id),
                digest=hashlib.sha256(document.content).hexdigest()[:_DIGEST_CHARS],
                action=ACTIONS.get(document.result_status, "SUBMIT"),
                parent_id=parent_id,
            )
        )
    return tuple(keys)


def _ids(message: Hl7Message, document: EmbeddedDocument) -> tuple[str, str | None]:
    """(the id a sink deduplicates on, the id it replaces) of one document."""
    parent = normal_id(message.parent_document_id) if message.parent_document_id else None
    root = parse(document.content)[0] if document.media_type == "text/xml" else None
    if root is None:
        return unique_id(message, document), parent
    return cda_id_of(root) or unique_id(message, document), parent or parent_id_of(root)


def normal_id(document_id: str) -> str:
    """``root^extension`` (HL7 v2 EI) and ``root.extension`` (the CDA id) name the same id."""
    return document_id.replace("^", ".")


def known_problem(
    known: Mapping[str, str], keys: Iterable[DocumentKey], refuse_unknown_parents: bool = True
) -> Hl7ValidationError | None:
    """Why these documents contradict the ids already accepted, or None.

    ``refuse_unknown_parents`` False (RELAIS_MLLP_UNKNOWN_PARENTS=accept) lets replacements
    and deletions of ids the registry never saw through: the setting for the months after
    Relais took over from another PFI, whose documents the registry cannot know.
    """
    for key in keys:
        earlier = known.get(key.unique_id)
        if key.action == "SUBMIT" and earlier is not None and earlier != key.digest:
            return Hl7ValidationError(
                f"document id {key.unique_id} was already sent with another content; a new "
                "document needs a new id, a correction is a replacement (MDM^T10 / ORC RO) "
                "naming this id as its parent",
                hl7_error_code="205",
                app_error_code="906",
                location="OBX-5",
            )
        target = key.parent_id or key.unique_id
        if refuse_unknown_parents and key.action != "SUBMIT" and target not in known:
            verb = "replaces" if key.action == "REPLACE" else "deletes"
            return Hl7ValidationError(
                f"this message {verb} document {target}, which Relais never received; send the "
                "document first, or name the id it was sent with (TXA-13 / relatedDocument)",
                hl7_error_code="204",
                app_error_code="906",
                location="TXA-13" if key.parent_id else "OBX-5",
            )
    return None


class KnownDocuments:
    """The registry: loaded from ``documents.ids.v1``, then followed in the background."""

    def __init__(self, bootstrap: Target, topic: str) -> None:
        self.topic = topic
        self.ids: dict[str, str] = {}
        self._consumer = kafka_clients.consumer(
            bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        self._follower: asyncio.Task[None] | None = None

    def problem(self, message: Hl7Message) -> Hl7ValidationError | None:
        return known_problem(self.ids, document_keys(message))

    def reserve(self, keys: Iterable[DocumentKey]) -> dict[str, str | None]:
        """Record ``keys`` now (before their send is acknowledged); what they replaced."""
        earlier = {key.unique_id: self.ids.get(key.unique_id) for key in keys}
        for key in keys:
            self.ids[key.unique_id] = key.digest
        return earlier

    def release(self, earlier: Mapping[str, str | None]) -> None:
        """Undo :meth:`reserve` after a send that failed."""
        for document_id, digest in earlier.items():
            if digest is None:
                self.ids.pop(document_id, None)
            else:
                self.ids[document_id] = digest

    async def start(self) -> None:
        """Read the topic to its end (what every gateway accepted so far), then follow it."""
        await self._consumer.start()
        if self.topic not in await self._consumer.topics():
            await self._consumer.stop()
            raise SettingsError(
                f"topic {self.topic} does not exist: create the topics (relais topics create) "
                "or check RELAIS_TOPIC_PREFIX"
            )
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        ends = await self._consumer.end_offsets(assigned)
        while await self._behind(ends):
            self._take(await self._consumer.getmany(timeout_ms=500))
        log.info("document ids loaded: %d", len(self.ids))
        self._follower = asyncio.create_task(self._follow())

    async def _behind(self, ends: Mapping[TopicPartition, int]) -> bool:
        for partition, end in ends.items():
            if await self._consumer.position(partition) < end:
                return True
        return False

    async def _follow(self) -> None:
        """Follow what the other gateways accept; a broker hiccup is waited out, not fatal."""
        while True:
            try:
                self._take(await self._consumer.getmany(timeout_ms=1000))
            except KafkaError as exc:
                log.warning("document ids: reading %s failed (%s)", self.topic, type(exc).__name__)
                await asyncio.sleep(1.0)

    def _take(self, batches: Mapping[TopicPartition, list[object]]) -> None:
        for records in batches.values():
            for record in records:
                key, value = getattr(record, "key", None), getattr(record, "value", None)
                if key is None or value is None:
                    continue
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.ids[key.decode()] = str(json.loads(value)["sha256"])

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self._consumer.stop()
