"""A PDF from a producer becomes a CI-SIS CDA R2 N1 (pure).

The CDA gets its own id: ``2.25.<UUID as integer>`` (the ISO/ITU arc for
UUID-based OIDs), derived from the producer's document id, so that a retry
builds the same id and the DMP recognises a second filing. The professional
who sent it (HL7 PRT SB) is its author and legal authenticator; a PDF without
one cannot become a CDA and is refused with that reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from relais.contracts import Record
from streams.cda_build import build_n1
from streams.cda_model import DocumentHeader, Organisation, PatientHeader, Person
from streams.stage import StageFailure

PS_ROOT = "1.2.250.1.71.4.2.1"
ORG_ROOT = "1.2.250.1.71.4.2.2"
PARIS = ZoneInfo("Europe/Paris")
_IDS = uuid.UUID("0d5c8f1e-3a7b-4c2e-9f61-8b4a2d7e5c30")


class WrapFailure(StageFailure):
    reason_code = "pdf-not-wrappable"


def cda_id_for(unique_id: str) -> str:
    return f"2.25.{uuid.uuid5(_IDS, unique_id).int}"


def hl7_time(moment: datetime) -> str:
    return moment.astimezone(PARIS).strftime("%Y%m%d%H%M%S%z")


def _people(record: Record) -> tuple[Person, Organisation]:
    author = record["source"].get("author")
    if not author or not author.get("organisation_id"):
        raise WrapFailure(
            "a PDF needs its sending professional and organisation (PRT SB, PRT-5 and PRT-8) "
            "to become a CDA; add them to the message"
        )
    person = Person(PS_ROOT, author["person_id"], author.get("family"), author.get("given"), None)
    organisation = Organisation(ORG_ROOT, author["organisation_id"], record["source"]["facility"])
    return person, organisation


def document_header(record: Record) -> DocumentHeader:
    """The header of a CDA Relais builds for ``record``: its id, type, actors, times."""
    person, organisation = _people(record)
    document = record["document"]
    doc_id = cda_id_for(document["unique_id"])
    when = hl7_time(record["submitted_at"] or datetime.now(UTC))
    parent = document.get("parent_unique_id")
    return DocumentHeader(
        id_root=doc_id,
        id_extension=None,
        set_id_root=doc_id,
        set_id_extension=None,
        version=1,
        type_code=document["type_code"],
        type_display=document["type_label"],
        title=document["type_label"],
        effective_time=when,
        author=person,
        author_org=organisation,
        custodian=organisation,
        legal_authenticator=person,
        authored_at=when,
        replaces=cda_id_for(parent) if parent else None,
    )


def patient_header(traits: Mapping[str, Any]) -> PatientHeader:
    return PatientHeader(
        ins=str(traits["ins"]),
        ins_oid=str(traits["ins_oid"]),
        birth_name=str(traits.get("birth_name") or ""),
        given_names=str(traits.get("given_names") or ""),
        birth_date=str(traits.get("birth_date") or ""),
        sex=str(traits.get("sex") or ""),
        birthplace_code=traits.get("birthplace_code") or None,
    )


def wrap_pdf(record: Record, pdf: bytes, traits: Mapping[str, Any]) -> tuple[bytes, str]:
    """The N1 CDA of ``pdf`` and its id."""
    if not pdf.startswith(b"%PDF-"):
        raise WrapFailure("the document says application/pdf but is not a PDF")
    header = document_header(record)
    return build_n1(header, patient_header(traits), pdf), header.id_root
