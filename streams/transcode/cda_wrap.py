"""A PDF from a producer becomes a CI-SIS CDA R2 N1 (pure).

The CDA gets its own id: ``2.25.<UUID as integer>`` (the ISO/ITU arc for
UUID-based OIDs), derived from the producer's document id, so that a retry
builds the same id and the DMP recognises a second filing; corrections get a
new id in the same series (:mod:`streams.transcode.document_series`). The professional
who sent it (HL7 PRT SB) is its author and legal authenticator; a PDF without
one cannot become a CDA and is refused with that reason. The healthcare
facility type and practice setting follow the sending sector (JDV_J02 /
JDV_J04); the patient's local ids (IPP) with an OID authority join the INS in
``recordTarget``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from domain.cda_model import DocumentHeader, Organisation, PatientHeader, Person
from domain.hl7_time import PARIS
from relais.contracts import Record
from relais.deadletter import StageFailure
from streams.transcode.cda_build import build_n1
from streams.transcode.document_series import Version, cda_id_for

PS_ROOT = "1.2.250.1.71.4.2.1"
ORG_ROOT = "1.2.250.1.71.4.2.2"
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")

#: Sending sector -> (healthcareFacilityTypeCode JDV_J02, practiceSettingCode JDV_J04).
SECTOR_SETTINGS: Final[Mapping[str, tuple[tuple[str, str], tuple[str, str]]]] = {
    "HOSPITAL": (
        ("SA01", "Etablissement public de santé"),
        ("ETABLISSEMENT", "Etablissement de santé"),
    ),
    "LAB": (("SA25", "Laboratoire de biologie médicale"), ("AMBULATOIRE", "Ambulatoire")),
    "RADIOLOGY": (("SA08", "Cabinet de groupe"), ("AMBULATOIRE", "Ambulatoire")),
    "CITY": (("SA07", "Cabinet individuel"), ("AMBULATOIRE", "Ambulatoire")),
}
OTHER_SETTING: Final = (("SA30", "Autre établissement sanitaire"), ("AMBULATOIRE", "Ambulatoire"))
#: TRE_G15 profession/specialty of the validating biologist of a CR-BIO (ANS CR-BIO rules).
BIOLOGIST: Final = ("G15_10/SM03", "Médecin - Biologie médicale (SM)")


class WrapFailure(StageFailure):
    reason_code = "pdf-not-wrappable"


def hl7_time(moment: datetime) -> str:
    return moment.astimezone(PARIS).strftime("%Y%m%d%H%M%S%z")


def _people(record: Record, profession: tuple[str, str] | None) -> tuple[Person, Organisation]:
    author = record["source"].get("author")
    if not author or not author.get("organisation_id"):
        raise WrapFailure(
            "a PDF needs its sending professional and organisation (PRT SB, PRT-5 and PRT-8) "
            "to become a CDA; add them to the message"
        )
    person = Person(
        PS_ROOT, author["person_id"], author.get("family"), author.get("given"), None, profession
    )
    organisation = Organisation(ORG_ROOT, author["organisation_id"], record["source"]["facility"])
    return person, organisation


def first_version(record: Record) -> Version:
    """The version of a document with no history: its own series, version 1."""
    doc_id = cda_id_for(record["document"]["unique_id"])
    return Version(doc_id, doc_id, 1, None)


def document_header(
    record: Record, version: Version, *, profession: tuple[str, str] | None = None
) -> DocumentHeader:
    """The header of a CDA Relais builds for ``record``: its id, type, actors, times."""
    person, organisation = _people(record, profession)
    document = record["document"]
    when = hl7_time(record["submitted_at"] or datetime.now(UTC))
    facility_type, practice = SECTOR_SETTINGS.get(record["sector"], OTHER_SETTING)
    return DocumentHeader(
        id_root=version.cda_id,
        id_extension=None,
        set_id_root=version.set_id,
        set_id_extension=None,
        version=version.number,
        type_code=document["type_code"],
        type_display=document["type_label"],
        title=document["type_label"],
        effective_time=when,
        author=person,
        author_org=organisation,
        custodian=organisation,
        legal_authenticator=person,
        authored_at=when,
        replaces=version.replaces,
        facility_type=facility_type,
        practice_setting=practice,
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
        local_ids=tuple(
            (str(authority), str(local_id))
            for local_id, authority in traits.get("local_ids") or ()
            if _OID.match(str(authority)) and local_id
        ),
    )


def wrap_pdf(
    record: Record, pdf: bytes, traits: Mapping[str, Any], version: Version | None = None
) -> tuple[bytes, str]:
    """The N1 CDA of ``pdf`` and its id (``version``: its place in its series)."""
    if not pdf.startswith(b"%PDF-"):
        raise WrapFailure("the document says application/pdf but is not a PDF")
    header = document_header(record, version or first_version(record))
    return build_n1(header, patient_header(traits), pdf), header.id_root
