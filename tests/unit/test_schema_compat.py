"""Every released schema stays readable by the current one (backward compatibility)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ops.schema_compat import check_registry, problems
from relais.contracts import SchemaRegistry
from schemas import SCHEMA_DIR

REGISTRY = SchemaRegistry()


def test_every_record_type_is_released() -> None:
    released = {w.name for w in SchemaRegistry.released(SCHEMA_DIR / "released")}
    assert released == set(REGISTRY.current), "run `relais schemas freeze` and commit"


def test_current_schemas_read_every_released_schema() -> None:
    report = check_registry(REGISTRY, SCHEMA_DIR / "released")
    assert report, "no released schema found"
    broken = {name: found for name, found in report.items() if found}
    assert broken == {}


def _current(name: str) -> Any:
    return copy.deepcopy(REGISTRY.schema(name).raw)


def _field(schema: Any, name: str) -> Any:
    return next(f for f in schema["fields"] if f["name"] == name)


def test_adding_a_field_without_default_breaks() -> None:
    old = _current("DeliveryStatus")
    new = _current("DeliveryStatus")
    new["fields"].append({"name": "operator", "type": "string"})
    assert problems(new, old) == ["operator: new field has no default"]
    new["fields"][-1]["default"] = ""
    assert problems(new, old) == []


def test_changing_a_field_type_breaks() -> None:
    old = _current("DeliveryStatus")
    new = _current("DeliveryStatus")
    _field(new, "attempt")["type"] = "string"
    assert problems(new, old) == ["attempt: type changed from int to string"]
    _field(new, "attempt")["type"] = "long"  # int -> long is a legal promotion
    assert problems(new, old) == []


def test_removing_an_enum_symbol_breaks_unless_the_enum_has_a_default() -> None:
    old = _current("DeliveryStatus")
    new = _current("DeliveryStatus")
    enum = _field(new, "outcome")["type"]
    enum["symbols"].remove("RETRYING")
    assert problems(new, old) == ["outcome: enum symbols ['RETRYING'] removed and no enum default"]
    enum["default"] = "REJECTED"
    assert problems(new, old) == []


def test_nested_changes_are_found_with_their_path() -> None:
    old = _current("DocumentSubmitted")
    new = _current("DocumentSubmitted")
    # The Envelope type is defined at its first use (patient.identity), referenced after.
    envelope = _field(_field(new, "patient")["type"], "identity")["type"]
    envelope["fields"].append({"name": "algorithm", "type": "string"})
    found = problems(new, old)
    assert "patient.identity.algorithm: new field has no default" in found
    # inside a union (Document.content: Envelope | BodyRef) the changed branch matches no more
    assert "document.content: writer type record matches no branch of the reader's union" in found


def test_making_a_field_optional_is_compatible_but_not_the_reverse() -> None:
    old = _current("AuditEvent")
    new = _current("AuditEvent")
    _field(new, "outcome")["type"] = ["null", "string"]
    assert problems(new, old) == []
    assert problems(old, new) != []


@pytest.mark.parametrize("name", sorted(REGISTRY.current))
def test_renaming_a_record_breaks(name: str) -> None:
    old = _current(name)
    new = _current(name)
    new["name"] = "Renamed"
    assert problems(new, old)
