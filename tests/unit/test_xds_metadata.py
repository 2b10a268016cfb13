"""DMP/XDS DocumentEntry metadata from a CDA and the MetaDMPMSS flags (domain.xds.metadata).

The code tables of domain.xds.codes are checked against the ANS value sets in
../shared/data/jdv (IHE SVS XML): a new ANS release makes these tests say so.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from domain.document_id import HL7V3, cda_id
from domain.xds import codes
from domain.xds.codes import Coded, ValueSet
from domain.xds.metadata import (
    CodeOutsideValueSet,
    DocumentEntry,
    InvalidValue,
    MetadataError,
    MissingElement,
    NotACda,
    document_entry,
    xds_time,
)
from ops.demo import samples
from tests.shared_data import shared

NS = {"v3": HL7V3}
SVS = {"svs": "urn:ihe:iti:svs:2008"}
DOC_ID = "1.2.250.1.213.1.1.9.4242.1"
INS_CX = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
IPP_CX = "1234567890121^^^&1.2.3.4.567.8.9.10&ISO^PI"
BIRTH = ("PID-7|19790328", "PID-8|F", "PID-11|^^^^^^BDL^^51215")
DOMINIQUE_INFO = ("PID-5|PAT-TROIS^DOMINIQUE^^^^^L", *BIRTH)
ANS_DOMINIQUE_INFO = ("PID-5|PAT-TROIS^DOMINIQUE^MARIE-LOUISE^^^^L", *BIRTH)
PS = "^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
ORG = "^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^"
DEMO_PS = f"801234567866^DEMO^Biologiste{PS}"
DEMO_ORG = f"Laboratoire Relais Démo{ORG}1120459876"
LOINC, CLASS, SECTOR, SETTING = (
    "2.16.840.1.113883.6.1",
    "1.2.250.1.213.1.1.4.1",
    "1.2.250.1.71.4.2.4",
    "1.2.250.1.213.1.1.4.9",
)
IHE, ANS_FORMAT, VISIBILITY = (
    "1.3.6.1.4.1.19376.1.2.3",
    "1.2.250.1.213.1.1.4.2.282",
    "1.2.250.1.213.1.1.4.13",
)
NORMAL = Coded("N", "2.16.840.1.113883.5.25", "Normal")
COMPTE_RENDU = Coded("10", CLASS, "Compte rendu")
IMAGERIE = Coded("31", CLASS, "Imagerie médicale")
XD_LAB = Coded(
    "urn:ihe:lab:xd-lab:2008", IHE, "Compte rendu structuré d'examens de biologie médicale"
)
IMG = "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013"
CR_IMG = Coded(IMG, IHE, "Compte-rendu d'imagerie médicale")
PDF_N1 = Coded("urn:ihe:iti:xds-sd:pdf:2008", IHE, "Document à corps non structuré en Pdf/A-1")
LDL = "Lettre de Liaison à la sortie de l'établissement de santé"
LDL_SES = Coded("urn:asip:ci-sis:ldl-ses:2017", ANS_FORMAT, LDL)
LAB_FACILITY = Coded("SA25", SECTOR, "Laboratoire de biologie médicale")
AMBULATOIRE = Coded("AMBULATOIRE", SETTING, "Ambulatoire")
ETABLISSEMENT = Coded("ETABLISSEMENT", SETTING, "Etablissement de santé")
MASQUE_PS = Coded("MASQUE_PS", VISIBILITY, "Masqué aux professionnels de santé")
INVISIBLE_PATIENT = Coded("INVISIBLE_PATIENT", VISIBILITY, "Non visible par le patient")
REP = "Non visible par les représentants légaux du patient"
INVISIBLE_REP = Coded("INVISIBLE_REPRESENTANTS_LEGAUX", VISIBILITY, REP)
PATIENT_DATA = ("279035121518989", "PAT-TROIS", "DOMINIQUE", "19790328", "51215")


def project_cda(
    kind: samples.Kind = samples.LAB, patient: samples.Patient = samples.DOMINIQUE
) -> bytes:
    return samples.cda(kind, patient, DOC_ID, "texte du compte rendu")


def edited(cda: bytes, edit: Callable[[etree._Element], object]) -> bytes:
    root = etree.fromstring(cda)
    edit(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def node(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path, NS)
    assert found is not None, path
    return found


def remove(*paths: str) -> Callable[[etree._Element], None]:
    def edit(root: etree._Element) -> None:
        for path in paths:
            for found in root.findall(path, NS):
                parent = found.getparent()
                assert parent is not None
                parent.remove(found)

    return edit


def set_attr(path: str, name: str, value: str | None) -> Callable[[etree._Element], None]:
    def edit(root: etree._Element) -> None:
        element = node(root, path)
        if value is None:
            del element.attrib[name]
        else:
            element.set(name, value)

    return edit


# -- the code tables against the ANS value sets (../shared/data/jdv) --------------------

NO_SVS_FILE = {"JDV_J57_ClassCode_DMP", "JDV_J60_FormatCode_DMP"}


def svs_concepts(path: Path) -> tuple[etree._Element, dict[tuple[str, str], str]]:
    tree = etree.parse(str(path))
    value_set = tree.find(".//svs:ValueSet", SVS)
    assert value_set is not None
    concepts: dict[tuple[str, str], str] = {}
    for concept in tree.iterfind(".//svs:Concept", SVS):
        if concept.get("dateFin"):  # retired
            continue
        concepts[(concept.get("code", ""), concept.get("codeSystem", ""))] = concept.get(
            "displayName", ""
        )
    return value_set, concepts


@pytest.mark.parametrize("value_set", codes.VALUE_SETS, ids=lambda v: v.name)
def test_code_table_matches_the_ans_value_set(value_set: ValueSet) -> None:
    path = shared("jdv", f"{value_set.name}.xml")
    if value_set.name in NO_SVS_FILE:
        assert not path.exists(), (
            f"{path.name} is now in ../shared/data: check the table against it"
        )
        return
    published, concepts = svs_concepts(path)
    assert published.get("id") == value_set.oid
    assert published.get("revisionDate", "")[:10] == value_set.revision, "a new ANS revision"
    ours = {(c.code, c.scheme): c.display for c in value_set.concepts}
    assert len(ours) == len(value_set.concepts), "duplicate codes"
    for key, display in ours.items():
        assert key in concepts, f"{key} is not (or no longer) in {value_set.name}"
        assert concepts[key] == display, key
    if value_set.complete:
        assert set(concepts) == set(ours), f"{value_set.name} has codes the table lacks"


def test_association_tables_hold_together() -> None:
    types = {c.code for c in codes.TYPE_CODES.concepts}
    assert set(codes.TYPE_CLASS) == types
    assert {c.scheme for c in codes.TYPE_CODES.concepts} == {LOINC}
    for klass in codes.TYPE_CLASS.values():
        assert codes.CLASS_CODES.find(klass, codes.CLASS_OID) is not None
    # ASS_X16 facts quoted in STANDARDS.md §4
    assert codes.TYPE_CLASS["11502-2"] == codes.TYPE_CLASS["11490-0"] == "10"
    assert codes.TYPE_CLASS["18748-4"] == "31"
    formats = {c.code for c in codes.FORMAT_CODES.concepts}
    assert set(codes.MODEL_FORMATS.values()) | set(codes.N1_FORMATS.values()) == formats
    for extra in codes.FLAG_CONFIDENTIALITY.values():
        assert codes.CONFIDENTIALITY_CODES.find(extra, codes.DMP_VISIBILITY_OID) is not None
    assert set(codes.PID8_SEX) == {c.code for c in codes.ADMINISTRATIVE_GENDERS.concepts}
    for kind in (codes.ORDER, codes.ACCESSION, codes.STUDY_INSTANCE_UID):
        assert codes.REFERENCE_ID_TYPES.find(kind, codes.REFERENCE_ID_OID) is not None


# -- the project's own CDAs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "class_code", "format_code"),
    [
        (samples.LAB, COMPTE_RENDU, XD_LAB),
        (samples.IMAGING, IMAGERIE, CR_IMG),
        (samples.LETTER, COMPTE_RENDU, PDF_N1),
    ],
    ids=["LAB", "IMAGING", "LETTER"],
)
def test_every_field_of_a_project_cda(
    kind: samples.Kind, class_code: Coded, format_code: Coded
) -> None:
    # the demo kinds carry the JDV_J07 display as their label; a CR-BIO has its fixed title
    title = "Compte rendu d'examens biologiques" if kind is samples.LAB else kind.title
    cda = project_cda(kind)
    assert document_entry(cda, {}) == DocumentEntry(
        unique_id=DOC_ID,
        patient_id=INS_CX,
        source_patient_id=INS_CX,  # no IPP in the project's demo CDAs: the INS
        source_patient_info=DOMINIQUE_INFO,
        class_code=class_code,
        type_code=Coded(kind.loinc, LOINC, kind.title),
        format_code=format_code,
        confidentiality=(NORMAL,),
        healthcare_facility_type=LAB_FACILITY,
        practice_setting=AMBULATOIRE,
        creation_time="20261122091500",  # 10:15 +0100
        service_start="20261122070000",
        service_stop="20261122090000",
        language="fr-FR",
        title=title,
        mime_type="text/xml",
        hash_sha1=hashlib.sha1(cda).hexdigest(),
        size=len(cda),
        author_person=DEMO_PS,
        author_institution=DEMO_ORG,
        legal_authenticator=DEMO_PS,
        # a CR-IMG names its study in serviceEvent/id: the DMP can find it by its UID
        reference_ids=(f"{samples.CHEST_CT.study_uid}^^^^urn:ihe:iti:xds:2016:studyInstanceUID",)
        if kind is samples.IMAGING
        else (),
    )
    assert document_entry(cda, {}).unique_id == cda_id(cda)


def test_all_birth_first_names_go_in_pid5() -> None:
    entry = document_entry(project_cda(patient=samples.SARAH_LOU), {})
    assert entry.source_patient_info == (
        "PID-5|GARCIA-HAMMADI^SARAH-LOU^ANNA^^^^L",
        "PID-7|19770121",
        "PID-8|F",
        "PID-11|^^^^^^BDL^^01154",
    )
    assert entry.patient_id == "277010115400329^^^&1.2.250.1.213.1.4.10&ISO^NH"


def test_hash_and_size_are_those_of_the_exact_bytes() -> None:
    cda = project_cda()
    crlf = cda.replace(b"><", b">\r\n<")
    entry, other = document_entry(cda, {}), document_entry(crlf, {})
    assert (entry.hash_sha1, entry.size) == (hashlib.sha1(cda).hexdigest(), len(cda))
    assert (other.hash_sha1, other.size) == (hashlib.sha1(crlf).hexdigest(), len(crlf))
    assert other.size > entry.size
    assert other.hash_sha1 != entry.hash_sha1
    assert other.type_code == entry.type_code
    assert other.creation_time == entry.creation_time


# -- the ANS example CDAs ------------------------------------------------------------------


#: What the four ANS examples share: the test patient (INS + IPP), N, fr-FR, text/xml.
ANS = DocumentEntry(
    unique_id="",
    patient_id=INS_CX,
    source_patient_id=IPP_CX,
    source_patient_info=ANS_DOMINIQUE_INFO,
    class_code=COMPTE_RENDU,
    type_code=Coded("11502-2", LOINC, "CR d'examens biologiques"),
    format_code=XD_LAB,
    confidentiality=(NORMAL,),
    healthcare_facility_type=LAB_FACILITY,
    practice_setting=AMBULATOIRE,
    creation_time="",
    service_start=None,
    service_stop=None,
    language="fr-FR",
    title="Compte rendu d'examens biologiques",
    mime_type="text/xml",
    hash_sha1="",
    size=0,
    author_person=f"801234534765^CAMPARINI^Marcel{PS}",
    author_institution=f"Laboratoire des charmes{ORG}1120459876",
    legal_authenticator=f"801234534765^CAMPARINI^Marcel{PS}",
    reference_ids=(),
)
STUDY = "1.2.250.1.925.994044.27.123.187636{}^^^^urn:ihe:iti:xds:2016:studyInstanceUID"
ANS_EXAMPLES: dict[str, dict[str, object]] = {
    "BIO-CR-BIO_2024.01_TSH_1.xml": {
        "unique_id": "1.2.250.1.213.1.1.1.55.2024.9.1",
        "size": 134945,
        # practice setting: the performer's organisation (the author's has none)
        "creation_time": "20210401161000",
        "service_start": "20210104082200",
        "service_stop": "20210104150500",
        "reference_ids": ("2014123456789^^^&1.2.250.1.213.1.1.9&ISO^urn:ihe:iti:xds:2013:order",),
    },
    "DOC_NON_STRUCTURE_CDA-R2-N1.xml": {
        "unique_id": "1.3.6.1.4.1.19376.1.2.20.12345.1.1",
        "size": 448271,
        "format_code": PDF_N1,
        "healthcare_facility_type": Coded("SA07", SECTOR, "Cabinet individuel"),
        "creation_time": "20210401124745",
        "service_start": "20210104124700",
        "service_stop": "20210104125500",
        "legal_authenticator": f"807505123456^Camparini^Marcel{PS}",
    },
    "IMG_CR_IMG_2024.01.xml": {
        "unique_id": "1.2.250.1.213.1.1.1.45.2024.1.1",
        "size": 352185,
        "class_code": IMAGERIE,
        "type_code": Coded("18748-4", LOINC, "CR d'imagerie médicale"),  # the JDV's display
        "format_code": CR_IMG,
        "healthcare_facility_type": Coded("SA08", SECTOR, "Cabinet de groupe"),
        "creation_time": "20210108101700",
        "service_start": "20210108092500",
        "service_stop": "20210108101700",
        "title": "CR d\u2019imagerie médicale - Scanner Tête + Cou + Thorax avec injection",
        "author_person": f"801234560801^BIDEAULT^Jacques{PS}",
        "author_institution": f"Centre de radiologie Ambroise{ORG}1920008059",
        "legal_authenticator": f"801234560801^BIDEAULT^Jacques{PS}",
        "reference_ids": (
            "984375862^^^&1.2.250.1.748.12345678.12&ISO^urn:ihe:iti:xds:2013:order",
            "105234751^^^&1.2.250.1.925.994044785528.27&ISO^urn:ihe:iti:xds:2013:accession",
            "984375863^^^&1.2.250.1.748.12345678.12&ISO^urn:ihe:iti:xds:2013:order",
            "105234752^^^&1.2.250.1.925.994044.27&ISO^urn:ihe:iti:xds:2013:accession",
            *(STUDY.format(n) for n in range(3)),
        ),
    },
    "LDL-SES_2022.01.xml": {
        "unique_id": "1.2.250.1.213.1.1.1.29.2022.1.1",
        "size": 76111,
        "type_code": Coded(
            "11490-0", LOINC, "Lettre de liaison à la sortie d'un établissement de soins"
        ),
        "format_code": LDL_SES,
        "healthcare_facility_type": Coded(
            "SA01", "1.2.250.1.71.4.2.4", "Etablissement public de santé"
        ),
        "practice_setting": ETABLISSEMENT,
        "creation_time": "20191203123000",
        "service_start": "20191029101700",
        "service_stop": "20191203123000",
        "title": "Lettre de liaison à la sortie de l'établissement de santé",
        "author_person": f"801234567897^DAVID^Charles{PS}",
        "author_institution": f"Hôpital Européen Georges Pompidou{ORG}1750803447",
        "legal_authenticator": f"801234567897^AUGUIN^Léon{PS}",  # "Léon " trimmed
    },
}


@pytest.mark.parametrize("name", sorted(ANS_EXAMPLES))
def test_every_field_of_an_ans_example(name: str) -> None:
    cda = shared("cda", name).read_bytes()
    expected = dataclasses.replace(
        ANS, hash_sha1=hashlib.sha1(cda).hexdigest(), **ANS_EXAMPLES[name]
    )  # type: ignore[arg-type]
    assert document_entry(cda, {}) == expected
    assert expected.size == len(cda)


# -- MetaDMPMSS flags ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "extra"),
    [
        ({}, ()),
        ({"MASQUE_PS": False, "INVISIBLE_PATIENT": False, "INVISIBLE_REP_LEGAUX": False}, ()),
        ({"DESTDMP": True, "CONNEXION_SECRETE": True}, ()),  # other flags add nothing
        ({"MASQUE_PS": True}, (MASQUE_PS,)),
        ({"INVISIBLE_PATIENT": True}, (INVISIBLE_PATIENT,)),
        ({"INVISIBLE_REP_LEGAUX": True}, (INVISIBLE_REP,)),
        (
            {"INVISIBLE_REP_LEGAUX": True, "MASQUE_PS": True, "INVISIBLE_PATIENT": True},
            (MASQUE_PS, INVISIBLE_PATIENT, INVISIBLE_REP),
        ),
    ],
)
def test_flags_add_the_dmp_confidentiality_codes(
    flags: dict[str, bool], extra: tuple[Coded, ...]
) -> None:
    assert document_entry(project_cda(), flags).confidentiality == (NORMAL, *extra)


def test_restricted_cda_keeps_its_code_before_the_flags() -> None:
    cda = edited(project_cda(), set_attr("v3:confidentialityCode", "code", "V"))
    confidentiality = document_entry(cda, {"INVISIBLE_PATIENT": True}).confidentiality
    assert confidentiality == (
        Coded("V", "2.16.840.1.113883.5.25", "Très restreint"),
        INVISIBLE_PATIENT,
    )


# -- other derivations ---------------------------------------------------------------------


def test_practice_setting_falls_back_to_the_authors_organisation() -> None:
    performer = "v3:documentationOf/v3:serviceEvent/v3:performer"
    author_code = (
        "v3:author/v3:assignedAuthor/v3:representedOrganization/v3:standardIndustryClassCode"
    )

    def edit(root: etree._Element) -> None:
        remove(
            f"{performer}/v3:assignedEntity/v3:representedOrganization/v3:standardIndustryClassCode"
        )(root)
        node(root, author_code).set("code", "ETABLISSEMENT")

    assert document_entry(edited(project_cda(), edit), {}).practice_setting == ETABLISSEMENT


def test_ids_ins_c_is_not_an_ins_and_the_first_local_id_is_the_ipp() -> None:
    def edit(root: etree._Element) -> None:
        role = node(root, "v3:recordTarget/v3:patientRole")
        ins = node(role, "v3:id")
        ins.addprevious(etree.Element(f"{{{HL7V3}}}id", root="1.2.250.1.213.1.4.2", extension="1"))
        ins.addnext(etree.Element(f"{{{HL7V3}}}id", root="1.2.250.1.999.2", extension="IPP^7"))

    entry = document_entry(edited(project_cda(), edit), {})
    assert entry.patient_id == INS_CX
    assert entry.source_patient_id == "IPP\\S\\7^^^&1.2.250.1.999.2&ISO^PI"  # HL7-escaped


def test_hl7_delimiters_in_names_are_escaped() -> None:
    name = "v3:author/v3:assignedAuthor/v3:representedOrganization/v3:name"

    def edit(root: etree._Element) -> None:
        node(root, name).text = "Labo A & B | C^D~E\\F"

    entry = document_entry(edited(project_cda(), edit), {})
    assert entry.author_institution == f"Labo A \\T\\ B \\F\\ C\\S\\D\\R\\E\\E\\F{ORG}1120459876"


def test_service_times_span_every_service_event() -> None:
    def edit(root: etree._Element) -> None:
        first = node(root, "v3:documentationOf")
        other = etree.fromstring(
            f'<documentationOf xmlns="{HL7V3}"><serviceEvent><effectiveTime>'
            '<low value="20261121230000+0100"/><high value="20261123000000+0100"/>'
            "</effectiveTime></serviceEvent></documentationOf>"
        )
        first.addnext(other)

    entry = document_entry(edited(project_cda(), edit), {})
    assert (entry.service_start, entry.service_stop) == ("20261121220000", "20261122230000")


def test_no_legal_authenticator_no_metadata_for_it() -> None:
    cda = edited(project_cda(), remove("v3:legalAuthenticator"))
    assert document_entry(cda, {}).legal_authenticator is None


def test_no_service_event_time_no_service_times() -> None:
    cda = edited(project_cda(), remove("v3:documentationOf/v3:serviceEvent/v3:effectiveTime"))
    entry = document_entry(cda, {})
    assert (entry.service_start, entry.service_stop) == (None, None)


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        ("20210401171000+0100", "20210401161000"),
        ("20210701171000+0200", "20210701151000"),
        ("20211231233000-0500", "20220101043000"),
        ("202101040735+0100", "202101040635"),  # minute precision kept
        ("2021040117+0530", "202104011130"),  # a half-hour offset needs the minutes
        ("20210401171000.123+0100", "20210401161000"),
        ("20210104+0100", "20210104"),  # a date stays the day it is
        ("20210104", "20210104"),
        ("2021", "2021"),
    ],
)
def test_xds_time(value: str, utc: str) -> None:
    assert xds_time(value) == utc


@pytest.mark.parametrize(
    "value",
    [
        "20210401171000",
        "2021-04-01",
        "20211301",
        "20210230",
        "20210401171000+0160",
        "2021040117100",
    ],
)
def test_xds_time_refuses(value: str) -> None:
    with pytest.raises(InvalidValue):
        xds_time(value)


# -- what is missing or outside its value set ---------------------------------------------

LAB, IMAGING, LETTER = samples.LAB, samples.IMAGING, samples.LETTER
MISSING, OUTSIDE, INVALID = MissingElement, CodeOutsideValueSet, InvalidValue
FACILITY = "v3:componentOf/v3:encompassingEncounter/v3:location/v3:healthCareFacility/v3:code"
AUTHOR_ORG = "v3:author/v3:assignedAuthor/v3:representedOrganization"
SIC = "v3:representedOrganization/v3:standardIndustryClassCode"
PERFORMER_SIC = f"v3:documentationOf/v3:serviceEvent/v3:performer/v3:assignedEntity/{SIC}"
AUTHOR_SIC = f"v3:author/v3:assignedAuthor/{SIC}"
PATIENT = "v3:recordTarget/v3:patientRole/v3:patient"
HIGH = "v3:documentationOf/v3:serviceEvent/v3:effectiveTime/v3:high"
BODY = "v3:component/v3:nonXMLBody/v3:text"
ORG_ID = "id[@root='1.2.250.1.71.4.2.2']/@extension"


def drop_template(*roots: str) -> Callable[[etree._Element], None]:
    def edit(root: etree._Element) -> None:
        for template in root.findall("v3:templateId", NS):
            if template.get("root") in roots:
                root.remove(template)

    return edit


def add_ldl_ses_template(root: etree._Element) -> None:
    template = etree.Element(f"{{{HL7V3}}}templateId", root="1.2.250.1.213.1.1.1.29")
    node(root, "v3:templateId").addnext(template)


def path(expression: str) -> str:
    return expression.replace("v3:", "")


@pytest.mark.parametrize(
    ("kind", "edit", "error", "element"),
    [
        (LAB, remove("v3:code"), MISSING, "code/@code"),
        (LAB, set_attr("v3:code", "codeSystem", None), MISSING, "code/@codeSystem"),
        (LAB, set_attr("v3:code", "code", "99999-9"), OUTSIDE, "code"),  # not in JDV_J07
        (LAB, set_attr("v3:code", "code", "28617-9"), OUTSIDE, "code"),  # J07, no ASS_X16 class
        (LAB, set_attr("v3:code", "codeSystem", "1.2.250.1.213.1.1.4.12"), OUTSIDE, "code"),
        (LAB, set_attr("v3:confidentialityCode", "code", "L"), OUTSIDE, "confidentialityCode"),
        (
            LAB,
            set_attr("v3:confidentialityCode", "codeSystem", "1.2.250.1.213.1.1.4.13"),
            OUTSIDE,
            "confidentialityCode",
        ),
        (LAB, set_attr(FACILITY, "code", "SA99"), OUTSIDE, path(FACILITY)),
        (LAB, set_attr(FACILITY, "codeSystem", None), MISSING, path(f"{FACILITY}/@codeSystem")),
        (IMAGING, remove("v3:componentOf"), MISSING, path(f"{FACILITY}/@code")),
        (LAB, set_attr(PERFORMER_SIC, "code", "HOPITAL"), OUTSIDE, path(PERFORMER_SIC)),
        (LAB, remove(PERFORMER_SIC, AUTHOR_SIC), MISSING, path(AUTHOR_SIC)),
        (
            LAB,
            set_attr("v3:recordTarget/v3:patientRole/v3:id", "root", "1.2.250.1.213.1.4.2"),
            MISSING,
            "recordTarget/patientRole/id",  # INS-C is not an INS
        ),
        (
            LAB,
            set_attr(f"{PATIENT}/v3:administrativeGenderCode", "code", "X"),
            OUTSIDE,
            path(f"{PATIENT}/administrativeGenderCode"),
        ),
        (LAB, remove(f"{PATIENT}/v3:name/v3:family"), MISSING, path(f"{PATIENT}/name/family")),
        (
            LAB,
            set_attr(f"{PATIENT}/v3:birthTime", "value", "28/03/1979"),
            INVALID,
            path(f"{PATIENT}/birthTime"),
        ),
        (LAB, set_attr("v3:effectiveTime", "value", "20261122101500"), INVALID, "effectiveTime"),
        (LAB, remove("v3:effectiveTime"), MISSING, "effectiveTime/@value"),
        (LAB, set_attr(HIGH, "value", "20261122100000"), INVALID, path(HIGH)),  # no offset
        (LAB, remove("v3:languageCode"), MISSING, "languageCode/@code"),
        (LAB, remove("v3:title"), MISSING, "title"),
        (LAB, remove("v3:id"), MISSING, "id"),
        (
            LAB,
            drop_template("1.3.6.1.4.1.19376.1.3.3", "1.2.250.1.213.1.1.1.55"),
            OUTSIDE,
            "templateId",  # no model: no formatCode
        ),
        (LAB, add_ldl_ses_template, OUTSIDE, "templateId"),  # two models: which format?
        (LETTER, set_attr(BODY, "mediaType", "image/png"), OUTSIDE, path(f"{BODY}/@mediaType")),
        (LAB, remove("v3:author"), MISSING, "author/assignedAuthor"),
        (
            LAB,
            set_attr("v3:author/v3:assignedAuthor/v3:id", "extension", ""),
            MISSING,
            "author/assignedAuthor/id",
        ),
        (LAB, remove(f"{AUTHOR_ORG}/v3:id"), MISSING, path(f"{AUTHOR_ORG}/{ORG_ID}")),
        (LAB, remove(f"{AUTHOR_ORG}/v3:name"), MISSING, path(f"{AUTHOR_ORG}/name")),
        (
            LAB,
            set_attr("v3:legalAuthenticator/v3:assignedEntity/v3:id", "extension", ""),
            MISSING,
            "legalAuthenticator/assignedEntity/id",
        ),
    ],
)
def test_missing_or_outside_raises_naming_the_element(
    kind: samples.Kind,
    edit: Callable[[etree._Element], object],
    error: type[MetadataError],
    element: str,
) -> None:
    with pytest.raises(error) as caught:
        document_entry(edited(project_cda(kind), edit), {})
    assert caught.value.element == f"ClinicalDocument/{element}"
    assert str(caught.value).startswith(f"ClinicalDocument/{element}: ")
    assert not any(data in str(caught.value) for data in PATIENT_DATA)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not xml",
        b"<ClinicalDocument/>",  # not in the HL7 v3 namespace
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><ClinicalDocument xmlns="urn:hl7-org:v3"/>',
    ],
)
def test_not_a_cda(content: bytes) -> None:
    with pytest.raises(NotACda) as caught:
        document_entry(content, {})
    assert caught.value.element == "ClinicalDocument"
    assert isinstance(caught.value, ValueError)
