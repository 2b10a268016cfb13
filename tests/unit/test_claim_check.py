"""The claim check through the stages: each touches only what it needs.

A demo lab result is published with its body in a store that counts reads and writes;
the records go through Avro as on the bus. Identity (here: the builders' qualification)
and route never read a body; transcode reads the submitted body once and writes the CDA it
builds once; the DMP sink's core gets that CDA from one read.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from consumers.dmp.request import submission_of
from ops.demo.samples import DOMINIQUE, LETTER, lab_report_sample, pdf_sample, sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec, Record
from relais.document_store import MemoryStore
from relais.document_store.bodies import BodyWriter, read_content
from relais.keyring import Keyring
from relais.topics import DELIVERY_DMP, READY
from streams.route.release_policy import DEFAULT_POLICY
from streams.route.stage import route_stage
from streams.stage import StageContext, step
from streams.transcode.stage import transcode_stage
from tests.builders import qualified

KEYRING = Keyring.generate("k-claim")
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
CODEC = Codec()


def published(kind: str, store: MemoryStore) -> Record:
    writer = BodyWriter(KEYRING, store)
    raw = pdf_sample(LETTER, DOMINIQUE, 1) if kind == "pdf" else sample(LETTER, DOMINIQUE, 1)
    [record] = submissions(
        parse_message(raw), sector="HOSPITAL", keyring=KEYRING, now=NOW, sealer=writer
    )
    asyncio.run(writer.flush())
    return record


def through(
    stage_name: str, value: bytes, store: MemoryStore, topic: str
) -> list[tuple[str, bytes]]:
    stage = transcode_stage(None) if stage_name == "transcode" else route_stage(DEFAULT_POLICY)
    ctx = StageContext(keyring=KEYRING, now=NOW, state={}, store=store)
    result = asyncio.run(
        step(stage, CODEC, ctx, "t", key=b"k", value=value, partition=0, offset=0, topic=topic)
    )
    assert result.failure is None, result.failure
    return [(o.topic, o.value) for o in result.outputs]


def test_each_stage_touches_only_what_it_needs() -> None:
    store = MemoryStore()
    submitted = published("pdf", store)  # a PDF: transcode builds the N1 CDA
    assert submitted["document"]["media_type"] != "text/xml"
    assert "store_key" in submitted["document"]["content"]
    assert (store.written, store.read) == (1, 0)
    value = CODEC.encode("IdentityQualified", qualified(submitted, NOW))  # the identity stage
    outputs = through("transcode", value, store, "t.documents.qualified.v1")
    assert (store.read, store.written) == (1, 2)  # the PDF read once, the CDA written once
    [ready] = [v for t, v in outputs if t == READY.name("t")]
    _, ready_record = CODEC.decode(ready, expected="DocumentReady")
    assert (
        ready_record["document"]["content"]["store_key"]
        != submitted["document"]["content"]["store_key"]
    )
    assert len(ready) < 4096  # a reference on the topic, not the document
    outputs = through("route", ready, store, READY.name("t"))
    assert (store.read, store.written) == (1, 2)  # route fetched nothing
    [request] = [v for t, v in outputs if t == DELIVERY_DMP.name("t")]
    _, request_record = CODEC.decode(request, expected="DeliveryRequest")
    content = asyncio.run(
        read_content(
            store, KEYRING, request_record["document"], event_id=request_record["event_id"]
        )
    )
    assert content.startswith(b"<?xml") or b"ClinicalDocument" in content[:400]
    filed = submission_of(request_record, KEYRING, NOW, content)
    assert filed.content == content
    assert store.read == 2  # the sink's one read


def test_a_cda_passes_through_transcode_without_a_new_write() -> None:
    store = MemoryStore()
    submitted = published("letter", store)  # a CDA R2 letter
    assert submitted["document"]["media_type"] == "text/xml"
    value = CODEC.encode("IdentityQualified", qualified(submitted, NOW))
    outputs = through("transcode", value, store, "t.documents.qualified.v1")
    [ready] = [v for t, v in outputs if t == READY.name("t")]
    _, ready_record = CODEC.decode(ready, expected="DocumentReady")
    assert ready_record["document"]["content"] == submitted["document"]["content"]
    assert (store.read, store.written) == (1, 1)  # read once to check it; nothing written


def test_a_deletion_names_its_document_and_never_reads_a_body() -> None:
    store = MemoryStore()
    writer = BodyWriter(KEYRING, store)
    raw = lab_report_sample(DOMINIQUE, 1, status="D")
    [record] = submissions(
        parse_message(raw), sector="LAB", keyring=KEYRING, now=NOW, sealer=writer
    )
    assert record["document"]["action"] == "DELETE"
    store.objects.clear()  # its body erased or expired: the deletion must still go through
    value = CODEC.encode("IdentityQualified", qualified(record, NOW))
    outputs = through("transcode", value, store, "t.documents.qualified.v1")
    [ready] = [v for t, v in outputs if t == READY.name("t")]
    _, ready_record = CODEC.decode(ready, expected="DocumentReady")
    assert ready_record["cda_model"] == "deletion"
    assert store.read == 0
