"""Backward compatibility of Avro schemas: can the new reader read old data?

Implements the resolution rules of the Avro specification ("Schema
Resolution") as a static check that names each problem, plus
:func:`freeze`, which snapshots the current schemas into ``schemas/released``
when they change, so the codec keeps decoding what was written before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relais.contracts import SchemaRegistry

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"])
    return str(schema)


def _name(schema: Any) -> str:
    return str(schema.get("name", "")) if isinstance(schema, dict) else ""


def _names(schema: Any) -> set[str]:
    names = {_name(schema)}
    if isinstance(schema, dict):
        names.update(schema.get("aliases", []))
    return {n.rsplit(".", 1)[-1] for n in names}


def _inline(schema: Any, named: dict[str, Any]) -> Any:
    """Replace references to named types by their definitions (our schemas are not recursive)."""
    if isinstance(schema, str):
        return named.get(schema, schema)
    if isinstance(schema, list):
        return [_inline(branch, named) for branch in schema]
    out = dict(schema)
    kind = out["type"]
    if kind == "record":
        out["fields"] = [{**f, "type": _inline(f["type"], named)} for f in out["fields"]]
    elif kind == "array":
        out["items"] = _inline(out["items"], named)
    elif kind == "map":
        out["values"] = _inline(out["values"], named)
    elif not isinstance(kind, str) or kind not in {"enum", "fixed"}:
        return {**out, "type": _inline(kind, named)}
    if "name" in out:
        named[str(out["name"])] = out
    return out


def _resolves(reader: Any, writer: Any) -> bool:
    return not _problems(reader, writer, "")


def problems(reader: Any, writer: Any) -> list[str]:
    """Every reason data written with ``writer`` cannot be read with ``reader``."""
    return _problems(_inline(reader, {}), _inline(writer, {}), "")


def _problems(reader: Any, writer: Any, path: str) -> list[str]:  # noqa: PLR0911 - a return per rule
    rk, wk = _kind(reader), _kind(writer)
    here = path or "<root>"
    if wk == "union":
        return [p for branch in writer for p in _problems(reader, branch, path)]
    if rk == "union":
        if any(_resolves(branch, writer) for branch in reader):
            return []
        return [f"{here}: writer type {wk} matches no branch of the reader's union"]
    if rk != wk and rk not in _PROMOTIONS.get(wk, set()):
        return [f"{here}: type changed from {wk} to {rk}"]
    if rk in {"record", "enum", "fixed"} and not (_names(reader) & _names(writer)):
        return [f"{here}: named type {_name(writer)} renamed to {_name(reader)} without alias"]
    if rk == "record":
        return _record_problems(reader, writer, path)
    if rk == "enum":
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            return [f"{here}: enum symbols {sorted(missing)} removed and no enum default"]
    if rk == "fixed" and reader["size"] != writer["size"]:
        return [f"{here}: fixed size changed"]
    if rk == "array":
        return _problems(reader["items"], writer["items"], f"{path}[]")
    if rk == "map":
        return _problems(reader["values"], writer["values"], f"{path}{{}}")
    return []


def _record_problems(reader: Any, writer: Any, path: str) -> list[str]:
    found: list[str] = []
    written = {f["name"]: f for f in writer["fields"]}
    for field in reader["fields"]:
        names = [field["name"], *field.get("aliases", [])]
        source = next((written[n] for n in names if n in written), None)
        where = f"{path}.{field['name']}" if path else field["name"]
        if source is None:
            if "default" not in field:
                found.append(f"{where}: new field has no default")
            continue
        found.extend(_problems(field["type"], source["type"], where))
    return found


def check_registry(registry: SchemaRegistry, released_dir: Path) -> dict[str, list[str]]:
    """Problems per released schema file, against the current schema of its record."""
    report: dict[str, list[str]] = {}
    for path in sorted(released_dir.glob("*.avsc")):
        old = json.loads(path.read_text(encoding="utf-8"))
        name = str(old["name"]).rsplit(".", 1)[-1]
        if name not in registry.current:
            report[path.name] = [f"record type {name} was removed"]
            continue
        current = registry.current[name].raw
        report[path.name] = problems(current, old)
    return report


def freeze(registry: SchemaRegistry, released_dir: Path) -> list[Path]:
    """Snapshot each current schema not yet released; return the files written."""
    released_dir.mkdir(parents=True, exist_ok=True)
    known = {w.fingerprint for w in SchemaRegistry.released(released_dir)}
    written: list[Path] = []
    for name, schema in sorted(registry.current.items()):
        if schema.fingerprint in known:
            continue
        version = len(list(released_dir.glob(f"{name}.*.avsc"))) + 1
        target = released_dir / f"{name}.{version}.avsc"
        target.write_text(json.dumps(schema.raw, indent=2) + "\n", encoding="utf-8")
        written.append(target)
    return written
