"""`relais publish PATH...` against the real broker: mixed files, summary, exit code."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from ops.demo.samples import DOMINIQUE, LAB, LETTER, SARAH_LOU, cda, sample
from ops.localstack import LocalStack
from relais.contracts import Codec
from relais.topic_admin import ensure_topics
from relais.topics import SUBMITTED


async def submitted(bootstrap: str, topic: str, count: int) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[dict] = []
    try:
        for _ in range(60):
            batches = await consumer.getmany(timeout_ms=300)
            found += [Codec().decode(m.value)[1] for b in batches.values() for m in b]
            if len(found) >= count:
                break
    finally:
        await consumer.stop()
    return found


async def test_publish_mixed_files(stack: LocalStack, tmp_path: Path) -> None:
    prefix = f"p{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.broker.bootstrap, prefix)
    (tmp_path / "lab.hl7").write_bytes(sample(LAB, DOMINIQUE, 1))
    (tmp_path / "letter.xml").write_bytes(cda(LETTER, SARAH_LOU, "1.2.250.1.999.1.77", "texte"))
    (tmp_path / "letter.json").write_text(
        json.dumps({"sector": "HOSPITAL", "identity_reliability": "QUAL"})
    )
    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    (tmp_path / "scan.json").write_text(
        json.dumps(
            {
                "sector": "RADIOLOGY",
                "document": {
                    "type_code": "18748-4",
                    "type_label": "CR d'imagerie",
                    "unique_id": "1.2.250.1.999.1.78",
                },
                "patient": {
                    "ins": DOMINIQUE.ins,
                    "ins_oid": "1.2.250.1.213.1.4.10",
                    "birth_name": DOMINIQUE.family,
                    "given_names": DOMINIQUE.given,
                    "birth_date": DOMINIQUE.birth_date,
                    "sex": DOMINIQUE.sex,
                },
            }
        )
    )
    (tmp_path / "bad.hl7").write_bytes(b"MSH|^~\\&|A|B|C|D|2026||XYZ^Q01|1|P|2.5\r")
    env = {
        **os.environ,
        "RELAIS_BOOTSTRAP_SERVERS": stack.broker.bootstrap,
        "RELAIS_TOPIC_PREFIX": prefix,
        "RELAIS_KEYRING_FILE": str(stack.work_dir / "keyring.json"),
    }
    files = [str(tmp_path / n) for n in ("lab.hl7", "letter.xml", "scan.pdf", "bad.hl7")]
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ops", "publish", *files],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "3 file(s) accepted (3 event(s)), 1 rejected" in result.stdout
    assert "REJECTED" in result.stderr
    assert "bad.hl7" in result.stderr
    assert "MSH-9" in result.stderr
    records = await submitted(stack.broker.bootstrap, SUBMITTED.name(prefix), 3)
    kinds = sorted((r["sector"], r["document"]["media_type"]) for r in records)
    assert kinds == [
        ("HOSPITAL", "text/xml"),
        ("LAB", "text/xml"),
        ("RADIOLOGY", "application/pdf"),
    ]
