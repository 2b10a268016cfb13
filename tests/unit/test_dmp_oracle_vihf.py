"""The DMP sandbox's VIHF oracle: SAML 2.0 schema, XML signature, certificate, attributes.

The wrong VIHFs that must fail on a rule other than the signature are signed again by
the test (signxml) with the structure's key, so that only the rule under test is broken.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from lxml import etree

from sandboxes.dmp_refusals import Faulted
from sandboxes.dmp_vihf import RESOURCE_ID, verified
from sandboxes.dmp_xml import NS
from sandboxes.pki import SandboxPki, write_test_pki
from tests.unit.test_dmp_oracle_kit import (
    DATA,
    IDENTITY,
    fault,
    package,
    refusal,
    replace_vihf,
    resign,
    sandbox_of,
    success,
)

SCHEMAS = DATA / "ihe-xsd"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=IDENTITY.structure_id)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    """Another CA's structure, with the same structure id: not trusted."""
    return write_test_pki(tmp_path_factory.mktemp("foreign"), structure_id=IDENTITY.structure_id)


def assertion_of(pki: SandboxPki) -> etree._Element:
    return package(pki).one("//wsse:Security/saml:Assertion")


def judge(
    pki: SandboxPki, assertion: etree._Element, client_cert: x509.Certificate | None = None
) -> str:
    """'' when the VIHF passes, else the fault subcode and reason."""
    try:
        verified(
            assertion,
            ca_file=pki.ca_cert,
            schema_dir=SCHEMAS,
            now=datetime.now(UTC),
            client_cert=client_cert,
        )
    except Faulted as exc:
        return f"{exc.code}: {exc.detail}"
    return ""


def cert_of(pki: SandboxPki) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.client_cert.read_bytes())


def without_attribute(name: str) -> Callable[[etree._Element], None]:
    def edit(assertion: etree._Element) -> None:
        for found in assertion.xpath(f"//saml:Attribute[@Name='{name}']", namespaces=NS):
            found.getparent().remove(found)

    return edit


def test_the_right_vihf_passes_and_gives_its_attributes(pki: SandboxPki) -> None:
    assertion = assertion_of(pki)
    assert judge(pki, assertion, cert_of(pki)) == ""
    vihf = verified(
        assertion, ca_file=pki.ca_cert, schema_dir=SCHEMAS, now=datetime.now(UTC), client_cert=None
    )
    assert vihf.value(RESOURCE_ID).endswith("&1.2.250.1.213.1.4.10&ISO^NH")
    assert vihf.value("Identifiant_Structure") == IDENTITY.structure_id
    resigned = resign(assertion, pki, lambda a: None)  # the test's own signer is right too
    assert judge(pki, resigned, cert_of(pki)) == ""


def test_a_vihf_without_resource_id_is_refused(pki: SandboxPki) -> None:
    wrong = resign(assertion_of(pki), pki, without_attribute(RESOURCE_ID))
    assert judge(pki, wrong) == f"wsse:InvalidSecurity: the VIHF lacks the attribute {RESOURCE_ID}"
    sandbox = sandbox_of(pki)
    pack = replace_vihf(package(pki), wrong)
    assert fault(sandbox.file(*pack.wire()))[1] == "wsse:InvalidSecurity"
    assert not sandbox.filed


@pytest.mark.parametrize(
    "name",
    [
        "VIHF_Version",
        "Identifiant_Structure",
        "urn:oasis:names:tc:xacml:2.0:subject:role",
        "Ressource_URN",
        "LPS_ID_HOMOLOGATION_DMP",
    ],
)
def test_each_required_attribute(pki: SandboxPki, name: str) -> None:
    wrong = resign(assertion_of(pki), pki, without_attribute(name))
    assert judge(pki, wrong).startswith("wsse:InvalidSecurity: the VIHF lacks")


def value_of(name: str, value: str) -> Callable[[etree._Element], None]:
    def edit(assertion: etree._Element) -> None:
        [found] = assertion.xpath(
            f"//saml:Attribute[@Name='{name}']/saml:AttributeValue", namespaces=NS
        )
        found.text = value

    return edit


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("Ressource_URN", "urn:other", "Ressource_URN"),
        ("VIHF_Version", "2.0", "VIHF_Version"),
        ("Authentification_Mode", "AUTRE", "Authentification_Mode"),
        ("Secteur_Activite", "SA25", "Secteur_Activite"),
        (RESOURCE_ID, "279035121518989", "resource-id"),
        ("Identifiant_Structure", "1999999999", "Identifiant_Structure"),
    ],
)
def test_attribute_values(pki: SandboxPki, name: str, value: str, reason: str) -> None:
    wrong = resign(assertion_of(pki), pki, value_of(name, value))
    assert reason in judge(pki, wrong)


def test_the_assertion_must_be_valid_against_the_saml_schema(pki: SandboxPki) -> None:
    def no_version(assertion: etree._Element) -> None:
        del assertion.attrib["Version"]

    wrong = resign(assertion_of(pki), pki, no_version)
    assert "sstc-saml-schema-assertion-2.0.xsd" in judge(pki, wrong)


def test_a_tampered_vihf_fails_its_signature(pki: SandboxPki) -> None:
    tampered = assertion_of(pki)
    value_of(RESOURCE_ID, "1840512345678^^^&1.2.250.1.213.1.4.10&ISO^NH")(tampered)
    assert judge(pki, tampered).startswith("wsse:FailedAuthentication: the VIHF signature fails")


def test_an_unsigned_vihf_is_refused(pki: SandboxPki) -> None:
    unsigned = assertion_of(pki)
    unsigned.remove(unsigned.find("ds:Signature", NS))
    assert judge(pki, unsigned).startswith("wsse:InvalidSecurity")


def test_the_certificate_must_chain_to_the_trusted_ca(pki: SandboxPki, foreign: SandboxPki) -> None:
    assert "not issued by the trusted CA" in judge(pki, assertion_of(foreign))


def test_the_certificate_must_be_the_tls_one(pki: SandboxPki, foreign: SandboxPki) -> None:
    assert "TLS session" in judge(pki, assertion_of(pki), cert_of(foreign))


def test_an_expired_vihf_is_refused(pki: SandboxPki) -> None:
    def expired(assertion: etree._Element) -> None:
        [conditions] = assertion.xpath("saml:Conditions", namespaces=NS)
        past = datetime.now(UTC) - timedelta(hours=2)
        conditions.set("NotOnOrAfter", past.strftime("%Y-%m-%dT%H:%M:%SZ"))

    assert "expired" in judge(pki, resign(assertion_of(pki), pki, expired))


def test_the_vihf_patient_must_be_the_submission_s(pki: SandboxPki) -> None:
    other = resign(
        assertion_of(pki),
        pki,
        value_of(RESOURCE_ID, "184051234567841^^^&1.2.250.1.213.1.4.10&ISO^NH"),
    )
    sandbox = sandbox_of(pki)
    code, _ = refusal(sandbox.file(*replace_vihf(package(pki), other).wire()))
    assert code == "XDSPatientIdDoesNotMatch"
    assert success(sandbox.file(*package(pki).wire()))
