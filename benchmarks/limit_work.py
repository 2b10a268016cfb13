"""W: the essential work per document on one core, timed on the same documents.

Each step runs over every document in turn (one loop per step, in this process, one
thread), so each figure is that step's cost alone:

- base64 decode of OBX-5 (the CDA the message carries);
- SHA-256 of the CDA;
- AES-256-GCM seal and open of the CDA (``AESGCM`` encrypt + decrypt, 12-byte nonce);
- lxml parse + XSD validation (``CdaSchema.validate``, ``CDA_extended.xsd`` compiled once);
- Avro encode + decode of the document's ``DocumentSubmitted`` record, carrying a reference.

W is their sum. Everything else Relais does (HL7 splitting, header rules, XDS metadata,
the signed VIHF, TLS, the broker) is not in W.

See benchmarks/README.md (``pipeline_limit``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks.limit_claim import document_data
from domain.cda_validate import CdaSchema
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec
from relais.document_store import MemoryStore
from relais.document_store.bodies import BodyWriter
from relais.keyring import Keyring

SECTORS: Final = {"11502-2": "LAB", "18748-4": "RADIOLOGY"}  # else HOSPITAL


def sector_of(type_code: str) -> str:
    return SECTORS.get(type_code, "HOSPITAL")


def timed(step: Callable[[Any], object], items: Sequence[Any]) -> float:
    """Seconds for ``step`` over every item."""
    started = time.perf_counter()
    for item in items:
        step(item)
    return time.perf_counter() - started


def referenced_records(raws: Sequence[bytes], keyring: Keyring) -> list[dict[str, Any]]:
    """The ``DocumentSubmitted`` records of the messages, content a reference (not timed)."""
    out: list[dict[str, Any]] = []
    for raw in raws:
        message = parse_message(raw)
        sector = sector_of(message.documents[0].type_code)
        writer = BodyWriter(keyring, MemoryStore())
        out += submissions(
            message, sector=sector, keyring=keyring, now=datetime.now(UTC), sealer=writer
        )
    return out


def essential_work(raws: Sequence[bytes], xsd_dir: Path | None) -> dict[str, float]:
    """ms of one core per document for each step (the XSD step only with ``xsd_dir``)."""
    data = [document_data(raw) for raw in raws]
    contents = [base64.b64decode(d) for d in data]
    aead, ad = AESGCM(AESGCM.generate_key(bit_length=256)), b"relais/body/v1"
    sealed = [(n, aead.encrypt(n, c, ad)) for c in contents for n in [os.urandom(12)]]
    codec = Codec()
    records = referenced_records(raws, Keyring.generate())
    encoded = [codec.encode("DocumentSubmitted", r) for r in records]
    steps: dict[str, float] = {
        "base64 decode": timed(base64.b64decode, data),
        "SHA-256": timed(lambda c: hashlib.sha256(c).digest(), contents),
        "AES-256-GCM seal": timed(lambda c: aead.encrypt(os.urandom(12), c, ad), contents),
        "AES-256-GCM open": timed(lambda s: aead.decrypt(s[0], s[1], ad), sealed),
        "Avro encode + decode": timed(
            lambda r: codec.decode(codec.encode("DocumentSubmitted", r)), records
        ),
    }
    if xsd_dir is not None:
        schema = CdaSchema.load(xsd_dir)
        problems = sum(bool(schema.validate(c)) for c in contents)  # warm-up, and a check
        if problems:
            raise RuntimeError(f"{problems} documents fail CDA_extended.xsd")
        steps["lxml parse + XSD validation"] = timed(schema.validate, contents)
    assert len(encoded) == len(raws)
    return {name: 1000 * seconds / len(raws) for name, seconds in steps.items()}
