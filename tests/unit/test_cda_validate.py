"""CDA validation: the CDA R2 schema (loaded once) and the project's CI-SIS header checks."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from domain.cda_validate import (
    CR_BIO_RULES,
    RULES,
    CdaInvalid,
    CdaSchema,
    check_document,
    header_problems,
)
from domain.document_id import HL7V3, safe_parser
from ops.demo.samples import DOMINIQUE, LAB, cda
from streams.transcode.cda_build import build_cr_bio_n3, build_n1
from tests.shared_data import shared
from tests.unit.test_cda_build import HEADER, PATIENT, PDF, results

NS = {"v3": HL7V3}
EXAMPLES = sorted(shared("cda").glob("*.xml"))
PATIENT_ROLE = "/v3:ClinicalDocument/v3:recordTarget/v3:patientRole"


@pytest.fixture(scope="module")
def schema() -> CdaSchema:
    return CdaSchema.load(shared("cda-xsd"))


def cr_bio(**changes: object) -> bytes:
    header = dataclasses.replace(HEADER, **changes)  # type: ignore[arg-type]
    return build_cr_bio_n3(header, PATIENT, results(20), PDF)


def edited(document: bytes, edit: Callable[[etree._Element], None]) -> bytes:
    root = etree.fromstring(document, safe_parser())
    edit(root)
    return etree.tostring(root)


def removing(path: str) -> Callable[[etree._Element], None]:
    def edit(root: etree._Element) -> None:
        found = root.xpath(path, namespaces=NS)
        assert isinstance(found, list)
        assert found, f"nothing at {path}"
        for element in found:
            assert isinstance(element, etree._Element)
            parent = element.getparent()
            assert parent is not None
            parent.remove(element)

    return edit


def setting(path: str, attribute: str, value: str) -> Callable[[etree._Element], None]:
    def edit(root: etree._Element) -> None:
        found = root.xpath(path, namespaces=NS)
        assert isinstance(found, list)
        assert found, f"nothing at {path}"
        for element in found:
            assert isinstance(element, etree._Element)
            element.set(attribute, value)

    return edit


def rules(problems: list[str]) -> set[str]:
    return {problem.split(":")[0] for problem in problems}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_ans_examples_are_valid(schema: CdaSchema, path: Path) -> None:
    document = path.read_bytes()
    assert schema.validate(document) == []
    assert header_problems(document) == []
    check_document(schema, document)


def test_the_examples_are_all_there() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "BIO-CR-BIO_2024.01_TSH_1.xml",
        "IMG_CR_IMG_2024.01.xml",
        "LDL-SES_2022.01.xml",
        "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
    }


DOC = "/v3:ClinicalDocument"
SECTIONS = f"{DOC}/v3:component/v3:structuredBody/v3:component"
REMOVALS = [
    (f"{DOC}/v3:realmCode", "realm-code"),
    (f"{DOC}/v3:typeId", "type-id"),
    (f"{DOC}/v3:templateId[@root='2.16.840.1.113883.2.8.2.1']", "template-hl7-france"),
    (f"{DOC}/v3:templateId[@root='1.2.250.1.213.1.1.1.1']", "template-ci-sis"),
    (f"{DOC}/v3:id", "document-id"),
    (f"{DOC}/v3:code", "document-code"),
    (f"{DOC}/v3:title", "title"),
    (f"{DOC}/v3:effectiveTime", "effective-time"),
    (f"{DOC}/v3:confidentialityCode", "confidentiality"),
    (f"{DOC}/v3:languageCode", "language"),
    (f"{DOC}/v3:setId", "set-id"),
    (f"{DOC}/v3:versionNumber", "version-number"),
    (f"{PATIENT_ROLE}/v3:id[@root='1.2.250.1.213.1.4.10']", "patient-ins"),
    (f"{PATIENT_ROLE}/v3:id[@root='1.2.250.1.213.1.4.10']", "ins-matricule"),
    (f"{PATIENT_ROLE}/v3:patient/v3:name/v3:family", "birth-name"),
    (f"{PATIENT_ROLE}/v3:patient/v3:administrativeGenderCode", "gender"),
    (f"{PATIENT_ROLE}/v3:patient/v3:birthTime", "birth-time"),
    (f"{DOC}/v3:author/v3:time", "author"),
    (f"{DOC}/v3:author/v3:assignedAuthor/v3:id", "author"),
    (f"{DOC}/v3:custodian//v3:representedCustodianOrganization/v3:id", "custodian"),
    (f"{DOC}/v3:legalAuthenticator/v3:time", "legal-authenticator"),
    (f"{DOC}/v3:legalAuthenticator/v3:signatureCode", "legal-authenticator"),
    (f"{DOC}/v3:legalAuthenticator/v3:assignedEntity/v3:id", "legal-authenticator"),
    (f"{DOC}/v3:relatedDocument/v3:parentDocument/v3:id", "replacement"),
    (f"{DOC}/v3:code", "cr-bio-code"),
    (f"{DOC}/v3:title", "cr-bio-title"),
    (f"{SECTIONS}[v3:section/v3:templateId/@root='1.3.6.1.4.1.19376.1.3.3.2.1']", "cr-bio-chapter"),
    (f"{SECTIONS}[v3:section/v3:templateId/@root='1.2.250.1.213.1.1.2.243']", "cr-bio-pdf-copy"),
    (f"{SECTIONS}/v3:section/v3:entry/v3:organizer", "cr-bio-pdf-copy"),
]


@pytest.mark.parametrize(("path", "rule"), REMOVALS, ids=[f"{r}-{p}" for p, r in REMOVALS])
def test_removing_a_required_element_names_the_rule(path: str, rule: str) -> None:
    document = cr_bio(replaces="1.2.250.1.999.7.1.CRBIO-0000", version=2)
    assert header_problems(document) == []
    assert rule in rules(header_problems(edited(document, removing(path))))


def test_every_rule_is_exercised() -> None:
    names = {name for name, _, _ in RULES + CR_BIO_RULES}
    assert names == {rule for _, rule in REMOVALS}


ALTERATIONS = [
    (f"{DOC}/v3:realmCode", "code", "BE", "realm-code"),
    (f"{DOC}/v3:typeId", "extension", "POCD_HD000041", "type-id"),
    (f"{DOC}/v3:code", "codeSystem", "2.16.840.1.113883.6.96", "document-code"),
    (f"{DOC}/v3:effectiveTime", "value", "20240115103000", "effective-time"),
    (f"{DOC}/v3:effectiveTime", "value", "20240115+0100", "effective-time"),
    (f"{DOC}/v3:effectiveTime", "value", "20240115103000.123+0100", "effective-time"),
    (f"{DOC}/v3:confidentialityCode", "code", "X", "confidentiality"),
    (f"{DOC}/v3:confidentialityCode", "codeSystem", "1.2.3", "confidentiality"),
    (f"{DOC}/v3:languageCode", "code", "en-US", "language"),
    (f"{DOC}/v3:versionNumber", "value", "0", "version-number"),
    (f"{PATIENT_ROLE}/v3:id[1]", "root", "1.2.250.1.213.1.4.2", "patient-ins"),
    (f"{PATIENT_ROLE}/v3:id[1]", "extension", "279035121518988", "ins-matricule"),
    (f"{PATIENT_ROLE}/v3:id[1]", "extension", "27903512151898", "ins-matricule"),
    (f"{PATIENT_ROLE}/v3:patient/v3:name/v3:family", "qualifier", "CL", "birth-name"),
    (f"{PATIENT_ROLE}/v3:patient/v3:administrativeGenderCode", "codeSystem", "1.2", "gender"),
    (f"{DOC}/v3:legalAuthenticator/v3:signatureCode", "code", "X", "legal-authenticator"),
    (f"{DOC}/v3:code", "code", "11490-0", "cr-bio-code"),
]


@pytest.mark.parametrize(("path", "attribute", "value", "rule"), ALTERATIONS)
def test_a_wrong_value_names_the_rule(path: str, attribute: str, value: str, rule: str) -> None:
    document = edited(cr_bio(), setting(path, attribute, value))
    assert rule in rules(header_problems(document))


def test_cr_bio_title_is_fixed() -> None:
    def retitle(root: etree._Element) -> None:
        title = root.find(f"{{{HL7V3}}}title")
        assert title is not None
        title.text = "Résultats"

    assert rules(header_problems(edited(cr_bio(), retitle))) == {"cr-bio-title"}


def test_cr_bio_rules_apply_to_cr_bio_only() -> None:
    n1 = build_n1(dataclasses.replace(HEADER, title="Résultats"), PATIENT, PDF)
    assert header_problems(n1) == []


def test_messages_never_quote_the_patient() -> None:
    bad = edited(cr_bio(), setting(f"{PATIENT_ROLE}/v3:id[1]", "extension", "279035121518988"))
    bad = edited(bad, removing(f"{PATIENT_ROLE}/v3:patient/v3:birthTime"))
    problems = header_problems(bad)
    assert rules(problems) == {"ins-matricule", "birth-time"}
    text = " ".join(problems)
    for secret in ("27903512151898", "PAT-TROIS", "DOMINIQUE", "19790328"):
        assert secret not in text


def test_schema_messages_carry_line_numbers(schema: CdaSchema) -> None:
    def intrude(root: etree._Element) -> None:
        root.insert(2, etree.Element(f"{{{HL7V3}}}intruder"))

    document = edited(cr_bio(), intrude)
    messages = schema.validate(document)
    assert messages
    assert messages[0].startswith("line ")
    assert "intruder" in messages[0]
    with pytest.raises(CdaInvalid) as raised:
        check_document(schema, document)
    assert raised.value.messages == tuple(messages)


def test_check_document_collects_both_kinds(schema: CdaSchema) -> None:
    document = edited(cr_bio(), removing(f"{DOC}/v3:typeId"))
    with pytest.raises(CdaInvalid) as raised:
        check_document(schema, document)
    assert any(m.startswith("type-id:") for m in raised.value.messages)
    assert any(m.startswith("line ") for m in raised.value.messages)
    check_document(schema, cr_bio())


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&secret;</title></ClinicalDocument>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol3;</title></ClinicalDocument>"""
EXTERNAL_DTD = b"""<!DOCTYPE ClinicalDocument SYSTEM "http://attacker.invalid/cda.dtd">
<ClinicalDocument xmlns="urn:hl7-org:v3"/>"""


@pytest.mark.parametrize(
    ("document", "rule"),
    [
        (XXE, "doctype"),
        (LAUGHS, "doctype"),
        (EXTERNAL_DTD, "doctype"),
        (b"<ClinicalDocument xmlns='urn:hl7-org:v3'><title>", "well-formed"),
        (b"", "well-formed"),
        (b"\xff\xfe not xml", "well-formed"),
        (b"<ClinicalDocument/>", "root"),
        (b"<html xmlns='urn:hl7-org:v3'/>", "root"),
    ],
    ids=["xxe", "billion-laughs", "external-dtd", "truncated", "empty", "binary", "no-ns", "html"],
)
def test_hostile_or_broken_documents_are_refused(
    schema: CdaSchema, document: bytes, rule: str
) -> None:
    for problems in (schema.validate(document), header_problems(document)):
        assert len(problems) == 1
        assert problems[0].startswith(f"{rule}:")
        assert "lollol" not in problems[0]
    with pytest.raises(CdaInvalid):
        check_document(schema, document)


def test_validate_is_thread_safe(schema: CdaSchema) -> None:
    good = cr_bio()
    bad = edited(good, removing(f"{DOC}/v3:typeId"))
    expected = {good: schema.validate(good), bad: schema.validate(bad)}
    assert expected[good] == []
    assert expected[bad]
    failures: list[str] = []

    def work(document: bytes) -> None:
        for _ in range(20):
            if schema.validate(document) != expected[document]:
                failures.append("mismatch")

    threads = [threading.Thread(target=work, args=(d,)) for d in (good, bad) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_schema_messages_never_quote_a_value() -> None:
    schema = CdaSchema.load(shared("cda-xsd"))
    document = cda(LAB, DOMINIQUE, "1.2.3.4.5", "x").replace(
        b'<birthTime value="19790328"/>', b'<birthTime value="28/03/1979 PATIENTSECRET"/>', 1
    )
    messages = schema.validate(document)
    assert messages, "the bad birth time must be reported"
    assert not any("PATIENTSECRET" in m or "28/03/1979" in m for m in messages)
