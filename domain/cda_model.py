"""Typed inputs of a CI-SIS CDA R2 header (pure types, no XML here).

The builders in :mod:`streams.transcode.cda_build` turn these into a ``ClinicalDocument``;
the facts behind the defaults are in STANDARDS.md §1 and §3 (CI-SIS):

* a professional (PS) is identified by ``1.2.250.1.71.4.2.1`` + IdNat_PS
  (8 + RPPS, 0 + ADELI...), an organisation by ``1.2.250.1.71.4.2.2`` + IdNat_Struct
  (1 + FINESS, 3 + SIRET...);
* the healthcare facility type comes from JDV_J02 (code system
  ``1.2.250.1.71.4.2.4``), the practice setting from JDV_J04
  (``1.2.250.1.213.1.1.4.9``);
* times are HL7 TS in the producer's local time with its offset
  (``20240115103000+0100``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PS_ID_ROOT: Final = "1.2.250.1.71.4.2.1"  # IdNat_PS
ORG_ID_ROOT: Final = "1.2.250.1.71.4.2.2"  # IdNat_Struct
FACILITY_TYPE_OID: Final = "1.2.250.1.71.4.2.4"  # TRE_R02 / JDV_J02
PRACTICE_SETTING_OID: Final = "1.2.250.1.213.1.1.4.9"  # JDV_J04
PROFESSION_OID: Final = "1.2.250.1.213.1.1.4.5"  # TRE_G15 profession/specialty (author code)


@dataclass(frozen=True)
class Person:
    """A health professional: author, legal authenticator."""

    id_root: str  # PS_ID_ROOT for an IdNat_PS
    id_extension: str
    family: str | None
    given: str | None
    prefix: str | None
    #: profession/specialty (TRE_G15 code, display), e.g. ("G15_10/SM03", "Médecin - Biologie
    #: médicale (SM)"); rendered as ``assignedAuthor/code`` when known.
    profession: tuple[str, str] | None = None


@dataclass(frozen=True)
class Organisation:
    id_root: str  # ORG_ID_ROOT for an IdNat_Struct
    id_extension: str
    name: str


@dataclass(frozen=True)
class PatientHeader:
    """The patient as the CDA ``recordTarget`` carries it: the INS and its birth traits."""

    ins: str  # matricule INS, 15 characters
    ins_oid: str  # 1.2.250.1.213.1.4.8 / .9 / .10 (test) / .11 (demo)
    birth_name: str
    given_names: str  # all birth first names, space-separated; the first one is the "BR" given
    birth_date: str  # YYYYMMDD
    sex: str  # M / F
    birthplace_code: str | None  # COG (INSEE) of the birthplace
    local_ids: tuple[tuple[str, str], ...] = ()  # (root OID of the facility, IPP)


@dataclass(frozen=True)
class DocumentHeader:
    """Identity, type and actors of one document."""

    id_root: str
    id_extension: str | None
    set_id_root: str
    set_id_extension: str | None
    version: int  # versionNumber, > 0
    type_code: str  # LOINC document type (JDV_J07), e.g. 11502-2
    type_display: str
    title: str
    effective_time: str  # HL7 TS with offset
    author: Person
    author_org: Organisation
    custodian: Organisation
    legal_authenticator: Person
    authored_at: str  # HL7 TS with offset: author/time and legalAuthenticator/time
    confidentiality: str = "N"  # N / R / V (2.16.840.1.113883.5.25)
    language: str = "fr-FR"
    replaces: str | None = None  # id of the replaced document: root, or root.extension
    facility_type: tuple[str, str] = ("SA25", "Laboratoire de biologie médicale")
    practice_setting: tuple[str, str] = ("AMBULATOIRE", "Ambulatoire")
    service_start: str | None = None  # HL7 TS: documentationOf/serviceEvent/effectiveTime/low
    service_stop: str | None = None  # .../high


@dataclass(frozen=True)
class ImagingStudy:
    """The imaging act a CR-IMG N3 reports (CI-SIS IMG-CR-IMG 2024.01).

    The model requires, in each FR-DICOM-Acte-imagerie section, one FR-DICOM-Technique-imagerie
    entry (the act's code, its acquisition modality, its anatomical location: none of them may
    be a nullFlavor) and one FR-DICOM-Object-Catalog subsection. The study, series and SOP
    instance entry of the catalog is written when the series, the instance and its SOP class
    are known; otherwise the catalog names the study only.
    """

    #: the act, LOINC (JDV_CodesDocumentImagerie_CISIS), e.g. ("24627-2", "CT thorax")
    procedure: tuple[str, str]
    #: DICOM acquisition modality (JDV_ModaliteAcquisition_CISIS), e.g. ("CT", "Tomodensitométrie")
    modality: tuple[str, str]
    #: SNOMED CT anatomical location (JDV_LocalisationAnatomique_CISIS),
    #: e.g. ("302551006", "thorax entier")
    target_site: tuple[str, str]
    study_uid: str  # DICOM Study Instance UID (an OID)
    performed_at: str | None = None  # HL7 TS of the study; default: the service start
    series_uid: str | None = None
    sop_instance_uid: str | None = None
    #: SOP Class UID and its name, e.g. ("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage")
    sop_class: tuple[str, str] | None = None
