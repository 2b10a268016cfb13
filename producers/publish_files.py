"""``relais publish``: files in, one outcome per file out (the async shell of the CLI).

HL7 v2 messages (``MSH`` first, optionally MLLP-framed), CDA R2 documents and
PDFs with a JSON sidecar (see :mod:`producers.document_files`) are published
one by one; each file is accepted (its event ids) or rejected (the reason),
and nothing stops the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaError

from producers.document_files import DocumentFileError, load_document_file
from producers.door.admit import admit
from producers.hl7.errors import Hl7Error
from producers.ingest import sector_of
from producers.publisher import Publisher


@dataclass(frozen=True)
class FileOutcome:
    path: Path
    event_ids: tuple[str, ...] = ()
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None


def is_hl7(content: bytes) -> bool:
    return content.lstrip(b"\x0b\xef\xbb\xbf \r\n").startswith(b"MSH")


async def publish_one(publisher: Publisher, path: Path, sector: str | None) -> FileOutcome:
    try:
        content = await asyncio.to_thread(path.read_bytes)
        if is_hl7(content):
            message = admit(content, publisher.policy)
            ids = await publisher.publish_message(message, sector=sector_of(message, sector))
            return FileOutcome(path, tuple(ids))
        submission = await asyncio.to_thread(load_document_file, path, content, sector)
        return FileOutcome(path, (await publisher.publish_document(submission),))
    except (Hl7Error, DocumentFileError) as exc:
        return FileOutcome(path, error=str(exc))
    except OSError as exc:
        return FileOutcome(path, error=f"cannot read: {exc.strerror}")
    except KafkaError as exc:
        return FileOutcome(path, error=f"broker refused or unreachable ({type(exc).__name__})")


async def publish_files(
    publisher: Publisher,
    paths: Sequence[Path],
    sector: str | None,
    progress: Callable[[FileOutcome], None],
) -> list[FileOutcome]:
    outcomes = []
    for path in paths:
        outcome = await publish_one(publisher, path, sector)
        progress(outcome)
        outcomes.append(outcome)
    return outcomes
