"""The codec: single-object encoding, typed errors, golden records."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import pytest
from fastavro.utils import generate_many
from hypothesis import given
from hypothesis import strategies as st

from relais.contracts import (
    MAGIC,
    Codec,
    CorruptRecordError,
    EncodeError,
    SchemaRegistry,
    UnexpectedRecordError,
    UnknownSchemaError,
    fingerprint_of,
)
from schemas import SCHEMA_DIR

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden"
CODEC = Codec()
RECORD_TYPES = sorted(CODEC.registry.current)


def test_every_bus_record_type_has_a_schema() -> None:
    assert set(RECORD_TYPES) >= {
        "DocumentSubmitted",
        "IdentityQualified",
        "DocumentReady",
        "DeliveryRequest",
        "DeliveryStatus",
        "DeadLetter",
        "AuditEvent",
    }


@pytest.mark.parametrize("name", RECORD_TYPES)
def test_generated_records_round_trip(name: str) -> None:
    schema = CODEC.registry.schema(name)
    for record in generate_many(schema.parsed, 25):
        data = CODEC.encode(name, record)
        assert data[:2] == MAGIC
        assert data[2:10] == schema.fingerprint
        decoded_name, decoded = CODEC.decode(data, expected=name)
        assert decoded_name == name
        assert CODEC.encode(name, decoded) == data


def _audit(detail: str | None = "ok") -> dict[str, object]:
    return {
        "audit_id": "a-1",
        "event_id": "e-1",
        "at": datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        "component": "identity",
        "action": "IDENTITY_DECIDED",
        "outcome": "QUAL",
        "document_unique_id": "1.2.250.1.999.1.1",
        "detail": detail,
        "facility": None,
        "application": None,
        "message_control_id": None,
        "type_code": None,
        "operator": None,
    }


def test_unknown_fingerprint_names_topic_and_offset() -> None:
    data = bytearray(CODEC.encode("AuditEvent", _audit()))
    data[2:10] = b"\x00" * 8
    with pytest.raises(UnknownSchemaError) as info:
        CODEC.decode(bytes(data), topic="relais.audit.v1", partition=2, offset=41)
    assert info.value.topic == "relais.audit.v1"
    assert info.value.offset == 41
    assert "relais.audit.v1" in str(info.value)
    assert "partition 2, offset 41" in str(info.value)


@pytest.mark.parametrize(
    "data", [b"", b"{json: 1}", MAGIC, MAGIC + b"\x01" * 7, b"\xc3\x02" + b"\x00" * 20]
)
def test_not_single_object_encoded_is_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptRecordError, match="offset 7"):
        CODEC.decode(data, topic="t", partition=0, offset=7)


def test_none_value_is_corrupt() -> None:
    with pytest.raises(CorruptRecordError):
        CODEC.decode(None, topic="t", partition=0, offset=0)


def test_truncated_and_padded_bodies_are_corrupt() -> None:
    data = CODEC.encode("AuditEvent", _audit("x" * 40))
    with pytest.raises(CorruptRecordError, match="does not decode"):
        CODEC.decode(data[:-5])
    with pytest.raises(CorruptRecordError, match="trailing"):
        CODEC.decode(data + b"\x00")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(noise: bytes) -> None:
    header = MAGIC + CODEC.registry.schema("DeliveryStatus").fingerprint
    for data in (noise, header + noise):
        with contextlib.suppress(CorruptRecordError, UnknownSchemaError):
            CODEC.decode(data)


def test_wrong_record_type_on_a_topic() -> None:
    data = CODEC.encode("AuditEvent", _audit())
    with pytest.raises(UnexpectedRecordError, match="expected a DeadLetter"):
        CODEC.decode(data, expected="DeadLetter")


def test_encode_rejects_a_record_missing_a_field() -> None:
    record = _audit()
    del record["component"]
    with pytest.raises(EncodeError, match="AuditEvent"):
        CODEC.encode("AuditEvent", record)
    with pytest.raises(EncodeError, match="no record type"):
        CODEC.encode("Nope", record)


def test_golden_record_still_decodes() -> None:
    """Bytes written by release 1 must stay readable by every later reader."""
    golden = GOLDEN / "AuditEvent.1.bin"
    name, record = CODEC.decode(golden.read_bytes(), expected="AuditEvent")
    assert name == "AuditEvent"
    assert record["detail"] == "golden"
    assert record["action"] == "IDENTITY_DECIDED"


def test_old_writer_schema_resolves_into_the_current_reader(tmp_path: Path) -> None:
    """A record written with an older schema (one field fewer) decodes with defaults."""
    released = tmp_path / "released"
    released.mkdir()
    old = copy.deepcopy(CODEC.registry.schema("AuditEvent").raw)
    old["fields"] = [f for f in old["fields"] if f["name"] != "detail"]
    (released / "AuditEvent.0.avsc").write_text(json.dumps(old))
    schema_dir = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR / "types", schema_dir / "types")
    shutil.copytree(SCHEMA_DIR / "records", schema_dir / "records")
    shutil.copytree(released, schema_dir / "released")
    codec = Codec(SchemaRegistry(schema_dir))
    parsed_old = fastavro.parse_schema(old)
    out = io.BytesIO()
    record = _audit()
    del record["detail"]
    fastavro.schemaless_writer(out, parsed_old, record)
    data = MAGIC + fingerprint_of(parsed_old) + out.getvalue()
    name, decoded = codec.decode(data)
    assert name == "AuditEvent"
    assert decoded["detail"] is None
    assert decoded["component"] == "identity"
