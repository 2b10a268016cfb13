"""The code tables behind the DMP / XDS metadata of a document (facts, no logic).

Copied from the ANS publications named on each table (STANDARDS.md §3, §4):
the JDV value sets as published in IHE SVS XML (TestContenuCDA-3-0
``jeuxDeValeurs``) and the association tables (ASS) of the NOS
(ansforge/IG-terminologie-de-sante ``DM/input/fsh``). The project does not read
``../shared/data`` at run time: ``tests/unit/test_xds_metadata.py`` checks every
table that has an SVS file there against that file (OID, revision date, codes,
code systems, display names), so a new ANS release makes that test fail until
the table here is brought up to date. Tables without an SVS file there (J57,
J60, ASS_X16, ASS_A11, ASS_A12) say where they come from.

``complete=False`` marks a subset: the codes this project handles, each
justified in a comment; the rest of the published value set is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from domain.cda_model import FACILITY_TYPE_OID, PRACTICE_SETTING_OID
from domain.lab_results import LOINC_OID

HL7_CONFIDENTIALITY_OID: Final = "2.16.840.1.113883.5.25"
DMP_VISIBILITY_OID: Final = "1.2.250.1.213.1.1.4.13"  # MASQUE_PS, INVISIBLE_* (JDV_J08)
CLASS_OID: Final = "1.2.250.1.213.1.1.4.1"  # TRE_A03-ClasseDocument
IHE_FORMAT_OID: Final = "1.3.6.1.4.1.19376.1.2.3"  # TRE_A11-IheFormatCode
ANS_FORMAT_OID: Final = "1.2.250.1.213.1.1.4.2.282"  # TRE_A06-FormatCodeComplementaire
NON_PS_OID: Final = "1.2.250.1.213.1.1.4.6"  # EXP_PATIENT / SNR (documents not from a PS)
REFERENCE_ID_OID: Final = "1.2.250.1.213.1.1.4.347"  # referenceIdList types (JDV_J231)
GENDER_OID: Final = "2.16.840.1.113883.5.1"  # HL7 AdministrativeGender


@dataclass(frozen=True)
class Coded:
    """One XDS code: ``code`` in the code system ``scheme`` (an OID), with its display name."""

    code: str
    scheme: str
    display: str


@dataclass(frozen=True)
class ValueSet:
    """A published value set (or the subset of it this project handles)."""

    name: str  # the JDV name, as the SVS file of ../shared/data/jdv is named
    oid: str
    revision: str  # revision date of the copy, YYYY-MM-DD
    concepts: tuple[Coded, ...]
    complete: bool = True

    def find(self, code: str, scheme: str) -> Coded | None:
        """The concept with this code in this code system, or None."""
        for concept in self.concepts:
            if concept.code == code and concept.scheme == scheme:
                return concept
        return None


def _concepts(scheme: str, displays: Mapping[str, str]) -> tuple[Coded, ...]:
    return tuple(Coded(code, scheme, display) for code, display in displays.items())


#: JDV_J07-XdsTypeCode-CISIS, OID 1.2.250.1.213.1.1.5.471, revision 2024-09-27 (subset).
#: The LOINC document types this bus carries: CR-BIO, CR-IMG and LDL-SES (STANDARDS.md §3),
#: the hospital documents passed through (CRH, urgences, synthèse, consultation, opératoire,
#: ACP, génétique, transfert, anesthésie, accouchement, RCP, actes) and the TROD result.
TYPE_CODES: Final = ValueSet(
    "JDV_J07_XdsTypeCode_CISIS",
    "1.2.250.1.213.1.1.5.471",
    "2024-09-27",
    _concepts(
        LOINC_OID,
        {
            "11502-2": "CR d'examens biologiques",
            "18748-4": "CR d'imagerie médicale",
            "11490-0": "Lettre de liaison à la sortie d'un établissement de soins",
            "34112-3": "CR hospitalier (séjour)",
            "15507-7": "CR de passage aux urgences",
            "60591-5": "Synthèse médicale",
            "11488-4": "CR ou fiche de consultation ou de visite",
            "34874-8": "CR opératoire",
            "60568-3": "CR d'anatomie et de cytologie pathologiques",
            "51969-4": "CR de génétique moléculaire",
            "18761-7": (
                "Note de transfert (dont lettre de liaison à l'entrée en établissement de soins)"
            ),
            "34133-9": "Synthèse d'épisode de soins",
            "77436-4": "CR d'anesthésie",
            "34749-2": "CR de consultation pré-anesthésique",
            "15508-5": "CR d'accouchement",
            "34794-8": "CR de réunion de concertation pluridisciplinaire",
            "70004-7": "CR d'acte diagnostique (autre)",
            "11505-5": "CR d'acte thérapeutique (autre)",
            "96173-0": "Test rapide d'orientation diagnostique",
        },
    ),
    complete=False,
)

#: JDV_J57-ClassCode-DMP, OID 1.2.250.1.213.1.1.5.6, version 20230922120000 (NOS FHIR
#: ValueSet; no SVS file in ../shared/data). The TRE_A03 part; the URN signature class
#: (urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1) belongs to the signature object, not to a document.
CLASS_CODES: Final = ValueSet(
    "JDV_J57_ClassCode_DMP",
    "1.2.250.1.213.1.1.5.6",
    "2023-09-22",
    _concepts(
        CLASS_OID,
        {
            "10": "Compte rendu",
            "11": "Synthèse",
            "31": "Imagerie médicale",
            "42": "Prescription",
            "43": "Dispensation",
            "44": "Plan de soins, protocole de soins",
            "45": "Traitement administré",
            "52": "Certificat, déclaration",
            "60": "Données de remboursement",
            "90": "Autres documents déposés par le patient",
            "95": "Document de gestion",
        },
    ),
    complete=False,
)

#: ASS_X16-CorrespondanceType-Classe-DMP, OID 1.2.250.1.213.1.1.5.587, version
#: 20240223120000: LOINC type -> TRE_A03 class, for the types of TYPE_CODES.
TYPE_CLASS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "11502-2": "10",
        "18748-4": "31",
        "11490-0": "10",
        "34112-3": "10",
        "15507-7": "10",
        "60591-5": "11",
        "11488-4": "10",
        "34874-8": "10",
        "60568-3": "10",
        "51969-4": "10",
        "18761-7": "11",
        "34133-9": "11",
        "77436-4": "10",
        "34749-2": "10",
        "15508-5": "10",
        "34794-8": "10",
        "70004-7": "10",
        "11505-5": "10",
        "96173-0": "52",
    }
)

#: JDV_J60-FormatCode-DMP, OID 1.2.250.1.213.1.1.5.8, version 20260928120000 (NOS FSH;
#: no SVS file in ../shared/data), subset. The codingScheme of each code is its code system
#: (TRE_A11 IHE / TRE_A06 ANS), as the ANS CDAHeaderToXDM.xsl writes it, not the JDV OID.
FORMAT_CODES: Final = ValueSet(
    "JDV_J60_FormatCode_DMP",
    "1.2.250.1.213.1.1.5.8",
    "2026-09-28",
    _concepts(
        IHE_FORMAT_OID,
        {
            "urn:ihe:lab:xd-lab:2008": "Compte rendu structuré d'examens de biologie médicale",
            "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013": (
                "Compte-rendu d'imagerie médicale"
            ),
            "urn:ihe:palm:apsr:2016": "CR d'anatomie et de cytologie pathologiques",
            "urn:ihe:iti:xds-sd:pdf:2008": "Document à corps non structuré en Pdf/A-1",
            "urn:ihe:iti:xds-sd:text:2008": "Document à corps non structuré en texte brut",
        },
    )
    + _concepts(
        ANS_FORMAT_OID,
        {
            "urn:asip:ci-sis:ldl-ses:2017": (
                "Lettre de Liaison à la sortie de l'établissement de santé"
            ),
            "urn:asip:ci-sis:ldl-ees:2017": (
                "Lettre de Liaison à l'entrée d'un établissement de santé"
            ),
            "urn:asip:ci-sis:vsm:2012": "Synthèse médicale",
        },
    ),
    complete=False,
)

#: ASS_A11-CorresModeleCDA-XdsFormatCode-CISIS (NOS, version 5.0.0): model templateId of a
#: structured CDA -> formatCode (subset: the models whose formats are in FORMAT_CODES).
MODEL_FORMATS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "1.3.6.1.4.1.19376.1.3.3": "urn:ihe:lab:xd-lab:2008",  # IHE XD-LAB
        "1.2.250.1.213.1.1.1.55": "urn:ihe:lab:xd-lab:2008",  # CR-BIO
        "1.2.250.1.213.1.1.1.45": "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013",  # CR-IMG
        "1.2.250.1.213.1.1.1.57": "urn:ihe:palm:apsr:2016",  # CR-ACP
        "1.2.250.1.213.1.1.1.29": "urn:asip:ci-sis:ldl-ses:2017",  # LDL-SES
        "1.2.250.1.213.1.1.1.21": "urn:asip:ci-sis:ldl-ees:2017",  # LDL-EES
        "1.2.250.1.213.1.1.1.13": "urn:asip:ci-sis:vsm:2012",  # VSM
    }
)

#: ASS_A12-CorresMediaTypeCDANonStructure-XdsFormatCode-CISIS (NOS): the mediaType of a
#: CDA N1 (nonXMLBody/text) -> formatCode (subset: PDF and plain text).
N1_FORMATS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "application/pdf": "urn:ihe:iti:xds-sd:pdf:2008",
        "text/plain": "urn:ihe:iti:xds-sd:text:2008",
    }
)

#: JDV_J08-XdsConfidentialityCode-CISIS, OID 1.2.250.1.213.1.1.5.463, revision 2020-04-24.
CONFIDENTIALITY_CODES: Final = ValueSet(
    "JDV_J08_XdsConfidentialityCode_CISIS",
    "1.2.250.1.213.1.1.5.463",
    "2020-04-24",
    _concepts(HL7_CONFIDENTIALITY_OID, {"N": "Normal", "R": "Restreint", "V": "Très restreint"})
    + _concepts(
        DMP_VISIBILITY_OID,
        {
            "INVISIBLE_PATIENT": "Non visible par le patient",
            "INVISIBLE_REPRESENTANTS_LEGAUX": "Non visible par les représentants légaux du patient",
            "MASQUE_PS": "Masqué aux professionnels de santé",
        },
    ),
)

#: MetaDMPMSS flag of the HL7 v2 message (STANDARDS.md §2) -> JDV_J08 code it adds.
FLAG_CONFIDENTIALITY: Final[Mapping[str, str]] = MappingProxyType(
    {
        "MASQUE_PS": "MASQUE_PS",
        "INVISIBLE_PATIENT": "INVISIBLE_PATIENT",
        "INVISIBLE_REP_LEGAUX": "INVISIBLE_REPRESENTANTS_LEGAUX",
    }
)

_NON_PS: Final = {
    "EXP_PATIENT": "Expression personnelle du patient",
    "SNR": "Service numérique référencé",
}

#: JDV_J04-XdsPracticeSettingCode-CISIS, OID 1.2.250.1.213.1.1.5.467, revision 2024-09-27.
PRACTICE_SETTINGS: Final = ValueSet(
    "JDV_J04_XdsPracticeSettingCode_CISIS",
    "1.2.250.1.213.1.1.5.467",
    "2024-09-27",
    _concepts(NON_PS_OID, _NON_PS)
    + _concepts(
        PRACTICE_SETTING_OID,
        {
            "AMBULATOIRE": "Ambulatoire",
            "AMO": "Organisme d'assurance maladie obligatoire",
            "DEPISTAGE": "Dépistage",
            "ESSMS": "Etablissement ou Service Social ou Médico-Social",
            "ETABLISSEMENT": "Etablissement de santé",
            "HAD": "Hospitalisation à domicile",
            "MAD": "Maintien à domicile",
            "PALLIATIF": "Soins palliatifs",
            "SAD": "Soins à domicile",
            "SAMU_SMUR": "SAMU/SMUR",
        },
    ),
)

#: JDV_J02-XdsHealthcareFacilityTypeCode-CISIS, OID 1.2.250.1.213.1.1.5.466, revision 2024-12-13.
FACILITY_TYPES: Final = ValueSet(
    "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS",
    "1.2.250.1.213.1.1.5.466",
    "2024-12-13",
    _concepts(NON_PS_OID, _NON_PS)
    + _concepts(
        FACILITY_TYPE_OID,
        {
            "SA01": "Etablissement public de santé",
            "SA02": "Hôpital militaire du Service de santé des armées",
            "SA03": "Etablissement privé PSPH",
            "SA04": "Etablissement privé non PSPH",
            "SA05": "Centre de santé",
            "SA06": "Autre structure du Service de santé des armées",
            "SA07": "Cabinet individuel",
            "SA08": "Cabinet de groupe",
            "SA09": "Exercice en société",
            "SA10": "Transporteur sanitaire",
            "SA12": "Etablissement de soins et prévention",
            "SA13": "Prévention et soins en entreprise",
            "SA14": "Etablissements scolaires, universitaires et de formation hors champ FINESS",
            "SA15": "PMI et Planification familiale",
            "SA16": "Etablissement pour personnes handicapées",
            "SA17": "Etablissement pour personnes âgées",
            "SA18": "Etablissement aide à la famille",
            "SA19": ("Etablissements FINESS de formation aux professions sanitaires et sociales"),
            "SA20": "Etablissement pour la protection de l'enfance",
            "SA21": "Etablissement d'hébergement et de réadaptation",
            "SA22": "Recherche",
            "SA23": "Assurance privée",
            "SA24": "Organisme de sécurité sociale",
            "SA25": "Laboratoire de biologie médicale",
            "SA26": "Ministère ou Service déconcentré",
            "SA27": "Collectivité territoriale",
            "SA28": "Association ou organisme humanitaire",
            "SA29": "Laboratoire d'analyses et de biologie médicale",
            "SA30": "Autre établissement sanitaire",
            "SA31": "Répartition et Distribution de médicaments et dispositifs médicaux",
            "SA32": (
                "Fabrication, Exploitation et Importation de médicaments et dispositifs médicaux"
            ),
            "SA33": "Pharmacie d'officine",
            "SA34": "Centre de dialyse",
            "SA35": "Para-pharmacie",
            "SA36": "Centre anti-cancer",
            "SA37": "Centre de transfusion sanguine",
            "SA38": "Pharmacie minière",
            "SA39": "Pharmacie mutualiste",
            "SA40": "Secteur privé, praticien hospitalier temps plein",
            "SA41": "Autre établissement du domaine social ou médico-social",
            "SA42": "Appareillage médical",
            "SA43": "Secteur non défini",
            "SA44": "Recrutement ou Gestion RH",
            "SA45": "Communication, Marketing, Consulting, Média",
            "SA46": (
                "Fabrication, Exploitation, Importation, Répartition, Distribution "
                "médicaments et dispositifs médicaux"
            ),
            "SA47": "Incendie et secours",
            "SA48": "Entreprise industrielle et tertiaire hors industrie pharmaceutique",
            "SA49": "Entité Outre-Mer",
            "SA50": "Permanence des soins ambulatoires hors cabinet",
            "SA51": "Structure de coopération avec autorisation de soins",
            "SA52": "Maison de santé ou Pôle de santé",
            "SA53": "Siège administratif d'un établissement de santé",
            "SA54": "Centre de dépistage et de prévention",
            "SA55": "Laboratoire pharmaceutique préparant et délivrant des allergènes",
            "SA56": "Propharmacie",
            "SA57": "Structure de coopération avec mission de coordination de soins",
            "SA58": "Entreprise de taxis",
            "SA59": "Laboratoire de biologie médicale hors catégorie standard",
            "SA60": "Centres médicaux SNCF",
            "SA61": "Structure Dispensatrice à domicile d'Oxygène à usage médical",
            "SA63": (
                "Communauté professionnelle territoriale de santé et équipe de soins spécialisés"
            ),
            "SA64": "Société de téléconsultation",
            "SA65": "Antenne de pharmacie",
            "SA66": "Services de Prévention et de Santé au Travail (SPST)",
            "SA67": "Maisons médicales de garde (MMG)",
            "SA68": "Services départementaux d'incendie et de secours",
            "SA69": "Maisons de naissance",
        },
    ),
)

#: JDV_J231-XdsTypesIdentifiantsReferenceId-DMP, OID 1.2.250.1.213.1.1.5.693, revision
#: 2022-12-16: the identifier types of referenceIdList (CXi.5).
REFERENCE_ID_TYPES: Final = ValueSet(
    "JDV_J231_XdsTypesIdentifiantsReferenceId_DMP",
    "1.2.250.1.213.1.1.5.693",
    "2022-12-16",
    _concepts(
        REFERENCE_ID_OID,
        {
            "urn:ihe:iti:xds:2013:accession": "accession",
            "urn:ihe:iti:xds:2013:order": "order",
            "urn:ihe:iti:xds:2016:studyInstanceUID": "studyInstanceUID",
        },
    ),
)
ACCESSION: Final = "urn:ihe:iti:xds:2013:accession"
ORDER: Final = "urn:ihe:iti:xds:2013:order"
STUDY_INSTANCE_UID: Final = "urn:ihe:iti:xds:2016:studyInstanceUID"

#: JDV_J143-AdministrativeGender-CISIS, OID 1.2.250.1.213.1.1.5.590, revision 2021-03-26.
ADMINISTRATIVE_GENDERS: Final = ValueSet(
    "JDV_J143_AdministrativeGender_CISIS",
    "1.2.250.1.213.1.1.5.590",
    "2021-03-26",
    _concepts(GENDER_OID, {"F": "Féminin", "M": "Masculin", "UN": "Inconnu"}),
)
#: CDA administrativeGenderCode -> HL7 v2 PID-8 (HL7 table 0001) for sourcePatientInfo.
PID8_SEX: Final[Mapping[str, str]] = MappingProxyType({"F": "F", "M": "M", "UN": "U"})

#: Every value set above, for the test that checks them against the ANS SVS files.
VALUE_SETS: Final = (
    TYPE_CODES,
    CLASS_CODES,
    FORMAT_CODES,
    CONFIDENTIALITY_CODES,
    PRACTICE_SETTINGS,
    FACILITY_TYPES,
    REFERENCE_ID_TYPES,
    ADMINISTRATIVE_GENDERS,
)
