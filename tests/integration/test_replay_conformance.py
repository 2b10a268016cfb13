"""A replay's CDAs, as filed in the DMP sandbox, pass the ANS's own rules: 100 % conformant.

A short replay (`relais load`'s runner: the real broker, workers, MLLP gateway, producer
library and DMP sandbox) sends every kind of document in equal shares: lab reports with a
CR-BIO N3 of 5-200 results, RIS reports as text (Relais builds the CR-IMG N3, or an N1 of
the text when the study's UID is missing), hospital
discharge letters as text (Relais builds the LDL-SES N3) or as PDF (Relais wraps them as N1)
and city doctors' CDA files (N1). Every CDA the DMP
sandbox holds at the end is checked against the CDA R2 schema and the ANS's schematrons:
the model's, IHE.sch and CI-SIS_ModelesDeContenusCDA.sch (ops.cda_rules, compiled once per
session in a temporary copy: the rules folder is read-only in CI).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from lxml import etree

from domain.cda_validate import CdaSchema
from ops.cda_rules import AnsRules
from ops.load.profile import CONSULTATION, CR_BIO, CR_IMG, LETTER, Profile, Sector, Shares
from ops.load.runner import LoadConfig, LoadResult, run_load
from tests.shared_data import shared

V3 = {"v3": "urn:hl7-org:v3"}
#: every kind in equal shares, so that a short replay sends each of them several times
MIX = (
    Sector("LAB", 1.0, CR_BIO),
    Sector("RADIOLOGY", 1.0, CR_IMG),
    Sector("HOSPITAL", 1.0, LETTER),
    Sector("CITY", 1.0, CONSULTATION),
)
DOCUMENTS = 30


@pytest.fixture(scope="session")
def ans_rules() -> Iterator[AnsRules]:
    with AnsRules(shared("ans-tcda")) as rules:
        yield rules


@pytest.fixture(scope="module")
async def replay(tmp_path_factory: pytest.TempPathFactory) -> LoadResult:
    profile = Profile(
        documents=DOCUMENTS,
        rate=10.0,
        mix=MIX,
        shares=Shares(unqualified=0.0, duplicates=0.0, bad_inputs=0.0),
        seed=11,
        patients=200,
    )
    config = LoadConfig(
        profile=profile,
        out_dir=tmp_path_factory.mktemp("conformance"),
        cda_xsd_dir=shared("cda-xsd"),
        mail=False,
        drain_timeout_s=120.0,
        progress_s=30.0,
    )
    return await run_load(config, lambda line: None)


def kind_of(cda: bytes) -> str:
    """The document's type code and level, e.g. ``18748-4 N3``."""
    root = etree.fromstring(cda)
    level = "N1" if root.find("v3:component/v3:nonXMLBody", V3) is not None else "N3"
    return f"{root.find('v3:code', V3).get('code')} {level}"


def test_the_replay_files_every_kind_of_cda_relais_emits(replay: LoadResult) -> None:
    assert replay.accounting.ok, replay.accounting.summary()
    kinds = Counter(kind_of(cda) for cda in replay.filed.values())
    assert len(replay.filed) == DOCUMENTS, kinds
    assert set(kinds) == {
        "11502-2 N3",
        "18748-4 N3",
        "18748-4 N1",  # a RIS report without its study's UID: its text as N1
        "11490-0 N3",
        "11490-0 N1",
        "11488-4 N1",
    }


def test_every_filed_cda_passes_the_schema_and_the_ans_rules(
    replay: LoadResult, ans_rules: AnsRules
) -> None:
    schema = CdaSchema.load(shared("cda-xsd"))
    failures = {
        uid: [*schema.validate(cda), *map(str, ans_rules.check(cda))]
        for uid, cda in replay.filed.items()
    }
    failing = {uid: found[:3] for uid, found in failures.items() if found}
    conformant = len(failures) - len(failing)
    kinds = Counter(kind_of(cda) for cda in replay.filed.values())
    print(f"{len(failures)} CDAs filed, {conformant} conformant: {dict(sorted(kinds.items()))}")
    assert failures
    assert failing == {}
    assert conformant == len(failures) == DOCUMENTS
