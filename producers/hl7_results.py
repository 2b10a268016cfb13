"""Structured lab results in an ORU^R01: the OBX segments that are not documents (pure).

Each result OBX gives a :class:`~streams.lab_results.LabResult` with the
laboratory's local code (OBX-3), the value (OBX-5) typed by OBX-2, the unit
(OBX-6), the reference range (OBX-7), the interpretation (OBX-8) and the
observation time (OBX-14). The transcode stage maps the local codes to LOINC
with the laboratory's catalogue and builds the CR-BIO N3.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from producers.hl7_segments import Segment
from streams.lab_results import LabResult, ValueType

VALUE_TYPES: Final = {
    "NM": ValueType.NUMERIC,
    "SN": ValueType.NUMERIC,
    "ST": ValueType.TEXT,
    "TX": ValueType.TEXT,
    "FT": ValueType.TEXT,
    "CE": ValueType.CODED,
    "CWE": ValueType.CODED,
}
_NUMBER: Final = re.compile(r"^[<>]?=?\s*-?\d+(?:[.,]\d+)?$")


def is_result(obx: Segment) -> bool:
    return obx.get(2) in VALUE_TYPES and obx.get(3, 3).upper() != "METADMPMSS"


def _value(obx: Segment, kind: ValueType) -> str:
    if kind is ValueType.CODED:
        return obx.render(5)
    if obx.get(2) == "SN":  # structured numeric: comparator^number
        return (obx.get(5, 1) + obx.get(5, 2)).strip()
    return obx.get(5)


def lab_result(obx: Segment) -> LabResult:
    kind = VALUE_TYPES[obx.get(2)]
    if not obx.get(3, 1):
        raise obx.error(3, "a result OBX needs the laboratory's code of the exam in OBX-3", "101")
    value = _value(obx, kind)
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
    return tuple(lab_result(s) for s in obx if is_result(s))
