"""Structured lab results in an ORU^R01: the OBX segments that are not documents (pure).

Each result OBX gives a :class:`~domain.lab_results.LabResult` with the
laboratory's local code (OBX-3), the value (OBX-5) typed by OBX-2, the unit
(OBX-6), the reference range (OBX-7), the interpretation (OBX-8) and the
observation time (OBX-14). The transcode stage maps the local codes to LOINC
with the laboratory's catalogue and builds the CR-BIO N3.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from domain.lab_results import LabResult, ValueType
from producers.hl7.segments import Segment

VALUE_TYPES: Final = {
    "NM": ValueType.NUMERIC,
    "SN": ValueType.NUMERIC,
    "ST": ValueType.TEXT,
    "TX": ValueType.TEXT,
    "FT": ValueType.TEXT,
    "CE": ValueType.CODED,
    "CWE": ValueType.CODED,
    "DT": ValueType.TEXT,
    "TS": ValueType.TEXT,
    "TM": ValueType.TEXT,
    "DTM": ValueType.TEXT,
    "NA": ValueType.TEXT,
}
_NUMBER: Final = re.compile(r"^[<>]?=?\s*-?\d+(?:[.,]\d+)?$")


def _sn(obx: Segment) -> tuple[str, ValueType]:
    """Structured numeric: <comparator>^<num1>[^<separator>^<num2>]."""
    comparator, first, separator, second = (obx.get(5, c) for c in (1, 2, 3, 4))
    if separator or second:  # a ratio (1:128) or a range (10-20): kept whole, as text
        return f"{comparator}{first}{separator}{second}".strip(), ValueType.TEXT
    return f"{comparator}{first}".strip(), ValueType.NUMERIC


def _value(obx: Segment, kind: ValueType) -> tuple[str, ValueType]:
    if kind is ValueType.CODED:
        return obx.render(5), kind
    if obx.get(2) == "SN":
        return _sn(obx)
    lines = [obx.get(5, rep=r) for r in range(1, len(obx.reps(5)) + 1)]
    return "\n".join(line for line in lines if line), kind


def lab_result(obx: Segment) -> LabResult:
    if not obx.get(3, 1):
        raise obx.error(3, "a result OBX needs the laboratory's code of the exam in OBX-3", "101")
    value, kind = _value(obx, VALUE_TYPES[obx.get(2)])
    if not value:
        raise obx.error(5, "a result OBX needs its value in OBX-5", "101")
    if kind is ValueType.NUMERIC and not _NUMBER.match(value):
        raise obx.error(5, f"OBX-2 is {obx.get(2)} but OBX-5 is not a number", "102")
    return LabResult(
        local_code=obx.get(3, 1),
        local_label=obx.get(3, 2) or obx.get(3, 1),
        value=value,
        value_type=kind,
        unit=obx.get(6, 1) or None,
        reference_range=obx.get(7) or None,
        interpretation=obx.get(8) or None,
        observed_at=obx.get(14) or None,
    )


def lab_results(obx: Sequence[Segment]) -> tuple[LabResult, ...]:
    """Every result among an ORU's OBX but its MetaDMPMSS ones: documents (ED) are not
    results; an OBX of a value type Relais cannot carry is refused, never dropped."""
    for segment in obx:
        kind = segment.get(2)
        if kind not in VALUE_TYPES and kind != "ED":
            raise segment.error(2, f"OBX-2 value type '{kind}' is not supported for results", "102")
    return tuple(lab_result(s) for s in obx if s.get(2) in VALUE_TYPES)
