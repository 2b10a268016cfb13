"""L: the simplest correct program moving the documents from MLLP to the DMP sandbox.

Same hops as the pipeline, nothing checked: an MLLP server (frame, find OBX-5, base64
decode, seal the body and write it once to a :class:`FileStore` (fsync), send a small
reference record acks=all, then ACK AA) -> 3 relays (consume, produce acks=all, commit
per batch) -> a DMP filer (fetch the body once, open it, file it at the DMP sandbox with
:class:`DmpClient`: ITI-41, MTOM, signed VIHF, mutual TLS; a status record acks=all,
commit per batch). One process each, as the pipeline has one per stage.

See benchmarks/README.md (``pipeline_limit``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from benchmarks.limit_bus import consumer, producer
from consumers.dmp.client import DmpClient, DmpConfig
from consumers.dmp.submission import Submission, patient_cx
from domain.visibility import visibility_flags
from domain.xds.metadata import document_entry
from relais.document_store import FileStore
from relais.document_store.bodies import BodyRef, open_body, seal_body
from relais.keyring import Keyring
from relais.settings import Settings

END: Final = b"\x1c\r"


def gateway_main(bootstrap: str, topic: str, port: int, store: str, keyring: str) -> None:
    asyncio.run(
        gateway(bootstrap, topic, port, FileStore(Path(store)), Keyring.from_file(Path(keyring)))
    )


async def gateway(
    bootstrap: str, topic: str, port: int, store: FileStore, keyring: Keyring
) -> None:
    """Serve MLLP on ``port`` until killed."""
    out = producer(bootstrap)
    await out.start()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while frame := await reader.readuntil(END):
                control = await intake(frame[1:-2], out, topic, store, keyring)
                writer.write(b"\x0bMSH|^~\\&|L|L|||||ACK||P|2.5\rMSA|AA|" + control + END)
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, limit=1 << 26)
    async with server:
        await server.serve_forever()


async def intake(
    message: bytes, out: AIOKafkaProducer, topic: str, store: FileStore, keyring: Keyring
) -> bytes:
    """Store the body once, send its reference; the MSH-10 to echo."""
    control, cx, data = read_message(message)
    ins, oid = cx[0].decode(), cx[3].split(b"&")[1].decode()
    content = base64.b64decode(data)
    event = str(uuid.uuid4())
    sealed = seal_body(keyring, content, unique_id=event, event_id=event)
    await store.put(sealed.key, sealed.blob)
    value = {"event": event, "ref": sealed.ref.to_record(), "patient": patient_cx(ins, oid)}
    await (await out.send(topic, key=ins.encode(), value=json.dumps(value).encode()))
    return control


def read_message(message: bytes) -> tuple[bytes, list[bytes], bytes]:
    """MSH-10, PID-3's components and the base64 of the first ED OBX's OBX-5."""
    control, cx, data = b"", [b""] * 4, b""
    for segment in message.split(b"\r"):
        fields = segment.split(b"|", 6)
        if fields[0] == b"MSH":
            control = segment.split(b"|", 10)[9]
        elif fields[0] == b"PID":
            cx = fields[3].split(b"^")  # INS^^^ASIP-SANTE-INS-NIR&OID&ISO^INS
        elif fields[0] == b"OBX" and fields[2] == b"ED" and not data:
            data = fields[5].split(b"^")[4]  # ^TEXT^XML^Base64^<data>
    return control, cx, data


def document_data(raw: bytes) -> bytes:
    """The base64 document an HL7 message carries."""
    return read_message(raw)[2]


def filer_main(
    bootstrap: str, source: str, target: str, store: str, keyring: str, env: dict[str, str]
) -> None:
    config = DmpConfig.from_settings(Settings.from_env(env))
    asyncio.run(
        filer(
            bootstrap,
            source,
            target,
            FileStore(Path(store)),
            Keyring.from_file(Path(keyring)),
            config,
        )
    )


async def filer(
    bootstrap: str, source: str, target: str, store: FileStore, keyring: Keyring, config: DmpConfig
) -> None:
    """File every reference of ``source`` at the DMP, a status on ``target``; until killed.

    A batch's patients are filed concurrently, one patient's documents in order."""
    inbox, out, client = (
        consumer(bootstrap, source, f"filer-{source}"),
        producer(bootstrap),
        DmpClient(config),
    )
    await inbox.start()
    await out.start()
    try:
        while True:
            batches = await inbox.getmany(timeout_ms=500)
            by_patient: dict[bytes, list[ConsumerRecord[Any, Any]]] = defaultdict(list)
            for m in (m for b in batches.values() for m in b):
                by_patient[m.key].append(m)

            async def file_in_order(records: list[ConsumerRecord[Any, Any]]) -> None:
                for m in records:
                    status = await file_one(m.value, store, keyring, client)
                    await (await out.send(target, key=m.key, value=status))

            await asyncio.gather(*(file_in_order(r) for r in by_patient.values()))
            if by_patient:
                await inbox.commit()
    finally:
        await client.close()
        await out.stop()
        await inbox.stop()


async def file_one(value: bytes, store: FileStore, keyring: Keyring, client: DmpClient) -> bytes:
    """Fetch, open and file one document; its status record."""
    record = json.loads(value)
    ref = BodyRef.from_record(record["ref"])
    content = open_body(keyring, await store.get(ref.store_key), ref, event_id=record["event"])
    now = datetime.now(UTC)
    entry = document_entry(content, visibility_flags(None, now))
    submission = Submission(entry.unique_id, record["patient"], "", content, entry)
    answer = await client.file(submission)
    return json.dumps({"event": record["event"], "outcome": answer.status}).encode()
