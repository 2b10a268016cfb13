"""Build the CR-BIO N3 of a lab report from its structured results (pure).

The producer sent the laboratory's results with its local codes and the PDF
of the report; each result is mapped to LOINC with the laboratory's current
catalogue (``relais catalogue report`` lists what is missing). A result whose
code is not mapped never disappears: it goes out with the laboratory's code
as a translation and no LOINC claim, as the CI-SIS CR-BIO rules allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.lab_results import (
    LOINC_WAITING_OID,
    CodedResult,
    LabResult,
    MappingStatus,
    decode_lab_report,
)
from relais.contracts import Record
from streams.transcode.cda_build import build_cr_bio_n3
from streams.transcode.cda_wrap import (
    BIOLOGIST,
    WrapFailure,
    document_header,
    first_version,
    patient_header,
)
from streams.transcode.document_series import Version
from streams.transcode.lab_catalogue import CatalogueStore, UnknownFacility, map_result
from streams.transcode.lab_codes import LoincTable, UcumUnits
from streams.transcode.lab_findings import NO_CATALOGUE, Finding, findings


@dataclass(frozen=True)
class LabReferences:
    """What mapping needs: each laboratory's catalogue, the LOINC-FR table, the UCUM list."""

    catalogues: CatalogueStore
    loinc: LoincTable
    ucum: UcumUnits


def _waiting(result: LabResult, ucum: UcumUnits) -> CodedResult:
    return CodedResult(
        result,
        result.local_code,
        LOINC_WAITING_OID,
        result.local_label,
        ucum.spelling(result.unit),
        MappingStatus.WAITING,
        ("no-catalogue",),
    )


def coded_results(
    results: tuple[LabResult, ...], facility: str, refs: LabReferences
) -> tuple[CodedResult, ...]:
    try:
        catalogue = refs.catalogues.current(facility)
    except UnknownFacility:
        return tuple(_waiting(r, refs.ucum) for r in results)
    return tuple(map_result(r, catalogue, refs.loinc, refs.ucum) for r in results)


def build_lab_report(
    record: Record,
    content: bytes,
    traits: Mapping[str, Any],
    refs: LabReferences | None,
    version: Version | None = None,
) -> tuple[bytes, str, tuple[CodedResult, ...]]:
    """The CR-BIO N3 (with the PDF copy), its id, and how each result was coded.

    The sending professional is the validating biologist: author and legal
    authenticator, with the biology profession code (TRE_G15).
    """
    if refs is None:
        raise WrapFailure(
            "lab reports need the LOINC table and the UCUM list: set RELAIS_LOINC_TABLE and "
            "RELAIS_UCUM_UNITS (and RELAIS_CATALOGUE_DIR for the laboratories' catalogues)"
        )
    try:
        results, pdf = decode_lab_report(content)
    except ValueError as exc:
        raise WrapFailure(str(exc)) from None
    coded = coded_results(results, record["source"]["facility"], refs)
    header = document_header(record, version or first_version(record), profession=BIOLOGIST)
    return build_cr_bio_n3(header, patient_header(traits), coded, pdf), header.id_root, coded


def traffic_findings(
    facility: str, coded: tuple[CodedResult, ...], refs: LabReferences
) -> list[Finding]:
    """What the catalogue report should hear about this report's results (no values)."""
    try:
        catalogue = refs.catalogues.current(facility)
    except UnknownFacility:
        return findings(facility, NO_CATALOGUE, coded, {})
    rows = (catalogue.row(item.result.local_code) for item in coded if item.problems)
    units = {row.local_code: row.unit for row in rows if row is not None}
    return findings(facility, catalogue.info.version, coded, units)
