"""CDA builders: CR-BIO N3, N1 and CR-IMG N3 are XSD-valid and pass the CI-SIS header checks."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from lxml import etree

from domain.cda_model import DocumentHeader, ImagingStudy, Organisation, PatientHeader, Person
from domain.cda_validate import CdaSchema, header_problems
from domain.document_id import HL7V3, safe_parser
from domain.lab_results import (
    LOINC_OID,
    LOINC_WAITING_OID,
    CodedResult,
    LabResult,
    MappingStatus,
    ValueType,
)
from streams.transcode.cda_build import (
    ImagingStudyMissing,
    build_cr_bio_n3,
    build_cr_img_n3,
    build_n1,
)
from tests.shared_data import shared

NS = {"v3": HL7V3, "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
BIOLOGIST = Person(
    "1.2.250.1.71.4.2.1", "801234534765", "LABO", "Marie", "MME", ("G15_10/SM03", "Biologiste")
)
LAB = Organisation("1.2.250.1.71.4.2.2", "1120459876", "Laboratoire d'essai")
HEADER = DocumentHeader(
    id_root="1.2.250.1.999.7.1",
    id_extension="CRBIO-0001",
    set_id_root="1.2.250.1.999.7.2",
    set_id_extension="CRBIO-0001",
    version=1,
    type_code="11502-2",
    type_display="CR d'examens biologiques",
    title="Compte rendu d'examens biologiques",
    effective_time="20240115103000+0100",
    author=BIOLOGIST,
    author_org=LAB,
    custodian=LAB,
    legal_authenticator=BIOLOGIST,
    authored_at="20240115102500+0100",
    service_start="20240115080000+0100",
    service_stop="20240115100000+0100",
)
PATIENT = PatientHeader(
    ins="279035121518989",
    ins_oid="1.2.250.1.213.1.4.10",
    birth_name="PAT-TROIS",
    given_names="DOMINIQUE MARIE-LOUISE",
    birth_date="19790328",
    sex="F",
    birthplace_code="51215",
    local_ids=(("1.2.250.1.999.1", "IPP0042"),),
)
RADIOLOGIST = Person("1.2.250.1.71.4.2.1", "801234560801", "RADIO", "Jean", "M")
IMAGING = dataclasses.replace(
    HEADER,
    id_root="1.2.250.1.999.8.1",
    id_extension=None,
    set_id_root="1.2.250.1.999.8.2",
    set_id_extension=None,
    type_code="18748-4",
    type_display="CR d'imagerie médicale",
    title="CR d'imagerie médicale - Scanner thoracique",
    author=RADIOLOGIST,
    legal_authenticator=RADIOLOGIST,
    facility_type=("SA08", "Cabinet de groupe"),
)
IMG_SECTIONS = (
    ("55752-0", "Informations cliniques", "Toux persistante.\nBilan."),
    ("55111-9", "Technique d'imagerie", "Scanner thoracique sans injection."),
    ("59776-5", "Résultats", "Pas de nodule."),
    ("19005-8", "Conclusion", "Examen normal."),
)
#: A chest CT: act, modality, anatomical location (CI-SIS value sets), study/series/instance.
IMG_STUDY = ImagingStudy(
    procedure=("24627-2", "CT thorax"),
    modality=("CT", "Tomodensitométrie"),
    target_site=("302551006", "thorax entier"),
    study_uid="1.2.250.1.999.8.3.1",
    performed_at="20240115081500+0100",
    series_uid="1.2.250.1.999.8.3.1.1",
    sop_instance_uid="1.2.250.1.999.8.3.1.1.1",
    sop_class=("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"),
)
#: (LOINC, display, UCUM unit) of the results a test document carries, in turn.
ANALYTES = (
    ("3016-3", "Thyréostimuline [Unités arbitraires/Volume] Sérum/Plasma", "m[IU]/L"),
    ("2345-7", "Glucose [Masse/Volume] Sérum/Plasma", "g/L"),
    ("718-7", "Hémoglobine [Masse/Volume] Sang", "g/dL"),
    ("777-3", "Plaquettes [Nombre/Volume] Sang", "10*9/L"),
)


def numeric(index: int) -> CodedResult:
    code, display, unit = ANALYTES[index % len(ANALYTES)]
    flag = ("N", "H", "L", None)[index % 4]
    raw = LabResult(
        f"LOC{index}", display, f"{1 + index / 100:.2f}", ValueType.NUMERIC, unit, "0,4-4,0", flag,
        "20240115093000",
    )  # fmt: skip
    return CodedResult(raw, code, LOINC_OID, display, unit, MappingStatus.MAPPED)


TEXT = CodedResult(
    LabResult("ASP", "Aspect", "Clair", ValueType.TEXT, None, "clair"),
    "ASP", LOINC_WAITING_OID, "Aspect du sérum", None, MappingStatus.WAITING,
)  # fmt: skip
CODED = CodedResult(
    LabResult("RAI", "RAI", "260385009^Négatif^SCT", ValueType.CODED, interpretation="NEG"),
    "890-4", LOINC_OID, "Recherche d'agglutinines irrégulières", None, MappingStatus.MAPPED,
)  # fmt: skip
BOUND = CodedResult(
    LabResult("CRP", "CRP", "<5", ValueType.NUMERIC, "mg/L", "<5"),
    "1988-5", LOINC_OID, "Protéine C réactive", "mg/L", MappingStatus.MAPPED,
)  # fmt: skip


def results(count: int) -> list[CodedResult]:
    """``count`` results: numeric ones, then a text, a coded and a "<5" value."""
    return [numeric(i) for i in range(count - 3)] + [TEXT, CODED, BOUND]


@pytest.fixture(scope="module")
def schema() -> CdaSchema:
    return CdaSchema.load(shared("cda-xsd"))


def parse(document: bytes) -> etree._Element:
    return etree.fromstring(document, safe_parser())


def values(root: etree._Element, path: str) -> list[str]:
    found = root.xpath(path, namespaces=NS)
    assert isinstance(found, list)
    return [str(item) for item in found]


def assert_deliverable(schema: CdaSchema, document: bytes) -> None:
    assert schema.validate(document) == []
    assert header_problems(document) == []


@pytest.mark.parametrize("count", [20, 200])
def test_cr_bio_n3_with_pdf_is_valid(schema: CdaSchema, count: int) -> None:
    document = build_cr_bio_n3(HEADER, PATIENT, results(count), PDF)
    assert_deliverable(schema, document)
    root = parse(document)
    assert len(values(root, "//v3:entry/v3:act/v3:entryRelationship/v3:observation")) == count
    media = values(root, "//v3:observationMedia/v3:value[@mediaType='application/pdf']/text()")
    assert base64.b64decode(media[0]) == PDF


@pytest.mark.parametrize("count", [20, 200])
def test_cr_bio_n3_without_pdf_is_schema_valid_but_held(schema: CdaSchema, count: int) -> None:
    """The CI-SIS rule (S_documentPDFCopie): the PDF-copy section must hold the PDF."""
    document = build_cr_bio_n3(HEADER, PATIENT, results(count), None)
    assert schema.validate(document) == []
    assert [p.split(":")[0] for p in header_problems(document)] == ["cr-bio-pdf-copy"]
    root = parse(document)
    sections = values(root, "//v3:section/v3:templateId/@root")
    assert "1.2.250.1.213.1.1.2.243" in sections


def test_cr_bio_header_is_the_model_s(schema: CdaSchema) -> None:
    header = dataclasses.replace(HEADER, type_code="X", title="autre chose")
    root = parse(build_cr_bio_n3(header, PATIENT, results(4), PDF))
    assert values(root, "v3:templateId/@root") == [
        "2.16.840.1.113883.2.8.2.1",
        "1.2.250.1.213.1.1.1.1",
        "1.3.6.1.4.1.19376.1.3.3",
        "1.2.250.1.213.1.1.1.55",
    ]
    assert values(root, "v3:code/@code") == ["11502-2"]
    assert values(root, "v3:code/@displayName") == ["CR d'examens biologiques"]
    assert values(root, "v3:title/text()") == ["Compte rendu d'examens biologiques"]
    assert values(root, "v3:realmCode/@code") == ["FR"]
    assert values(root, "v3:typeId/@extension") == ["POCD_HD000040"]
    assert values(root, "v3:versionNumber/@value") == ["1"]


def test_record_target_carries_the_ins_and_the_birth_traits() -> None:
    root = parse(build_cr_bio_n3(HEADER, PATIENT, results(4), PDF))
    role = "v3:recordTarget/v3:patientRole"
    assert values(root, f"{role}/v3:id/@root") == ["1.2.250.1.213.1.4.10", "1.2.250.1.999.1"]
    assert values(root, f"{role}/v3:id/@extension") == ["279035121518989", "IPP0042"]
    name = f"{role}/v3:patient/v3:name"
    assert values(root, f"{name}/v3:family[@qualifier='BR']/text()") == ["PAT-TROIS"]
    assert values(root, f"{name}/v3:given[not(@qualifier)]/text()") == ["DOMINIQUE MARIE-LOUISE"]
    assert values(root, f"{name}/v3:given[@qualifier='BR']/text()") == ["DOMINIQUE"]
    patient = f"{role}/v3:patient"
    assert values(root, f"{patient}/v3:administrativeGenderCode/@code") == ["F"]
    assert values(root, f"{patient}/v3:birthTime/@value") == ["19790328"]
    assert values(root, f"{patient}/v3:birthplace/v3:place/v3:addr/v3:county/text()") == ["51215"]


def test_actors_and_context() -> None:
    root = parse(build_cr_bio_n3(HEADER, PATIENT, results(4), PDF))
    assert values(root, "v3:author/v3:time/@value") == ["20240115102500+0100"]
    assert values(root, "v3:author/v3:assignedAuthor/v3:id/@extension") == ["801234534765"]
    org = "v3:custodian/v3:assignedCustodian/v3:representedCustodianOrganization"
    assert values(root, f"{org}/v3:id/@extension") == ["1120459876"]
    assert values(root, "v3:legalAuthenticator/v3:signatureCode/@code") == ["S"]
    event = "v3:documentationOf/v3:serviceEvent"
    assert values(root, f"{event}/v3:effectiveTime/v3:low/@value") == ["20240115080000+0100"]
    assert values(root, f"{event}/v3:effectiveTime/v3:high/@value") == ["20240115100000+0100"]
    facility = "v3:componentOf/v3:encompassingEncounter/v3:location/v3:healthCareFacility"
    assert values(root, f"{facility}/v3:code/@code") == ["SA25"]
    assert values(root, "//v3:standardIndustryClassCode/@code")[0] == "AMBULATOIRE"


def test_results_are_coded_with_values_units_and_ranges() -> None:
    root = parse(build_cr_bio_n3(HEADER, PATIENT, results(6), PDF))
    observations = root.xpath("//v3:act/v3:entryRelationship/v3:observation", namespaces=NS)
    assert isinstance(observations, list)
    first, text, coded, bound = (observations[i] for i in (0, 3, 4, 5))
    assert isinstance(first, etree._Element)
    assert values(first, "v3:code/@code") == ["3016-3"]
    assert values(first, "v3:code/@codeSystem") == [LOINC_OID]
    assert values(first, "v3:code/@displayName") == [ANALYTES[0][1]]
    assert values(first, "v3:value/@xsi:type") == ["PQ"]
    assert values(first, "v3:value/@unit") == ["m[IU]/L"]
    assert values(first, "v3:interpretationCode/@code") == ["N"]
    assert values(first, "v3:effectiveTime/@value") == ["20240115093000+0100"]
    assert values(first, ".//v3:observationRange/v3:value/v3:low/@value") == ["0.4"]
    assert values(first, ".//v3:observationRange/v3:value/v3:high/@value") == ["4.0"]
    assert isinstance(text, etree._Element)
    # Unmapped: no LOINC claimed; the laboratory's code travels as a translation (ANS rule).
    assert values(text, "v3:code/@codeSystem") == []
    assert values(text, "v3:code/v3:translation/@code") == ["ASP"]
    assert values(text, "v3:code/v3:translation/@codeSystemName") == ["Code local du laboratoire"]
    assert values(text, "v3:value/@xsi:type") == ["ST"]
    assert values(text, "v3:value/text()") == ["Clair"]
    assert values(text, ".//v3:observationRange/v3:text/text()") == ["clair"]
    assert isinstance(coded, etree._Element)
    assert values(coded, "v3:value/@code") == ["260385009"]
    assert values(coded, "v3:value/@codeSystem") == ["2.16.840.1.113883.6.96"]
    assert values(coded, "v3:interpretationCode/@code") == ["NEG"]
    assert isinstance(bound, etree._Element)
    assert values(bound, "v3:value/@xsi:type") == ["ST"]  # "<5" is no quantity
    assert values(bound, ".//v3:observationRange/v3:value/v3:high/@value") == ["5"]


def test_summer_times_get_the_summer_offset() -> None:
    raw = dataclasses.replace(numeric(0).result, observed_at="20240715093000")
    coded = dataclasses.replace(numeric(0), result=raw)
    root = parse(build_cr_bio_n3(HEADER, PATIENT, [coded], PDF))
    assert values(root, "//v3:observation/v3:effectiveTime/@value")[0] == "20240715093000+0200"


def test_a_cr_bio_needs_results() -> None:
    with pytest.raises(ValueError, match="at least one result"):
        build_cr_bio_n3(HEADER, PATIENT, [], PDF)


@pytest.mark.parametrize(
    ("replaces", "root", "extension"),
    [
        ("1.2.250.1.999.7.1.4411", "1.2.250.1.999.7.1.4411", None),
        ("1.2.250.1.999.7.1.CRBIO-0000", "1.2.250.1.999.7.1", "CRBIO-0000"),
        ("90E1C8EC-F951-4B26-A305-A34848818DD6", "90E1C8EC-F951-4B26-A305-A34848818DD6", None),
    ],
)
def test_replacement_carries_rplc(
    schema: CdaSchema, replaces: str, root: str, extension: str | None
) -> None:
    header = dataclasses.replace(HEADER, replaces=replaces, version=2)
    document = build_cr_bio_n3(header, PATIENT, results(20), PDF)
    assert_deliverable(schema, document)
    tree = parse(document)
    parent = "v3:relatedDocument[@typeCode='RPLC']/v3:parentDocument/v3:id"
    assert values(tree, f"{parent}/@root") == [root]
    assert values(tree, f"{parent}/@extension") == ([extension] if extension else [])


@pytest.mark.parametrize("header", [HEADER, IMAGING], ids=["cr-bio", "cr-img"])
def test_n1_wraps_the_pdf(schema: CdaSchema, header: DocumentHeader) -> None:
    document = build_n1(header, PATIENT, PDF)
    assert_deliverable(schema, document)
    root = parse(document)
    assert "1.3.6.1.4.1.19376.1.2.20" in values(root, "v3:templateId/@root")
    assert values(root, "v3:code/@code") == [header.type_code]
    assert values(root, "v3:title/text()") == [header.title]
    text = "v3:component/v3:nonXMLBody/v3:text"
    assert values(root, f"{text}/@mediaType") == ["application/pdf"]
    assert values(root, f"{text}/@representation") == ["B64"]
    assert base64.b64decode(values(root, f"{text}/text()")[0]) == PDF


@pytest.mark.parametrize("pdf", [PDF, None], ids=["with-pdf", "without-pdf"])
def test_cr_img_n3(schema: CdaSchema, pdf: bytes | None) -> None:
    header = dataclasses.replace(IMAGING, replaces="1.2.250.1.999.8.1.77", version=2)
    document = build_cr_img_n3(header, PATIENT, IMG_SECTIONS, pdf, study=IMG_STUDY)
    assert_deliverable(schema, document)
    root = parse(document)
    templates = values(root, "v3:templateId/@root")
    for template in ("1.2.840.10008.9.1", "1.2.840.10008.9.20", "1.2.840.10008.9.21"):
        assert template in templates
    assert values(root, "v3:templateId[@root='1.2.250.1.213.1.1.1.45']/@extension") == ["2024.01"]
    assert values(root, "v3:code/@code") == ["18748-4"]
    assert values(root, "v3:relatedDocument/@typeCode") == ["RPLC"]
    sections = "v3:component/v3:structuredBody/v3:component/v3:section"
    codes = values(root, f"{sections}/v3:code/@code")
    assert codes[:4] == ["55752-0", "55111-9", "59776-5", "19005-8"]
    assert "1.2.250.1.213.1.1.2.209" in values(root, f"{sections}/v3:templateId/@root")
    request = f"({sections})[1]/v3:component/v3:section[v3:code/@code='55115-0']"
    assert values(root, f"{request}/v3:text/v3:paragraph/text()") == ["Toux persistante.", "Bilan."]
    history = f"({sections})[1]//v3:section[v3:code/@code='11329-0']//v3:observation"
    assert values(root, f"{history}/v3:code/@code") == ["11348-0", "47519-4", "64100-1"]
    assert len(values(root, "//v3:observationMedia")) == (1 if pdf else 0)


def test_cr_img_n3_carries_the_study() -> None:
    root = parse(build_cr_img_n3(IMAGING, PATIENT, IMG_SECTIONS, None, study=IMG_STUDY))
    act = "//v3:section[v3:code/@code='55111-9']"
    procedure = f"{act}/v3:entry/v3:procedure[v3:templateId/@root='1.2.250.1.213.1.1.3.153']"
    assert values(root, f"{procedure}/v3:code/@code") == ["24627-2"]
    assert values(root, f"{procedure}/v3:methodCode/@code") == ["CT"]
    assert values(root, f"{procedure}/v3:targetSiteCode/@code") == ["302551006"]
    assert values(root, f"{procedure}/v3:effectiveTime/@value") == ["20240115081500+0100"]
    catalog = f"{act}/v3:component/v3:section[v3:code/@code='121181']"
    study = f"{catalog}/v3:entry/v3:act[v3:code/@code='113014']"
    assert values(root, f"{study}/v3:id/@root") == ["1.2.250.1.999.8.3.1"]
    series = f"{study}/v3:entryRelationship/v3:act"
    assert values(root, f"{series}/v3:id/@root") == ["1.2.250.1.999.8.3.1.1"]
    assert values(root, f"{series}/v3:code/v3:qualifier/v3:value/@code") == ["CT"]
    instance = f"{series}/v3:entryRelationship/v3:observation[@classCode='DGIMG']"
    assert values(root, f"{instance}/v3:id/@root") == ["1.2.250.1.999.8.3.1.1.1"]
    assert values(root, f"{instance}/v3:code/@code") == ["1.2.840.10008.5.1.4.1.1.2"]


def test_cr_img_n3_without_series_names_the_study_only(schema: CdaSchema) -> None:
    study = dataclasses.replace(IMG_STUDY, series_uid=None)
    only = [("19005-8", "Conclusion", "Examen normal.")]
    document = build_cr_img_n3(IMAGING, PATIENT, only, None, study=study)
    assert_deliverable(schema, document)
    root = parse(document)
    sections = "v3:component/v3:structuredBody/v3:component/v3:section"
    assert values(root, f"{sections}/v3:code/@code") == ["55111-9", "19005-8"]
    catalog = "//v3:section[v3:code/@code='121181']"
    assert "1.2.250.1.999.8.3.1" in values(root, f"{catalog}/v3:text/v3:paragraph/text()")[0]
    assert values(root, f"{catalog}/v3:entry") == []


@pytest.mark.parametrize(
    "study",
    [
        None,
        dataclasses.replace(IMG_STUDY, target_site=("", "")),
        dataclasses.replace(IMG_STUDY, study_uid="not-an-oid"),
    ],
    ids=["no-study", "no-location", "bad-uid"],
)
def test_cr_img_n3_without_what_the_model_requires_falls_back(study: ImagingStudy | None) -> None:
    with pytest.raises(ImagingStudyMissing, match=r"N3|UID"):
        build_cr_img_n3(IMAGING, PATIENT, IMG_SECTIONS, PDF, study=study)
    assert issubclass(ImagingStudyMissing, ValueError)


def test_hostile_text_is_escaped_not_injected(schema: CdaSchema) -> None:
    sneaky = '</family><given>X</given> & "quoted" \x00\x07\x1b end'
    patient = dataclasses.replace(PATIENT, birth_name=sneaky)
    header = dataclasses.replace(HEADER, title=sneaky)
    raw = dataclasses.replace(TEXT.result, value=sneaky)
    document = build_cr_bio_n3(header, patient, [dataclasses.replace(TEXT, result=raw)], PDF)
    assert_deliverable(schema, document)
    root = parse(document)
    family = values(root, "//v3:patient/v3:name/v3:family/text()")
    assert family == ['</family><given>X</given> & "quoted"  end']
    assert values(root, "//v3:observation/v3:value/text()") == [family[0]]
    assert len(values(root, "//v3:patient/v3:name/v3:given")) == 2


def test_same_input_same_bytes() -> None:
    first = build_cr_bio_n3(HEADER, PATIENT, results(20), PDF)
    assert build_cr_bio_n3(HEADER, PATIENT, results(20), PDF) == first
    other = dataclasses.replace(HEADER, id_extension="CRBIO-0002")
    section_ids = "//v3:section/v3:id/@root"
    assert values(parse(first), section_ids) != values(
        parse(build_cr_bio_n3(other, PATIENT, results(20), PDF)), section_ids
    )
