"""The DMP sandbox's metadata oracle: ebRS 3.0 schema, XDS metadata, ANS value sets, CDA.

Each wrong message is the right one with one change; the refusal is a RegistryResponse
Failure with the XDS errorCode of ITI TF-3 Table 4.2.4.1-2, and its context names what
is wrong without quoting patient data.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from domain.xds.ebrim import Scheme
from ops.demo.samples import DOMINIQUE
from sandboxes.dmp_valuesets import ValueSetMissing, ValueSets, read_svs
from sandboxes.pki import SandboxPki, write_test_pki
from tests.unit.test_dmp_oracle_kit import (
    DATA,
    DOC_ID,
    IDENTITY,
    SET,
    Package,
    entry_path,
    package,
    refusal,
    sandbox_of,
    success,
)

INS_TEST = "1.2.250.1.213.1.4.10"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=IDENTITY.structure_id)


def code(scheme: str, value: str, coding_scheme: str | None = None) -> Callable[[Package], None]:
    def edit(pack: Package) -> None:
        found = pack.one(entry_path(f"/rim:Classification[@classificationScheme='{scheme}']"))
        found.set("nodeRepresentation", value)
        if coding_scheme is not None:
            pack.one(
                entry_path(
                    f"/rim:Classification[@classificationScheme='{scheme}']"
                    "/rim:Slot[@name='codingScheme']/rim:ValueList/rim:Value"
                )
            ).text = coding_scheme

    return edit


def drop(path: str) -> Callable[[Package], None]:
    def edit(pack: Package) -> None:
        pack.drop(path)

    return edit


def attribute(path: str, name: str, value: str) -> Callable[[Package], None]:
    def edit(pack: Package) -> None:
        pack.one(path).set(name, value)

    return edit


CASES = [
    # (what is wrong, edit, errorCode, a word of the context)
    ("no creationTime", drop(entry_path("/rim:Slot[@name='creationTime']")), "creationTime"),
    (
        "no sourcePatientInfo",
        drop(entry_path("/rim:Slot[@name='sourcePatientInfo']")),
        "sourcePatientInfo",
    ),
    ("no title", drop(entry_path("/rim:Name")), "title"),
    (
        "no author",
        drop(entry_path(f"/rim:Classification[@classificationScheme='{Scheme.DE_AUTHOR}']")),
        "author",
    ),
    (
        "no classCode",
        drop(entry_path(f"/rim:Classification[@classificationScheme='{Scheme.DE_CLASS}']")),
        "DocumentEntry",
    ),
    (
        "wrong classificationScheme",
        attribute(
            entry_path(f"/rim:Classification[@classificationScheme='{Scheme.DE_TYPE}']"),
            "classificationScheme",
            "urn:uuid:00000000-0000-4000-8000-000000000000",
        ),
        "classificationScheme",
    ),
    ("typeCode not in J07", code(Scheme.DE_TYPE, "99999-9"), "JDV_J07"),
    ("typeCode in another code system", code(Scheme.DE_TYPE, "11502-2", "1.2.3.4"), "JDV_J07"),
    ("classCode not in J57", code(Scheme.DE_CLASS, "99"), "JDV_J57"),
    ("formatCode not in J60", code(Scheme.DE_FORMAT, "urn:example:format"), "JDV_J60"),
    ("confidentialityCode not in J08", code(Scheme.DE_CONFIDENTIALITY, "X"), "JDV_J08"),
    ("facility not in J02", code(Scheme.DE_FACILITY, "SA99"), "JDV_J02"),
    ("practice not in J04", code(Scheme.DE_PRACTICE, "NOWHERE"), "JDV_J04"),
    (
        "no codingScheme",
        drop(entry_path(f"/rim:Classification[@classificationScheme='{Scheme.DE_TYPE}']/rim:Slot")),
        "codingScheme",
    ),
    (
        "unknown identificationScheme",
        attribute(
            entry_path(f"/rim:ExternalIdentifier[@identificationScheme='{Scheme.DE_UNIQUE_ID}']"),
            "identificationScheme",
            "urn:uuid:00000000-0000-4000-8000-000000000001",
        ),
        "identificationScheme",
    ),
    ("mimeType", attribute(entry_path(), "mimeType", "application/pdf"), "mimeType"),
    (
        "objectType",
        attribute(entry_path(), "objectType", "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"),
        "objectType",
    ),
    (
        "no SubmissionSet sourceId",
        drop(f"{SET}/rim:ExternalIdentifier[@identificationScheme='{Scheme.SS_SOURCE_ID}']"),
        "sourceId",
    ),
    ("no submissionTime", drop(f"{SET}/rim:Slot[@name='submissionTime']"), "submissionTime"),
    (
        "contentTypeCode not in J59",
        attribute(
            f"{SET}/rim:Classification[@classificationScheme='{Scheme.SS_CONTENT_TYPE}']",
            "nodeRepresentation",
            "00",
        ),
        "JDV_J59",
    ),
    (
        "no HasMember",
        drop(
            "//rim:Association[contains(@associationType, 'HasMember')][@targetObject=//rim:ExtrinsicObject[rim:ExternalIdentifier/@value='"
            + DOC_ID
            + "']/@id]"
        ),
        "HasMember",
    ),
    (
        "HasMember without SubmissionSetStatus",
        drop("//rim:Association[contains(@associationType, 'HasMember')]/rim:Slot"),
        "SubmissionSetStatus",
    ),
    ("not a SubmissionSet", drop("//rim:RegistryObjectList/rim:Classification"), "SubmissionSet"),
]


@pytest.mark.parametrize(("edit", "word"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_metadata_refusals(pki: SandboxPki, edit: Callable[[Package], None], word: str) -> None:
    sandbox = sandbox_of(pki)
    wrong = package(pki)
    edit(wrong)
    error_code, context = refusal(sandbox.file(*wrong.wire()))
    assert error_code == "XDSRegistryMetadataError"
    assert word in context
    assert DOMINIQUE.ins not in context
    assert not sandbox.filed
    assert success(sandbox.file(*package(pki).wire()))  # the right one, on the same sandbox


def test_the_request_must_be_valid_against_lcm_xsd(pki: SandboxPki) -> None:
    wrong = package(pki)
    del wrong.one(entry_path("/rim:Slot[@name='hash']")).attrib["name"]  # name is required
    error_code, context = refusal(sandbox_of(pki).file(*wrong.wire()))
    assert (error_code, "ebRS30/lcm.xsd" in context) == ("XDSRegistryMetadataError", True)


def patient(pack: Package, scheme: str, value: str) -> None:
    """Set the ExternalIdentifier ``scheme`` of the clinical entry or of the set."""
    owner = SET if scheme in {Scheme.SS_PATIENT_ID, Scheme.SS_UNIQUE_ID} else entry_path()
    pack.one(f"{owner}/rim:ExternalIdentifier[@identificationScheme='{scheme}']").set(
        "value", value
    )


@pytest.mark.parametrize(
    ("value", "error_code"),
    [
        (f"{DOMINIQUE.ins[:-1]}0^^^&{INS_TEST}&ISO^NH", "XDSUnknownPatientId"),  # its key fails
        (f"{DOMINIQUE.ins}^^^&1.2.3.4&ISO^NH", "XDSUnknownPatientId"),  # not an INS OID
        (f"{DOMINIQUE.ins}^^^&{INS_TEST}&ISO^PI", "XDSUnknownPatientId"),  # not ^NH
    ],
)
def test_the_patient_id_is_an_ins(pki: SandboxPki, value: str, error_code: str) -> None:
    wrong = package(pki)
    patient(wrong, Scheme.DE_PATIENT_ID, value)
    patient(wrong, Scheme.SS_PATIENT_ID, value)
    assert refusal(sandbox_of(pki).file(*wrong.wire()))[0] == error_code


def test_the_set_and_the_entry_name_the_same_patient(pki: SandboxPki) -> None:
    wrong = package(pki)
    patient(wrong, Scheme.SS_PATIENT_ID, f"184051234567841^^^&{INS_TEST}&ISO^NH")
    assert refusal(sandbox_of(pki).file(*wrong.wire()))[0] == "XDSPatientIdDoesNotMatch"


def test_hash_and_size_are_the_document_s(pki: SandboxPki) -> None:
    wrong = package(pki)
    wrong.one(entry_path("/rim:Slot[@name='hash']/rim:ValueList/rim:Value")).text = "0" * 40
    assert refusal(sandbox_of(pki).file(*wrong.wire()))[0] == "XDSRepositoryMetadataError"
    wrong = package(pki)
    wrong.one(entry_path("/rim:Slot[@name='size']/rim:ValueList/rim:Value")).text = "1"
    assert refusal(sandbox_of(pki).file(*wrong.wire()))[0] == "XDSRepositoryMetadataError"


def test_the_cda_id_is_the_unique_id(pki: SandboxPki) -> None:
    wrong = package(pki)
    patient(wrong, Scheme.DE_UNIQUE_ID, DOC_ID + "9")
    assert "uniqueId" in refusal(sandbox_of(pki).file(*wrong.wire()))[1]


def test_a_document_entry_without_its_document(pki: SandboxPki) -> None:
    wrong = package(pki)
    entry_id = str(wrong.one(entry_path()).get("id"))
    del wrong.parts[wrong.document_of(entry_id)]
    wrong.drop(f"//xdsb:Document[@id='{entry_id}']")
    assert refusal(sandbox_of(pki).file(*wrong.wire()))[0] == "XDSMissingDocument"


def test_value_sets_are_read_from_the_ans_svs_files() -> None:
    sets = ValueSets.load(DATA)
    assert sets.holds("J07", "11502-2", "2.16.840.1.113883.6.1")
    assert not sets.holds("J07", "11502-2", "1.2.3")
    assert "JDV_J07" in sets.sources["J07"]
    svs = b'<RetrieveValueSetResponse xmlns="urn:ihe:iti:svs:2008"><ValueSet><ConceptList><Concept code="A" codeSystem="1.2"/></ConceptList></ValueSet></RetrieveValueSetResponse>'
    assert read_svs(svs) == frozenset({("A", "1.2")})
    with pytest.raises(ValueSetMissing, match="JDV_J07"):
        ValueSets.load(DATA / "ihe-xsd")
