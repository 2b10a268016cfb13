"""Record contracts: the Avro schemas in ``schemas/`` and the one codec for them.

Every record on the bus is Avro *single-object encoded*: ``C3 01``, the 8-byte
CRC-64-AVRO fingerprint of the writer's schema (little endian), then the
binary body. A reader looks the fingerprint up among every schema Relais has
ever released and resolves the writer's data into the current schema, so old
records stay readable after a schema evolves.

Errors (one tree, foreign fastavro errors never escape)::

    ContractError
     ├── UnknownSchemaError   fingerprint not in the registry
     ├── CorruptRecordError   not single-object encoded, or the body does not decode
     ├── UnexpectedRecordError decoded fine, but not the type this topic carries
     └── EncodeError          a record does not match its schema (a bug in the caller)
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from schemas import SCHEMA_DIR

MAGIC: Final = b"\xc3\x01"
HEADER_SIZE: Final = len(MAGIC) + 8
NAMESPACE: Final = "fr.relais.v1"

Record = dict[str, Any]


class ContractError(Exception):
    """A record could not be encoded or decoded against the bus contracts."""

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        where = ""
        if topic is not None:
            where = f" (topic {topic}, partition {partition}, offset {offset})"
        super().__init__(message + where)
        self.reason = message


class UnknownSchemaError(ContractError):
    """The record names a schema fingerprint this version of Relais never knew."""


class CorruptRecordError(ContractError):
    """The bytes are not a single-object encoded Avro record of a known schema."""


class UnexpectedRecordError(ContractError):
    """The record decoded, but it is not of the type expected on this topic."""


class EncodeError(ContractError):
    """A record does not match its schema: a missing field or a wrong type."""


@dataclass(frozen=True)
class WriterSchema:
    name: str
    parsed: Any
    fingerprint: bytes
    raw: Any


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _parse_types(type_dir: Path) -> dict[str, Any]:
    """Parse the shared named types, in whatever order their references allow."""
    pending = {p: _read_json(p) for p in sorted(type_dir.glob("*.avsc"))}
    named: dict[str, Any] = {}
    while pending:
        progressed = False
        for path, raw in list(pending.items()):
            try:
                parse_schema(raw, named_schemas=named)
            except fastavro.schema.UnknownType:
                continue
            del pending[path]
            progressed = True
        if not progressed:
            names = ", ".join(p.name for p in pending)
            raise ContractError(f"schemas reference unknown types: {names}")
    return named


def fingerprint_of(parsed: Any) -> bytes:
    """The CRC-64-AVRO fingerprint (little endian, as single-object encoding writes it)."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def _full_name(raw: Mapping[str, Any]) -> str:
    name = str(raw["name"])
    return name if "." in name else f"{raw.get('namespace', NAMESPACE)}.{name}"


def standalone(raw: Any, types: Mapping[str, Any], defined: set[str] | None = None) -> Any:
    """``raw`` with each shared named type defined at its first use, referenced after.

    The result parses on its own (no ``types/`` needed): what ``released/`` stores.
    """
    seen = set() if defined is None else defined
    if isinstance(raw, str):
        full = raw if "." in raw else f"{NAMESPACE}.{raw}"
        if full in types and full not in seen:
            return standalone(types[full], types, seen)
        return raw
    if isinstance(raw, list):
        return [standalone(branch, types, seen) for branch in raw]
    out = dict(raw)
    if out.get("type") in {"record", "enum", "fixed"}:
        out["name"] = _full_name(out)
        out.pop("namespace", None)
        seen.add(out["name"])
    if out.get("type") == "record":
        out["fields"] = [{**f, "type": standalone(f["type"], types, seen)} for f in out["fields"]]
    elif out.get("type") == "array":
        out["items"] = standalone(out["items"], types, seen)
    elif out.get("type") == "map":
        out["values"] = standalone(out["values"], types, seen)
    elif isinstance(out.get("type"), (dict, list)) or out.get("type") in types:
        out["type"] = standalone(out["type"], types, seen)
    return out


class SchemaRegistry:
    """The current schema of each record type plus every released writer schema."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        named = _parse_types(schema_dir / "types")
        self.types = {
            _full_name(raw): raw
            for raw in (_read_json(p) for p in sorted((schema_dir / "types").glob("*.avsc")))
        }
        self.current: dict[str, WriterSchema] = {}
        for path in sorted((schema_dir / "records").glob("*.avsc")):
            raw = standalone(_read_json(path), self.types)
            parsed: Any = parse_schema(raw, named_schemas=dict(named))
            short = parsed["name"].rsplit(".", 1)[-1]
            self.current[short] = WriterSchema(short, parsed, fingerprint_of(parsed), raw)
        self.by_fingerprint: dict[bytes, WriterSchema] = {
            w.fingerprint: w for w in self.current.values()
        }
        for w in self.released(schema_dir / "released"):
            self.by_fingerprint.setdefault(w.fingerprint, w)

    @staticmethod
    def released(released_dir: Path) -> Iterator[WriterSchema]:
        """Frozen schemas, named ``<Record>.<n>.avsc``."""
        for path in sorted(released_dir.glob("*.avsc")):
            raw = _read_json(path)
            parsed: Any = parse_schema(raw, named_schemas={})
            short = parsed["name"].rsplit(".", 1)[-1]
            yield WriterSchema(short, parsed, fingerprint_of(parsed), raw)

    def schema(self, name: str) -> WriterSchema:
        try:
            return self.current[name]
        except KeyError:
            known = ", ".join(sorted(self.current))
            raise EncodeError(f"no record type {name!r}; known: {known}") from None


class Codec:
    """Encode and decode bus records with Avro single-object encoding."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or SchemaRegistry()

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        schema = self.registry.schema(name)
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(schema.fingerprint)
        try:
            fastavro.schemaless_writer(
                out, schema.parsed, dict(record), strict=True, strict_allow_default=True
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(f"{name} record does not match its schema: {exc}") from None
        return out.getvalue()

    def decode(
        self,
        data: bytes | None,
        *,
        expected: str | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> tuple[str, Record]:
        """Return ``(record type, record)``; raise a :class:`ContractError` naming the place."""
        place = _Place(topic, partition, offset)
        if not data or len(data) < HEADER_SIZE or not data.startswith(MAGIC):
            raise place.error(CorruptRecordError, "not an Avro single-object encoded record")
        writer = self._writer(data[len(MAGIC) : HEADER_SIZE], place)
        reader = self.registry.current.get(writer.name, writer)
        if expected is not None and writer.name != expected:
            raise place.error(
                UnexpectedRecordError, f"expected a {expected} record, got a {writer.name}"
            )
        return writer.name, _body(data[HEADER_SIZE:], writer, reader, place)

    def _writer(self, fp: bytes, place: _Place) -> WriterSchema:
        """The schema that wrote a record, by the fingerprint in its header."""
        writer = self.registry.by_fingerprint.get(fp)
        if writer is None:
            raise place.error(
                UnknownSchemaError,
                f"unknown schema fingerprint {fp.hex()}: written by a newer or foreign "
                "producer; upgrade this reader or dead-letter the record",
            )
        return writer


@dataclass(frozen=True)
class _Place:
    """Where a record being decoded was read, for the error to name."""

    topic: str | None
    partition: int | None
    offset: int | None

    def error(self, kind: type[ContractError], message: str) -> ContractError:
        return kind(message, topic=self.topic, partition=self.partition, offset=self.offset)


def _body(data: bytes, writer: WriterSchema, reader: WriterSchema, place: _Place) -> Record:
    """The body written with ``writer``'s schema, resolved into ``reader``'s."""
    body = io.BytesIO(data)
    try:
        record = fastavro.schemaless_reader(body, writer.parsed, reader.parsed)
    except Exception as exc:  # fastavro raises bare EOFError/ValueError/... on bad bytes
        raise place.error(
            CorruptRecordError, f"{writer.name} body does not decode ({type(exc).__name__})"
        ) from None
    if body.read(1):
        raise place.error(CorruptRecordError, f"{writer.name} body has trailing bytes")
    if not isinstance(record, dict):
        raise place.error(CorruptRecordError, f"{writer.name} body is not a record")
    return record
