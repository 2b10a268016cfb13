"""The ANS's own CDA rules as the oracle (../shared/data/ans-tcda, run by Saxon): the ANS's
examples pass, the CDAs Relais builds pass, a wrong one is refused with the rule's own text,
and `relais cda check` says so to an integrator.

The rules folder is read-only in CI: :class:`ops.cda_rules.AnsRules` compiles in a copy.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.cda_validate import CdaSchema
from ops.cda_rules import AnsRules
from streams.transcode.cda_build import build_cr_bio_n3, build_cr_img_n3, build_n1
from streams.transcode.ldl_ses import APPROVED, IN_PROGRESS, build_ldl_ses
from tests.shared_data import shared
from tests.unit.test_cda_build import (
    HEADER,
    IMAGING,
    IMG_SECTIONS,
    IMG_STUDY,
    PATIENT,
    PDF,
    results,
)

RULES = shared("ans-tcda")
XSD = shared("cda-xsd")
LETTER = dataclasses.replace(
    HEADER,
    id_extension="LDL-0001",
    set_id_extension="LDL-0001",
    type_code="11490-0",
    type_display="Lettre de liaison à la sortie d'un établissement de soins",
    title="Lettre de liaison à la sortie",
)
LETTER_TEXT = [
    ("42349-1", "Motif de l'hospitalisation", "Chute à domicile."),
    ("42545-4", "Synthèse médicale du séjour", "Séjour sans complication.\nRetour à domicile."),
    ("10183-2", "Traitements à la sortie", "Paracétamol 1 g x 3 par jour.\nKinésithérapie."),
    ("18776-5", "Suites à donner", "Consultation dans un mois."),
]


@pytest.fixture(scope="module")
def rules() -> Iterator[AnsRules]:
    with AnsRules(RULES) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def schema() -> CdaSchema:
    return CdaSchema.load(XSD)


@pytest.mark.parametrize("name", sorted(p.name for p in shared("cda").glob("*.xml")))
def test_the_ans_examples_pass_their_own_rules(rules: AnsRules, name: str) -> None:
    """The oracle is sound: the ANS's published examples pass."""
    document = shared("cda", name).read_bytes()
    assert rules.check(document) == []


RELAIS_CDAS = {
    "CR-BIO N3, 5 results and the PDF": lambda: build_cr_bio_n3(HEADER, PATIENT, results(5), PDF),
    "CR-BIO N3, 200 results and the PDF": lambda: build_cr_bio_n3(
        HEADER, PATIENT, results(200), PDF
    ),
    "CR-BIO N3, 1 result, no PDF": lambda: build_cr_bio_n3(HEADER, PATIENT, results(1), None),
    "CR-IMG N3, study with its series and instance, and the PDF": lambda: build_cr_img_n3(
        IMAGING, PATIENT, IMG_SECTIONS, PDF, study=IMG_STUDY
    ),
    "CR-IMG N3, the study only, no PDF, no technique section given": lambda: build_cr_img_n3(
        IMAGING,
        PATIENT,
        [("19005-8", "Conclusion", "Examen normal.")],
        None,
        study=dataclasses.replace(IMG_STUDY, series_uid=None, sop_instance_uid=None),
    ),
    "N1 from a PDF (a discharge letter)": lambda: build_n1(LETTER, PATIENT, PDF),
    "N1 from a report's text (text/plain)": lambda: build_n1(
        IMAGING, PATIENT, "Conclusion\nExamen normal, côté droit.".encode(), "text/plain"
    ),
    "LDL-SES N3, the letter's sections as text, and the PDF": lambda: build_ldl_ses(
        LETTER, PATIENT, LETTER_TEXT, APPROVED, PDF
    ),
    "LDL-SES N3, in progress, no PDF": lambda: build_ldl_ses(
        LETTER, PATIENT, LETTER_TEXT[:3], IN_PROGRESS, None
    ),
    "N1 from a PDF (a lab report)": lambda: build_n1(HEADER, PATIENT, PDF),
}


@pytest.mark.parametrize("kind", sorted(RELAIS_CDAS))
def test_the_cdas_relais_builds_pass_xsd_and_the_ans_rules(
    rules: AnsRules, schema: CdaSchema, kind: str
) -> None:
    document = RELAIS_CDAS[kind]()
    assert schema.validate(document) == []
    judged = rules.rule_sets(document)
    assert "profils/IHE.sch" in judged
    assert "profils/CI-SIS_ModelesDeContenusCDA.sch" in judged
    if kind.startswith("CR-BIO"):
        assert judged[0] == "CI-SIS_BIO-CR-BIO_2024.01.sch"
    if kind.startswith("CR-IMG"):
        assert judged[0] == "CI-SIS_IMG-CR-IMG_2024.01.sch"
    if kind.startswith("LDL-SES"):
        assert judged[0] == "CI-SIS_LDL-SES_2022.01.sch"
    assert [str(f) for f in rules.check(document)] == []


def test_a_wrong_cda_is_refused_with_the_rule_s_own_text(rules: AnsRules) -> None:
    good = build_cr_bio_n3(HEADER, PATIENT, results(5), PDF)
    title = b"<title>Compte rendu d'examens biologiques</title>"
    assert title in good
    findings = rules.check(good.replace(title, b"", 1))
    assert len(findings) == 1, [str(f) for f in findings]
    assert findings[0].rules == "CI-SIS_BIO-CR-BIO_2024.01"
    assert "title est obligatoire" in findings[0].text
    assert findings[0].location.startswith("/ClinicalDocument"), findings[0].location


def test_an_error_the_ans_states_as_a_report_is_a_finding(rules: AnsRules) -> None:
    """E_medications_fr forbids, with <report>, a COMP observation that is not a Simple
    Observation inside a Medications entry: a fired report is a failure too."""
    good = build_ldl_ses(LETTER, PATIENT, LETTER_TEXT[:3], APPROVED, None)
    product = b"<consumable>"
    assert good.count(product) == 1
    wrong = (
        b'<entryRelationship typeCode="COMP"><observation classCode="OBS" moodCode="EVN">'
        b'<templateId root="1.2.250.1.999.1"/><code nullFlavor="UNK"/>'
        b'<statusCode code="completed"/></observation></entryRelationship>'
    )
    bad = good.replace(b"</consumable>", b"</consumable>" + wrong, 1)
    findings = rules.check(bad)
    assert [f.rules for f in findings] == ["CI-SIS_ModelesDeContenusCDA"], [
        str(f) for f in findings
    ]
    assert "[E_medications_fr] Erreur de conformité CI-SIS" in findings[0].text
    assert "/entryRelationship" in findings[0].location


def test_a_file_that_is_not_xml_is_one_finding_and_no_rule_run(rules: AnsRules) -> None:
    [finding] = rules.check(b"%PDF-1.4 not a CDA")
    assert finding.rules == "XML"
    assert "not well-formed XML" in finding.text


def relais(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_relais_cda_check_tells_an_integrator(tmp_path: Path) -> None:
    good = tmp_path / "good.xml"
    good.write_bytes(build_cr_bio_n3(HEADER, PATIENT, results(5), PDF))
    bad = tmp_path / "bad.xml"
    bad.write_bytes(good.read_bytes().replace(b"<title>Compte rendu", b"<title>CR", 1))
    result = relais(
        "cda", "check", str(good), str(bad), "--rules", str(RULES), "--xsd-dir", str(XSD)
    )
    assert result.returncode == 1, result.stderr
    assert f"{good}: conformant (XSD, CI-SIS_BIO-CR-BIO_2024.01, IHE" in result.stdout
    assert f"{bad}: 1 failed rule(s)" in result.stdout
    assert "title est obligatoire" in result.stdout
    assert result.stdout.rstrip().endswith("1 of 2 conformant")


def test_a_folder_without_the_rules_is_one_line(tmp_path: Path) -> None:
    document = tmp_path / "cda.xml"
    document.write_bytes(build_n1(LETTER, PATIENT, PDF))
    result = relais("cda", "check", str(document), "--rules", str(tmp_path))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert "holds no ANS rules" in errors[0]
    assert "Traceback" not in result.stderr
