"""The VIHF: built, signed with the structure's key, judged by the DMP sandbox's own checks.

The assertion is verified with :mod:`sandboxes.dmp_vihf` (SAML schema, signature over the
assertion, trusted CA, validity window, attributes): an oracle written apart from the
client, never the client's own reading.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from consumers.ihe.vihf import (
    PURPOSE_OF_USE,
    RESOURCE_ID,
    SUBJECT_ROLE,
    Role,
    SigningKey,
    VihfError,
    VihfIdentity,
    signed_vihf,
)
from consumers.ihe.vihf_cache import REUSE, VihfCache
from sandboxes.dmp_refusals import Faulted
from sandboxes.dmp_vihf import Vihf, verified
from sandboxes.pki import SandboxPki, write_test_pki
from tests.unit.test_dmp_oracle_kit import DATA

PATIENT = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
# An hour after collection: the test PKI is made when this module's first test runs (in a
# full run, many minutes after collection) and its certificates are valid from then on.
NOW = datetime.now(UTC) + timedelta(hours=1)
IDENTITY = VihfIdentity(
    structure_id="1120459876",
    subject_id="801234567866",
    subject_name="DEMO Biologiste",
    roles=(Role("10", "1.2.250.1.71.1.2.7", "Médecin"), Role("SM03", "1.2.250.1.71.4.2.5")),
    activity_sector="SA25^1.2.250.1.71.4.2.4",
    lps_id="relais-test",
    lps_name="Relais",
    lps_version="0.1.0",
    lps_homologation="SANDBOX",
)
SAML = {"saml": "urn:oasis:names:tc:SAML:2.0:assertion", "ds": "http://www.w3.org/2000/09/xmldsig#"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=IDENTITY.structure_id)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("other"), structure_id=IDENTITY.structure_id)


def judged(assertion: bytes | etree._Element, pki: SandboxPki, now: datetime = NOW) -> Vihf:
    """The sandbox's verdict (:class:`Faulted` when it refuses)."""
    element = etree.fromstring(assertion) if isinstance(assertion, bytes) else assertion
    return verified(
        element, ca_file=pki.ca_cert, schema_dir=DATA / "ihe-xsd", now=now, client_cert=None
    )


def key(pki: SandboxPki) -> SigningKey:
    return SigningKey(pki.client_cert.read_bytes(), pki.client_key.read_bytes())


def signed(pki: SandboxPki) -> bytes:
    return bytes(etree.tostring(signed_vihf(IDENTITY, PATIENT, key(pki), now=NOW)))


def test_a_signed_assertion_verifies_and_says_who_does_what(pki: SandboxPki) -> None:
    verified = judged(signed(pki), pki)
    assert verified.subject == "801234567866"
    assert verified.value("Identifiant_Structure") == "1120459876"
    assert verified.value("Authentification_Mode") == "INDIRECTE"
    assert verified.value("Ressource_URN") == "urn:dmp"
    assert verified.value(RESOURCE_ID) == PATIENT
    assert verified.attributes[SUBJECT_ROLE] == ("10^1.2.250.1.71.1.2.7", "SM03^1.2.250.1.71.4.2.5")
    assert verified.value(PURPOSE_OF_USE) == "normal^1.2.250.1.213.1.1.4.248"
    assert verified.certificate.subject.rfc4514_string().startswith("CN=RELAIS TEST STRUCTURE")


def test_the_assertion_is_saml_with_the_signature_after_the_issuer(pki: SandboxPki) -> None:
    root = etree.fromstring(signed(pki))
    assert root.tag == "{urn:oasis:names:tc:SAML:2.0:assertion}Assertion"
    assert [etree.QName(child).localname for child in root][:3] == [
        "Issuer",
        "Signature",
        "Subject",
    ]
    issuer = root.findtext("saml:Issuer", None, SAML)
    assert issuer is not None
    assert "OU=1120459876" in issuer
    reference = root.find("ds:Signature/ds:SignedInfo/ds:Reference", SAML)
    assert reference is not None
    assert reference.get("URI") == "#" + root.get("ID", "")
    assert root.find("saml:Conditions", SAML) is not None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b">1120459876<", b">1999999999<"),  # another structure
        (b"279035121518989", b"277010115400329"),  # another patient
        (b">INDIRECTE<", b">DIRECTE<"),
    ],
)
def test_a_tampered_assertion_fails(pki: SandboxPki, old: bytes, new: bytes) -> None:
    data = signed(pki)
    assert old in data
    with pytest.raises(Faulted, match="signature fails"):
        judged(data.replace(old, new), pki)


def test_a_certificate_from_another_ca_is_refused(pki: SandboxPki, foreign: SandboxPki) -> None:
    with pytest.raises(Faulted, match="trusted CA"):
        judged(signed(foreign), pki)
    # the same assertion verifies against its own CA: the refusal is the trust, not the form
    assert judged(signed(foreign), foreign).subject == IDENTITY.subject_id


def test_an_unsigned_assertion_is_refused(pki: SandboxPki) -> None:
    root = etree.fromstring(signed(pki))
    signature = root.find("ds:Signature", SAML)
    assert signature is not None
    root.remove(signature)
    with pytest.raises(Faulted):
        judged(root, pki)


@pytest.mark.parametrize(
    ("shift", "reason"),
    [(timedelta(minutes=-11), "not valid yet"), (timedelta(minutes=11), "expired")],
)
def test_an_assertion_outside_its_window_is_refused(
    pki: SandboxPki, shift: timedelta, reason: str
) -> None:
    """Five minutes of life (LIFETIME), judged with the sandbox's five minutes of skew."""
    at = NOW + timedelta(hours=1)  # well inside the test certificate's validity
    assertion = signed_vihf(IDENTITY, PATIENT, key(pki), now=at)
    with pytest.raises(Faulted, match=reason):
        judged(assertion, pki, at + shift)
    assert judged(assertion, pki, at + timedelta(minutes=4)).subject


def test_the_identity_must_be_complete(pki: SandboxPki) -> None:
    with pytest.raises(VihfError, match="lps_homologation"):
        signed_vihf(replace(IDENTITY, lps_homologation=""), PATIENT, key(pki), now=NOW)
    with pytest.raises(VihfError, match="PEM"):
        signed_vihf(IDENTITY, PATIENT, SigningKey(b"not a certificate"), now=NOW)


def test_the_key_is_never_printed(pki: SandboxPki) -> None:
    assert "PRIVATE" not in repr(key(pki))


def test_the_structure_key_is_loaded_once_and_a_bad_one_is_named(pki: SandboxPki) -> None:
    signing = key(pki)
    first = signing.private_key
    signed_vihf(IDENTITY, PATIENT, signing, now=NOW)
    assert signing.private_key is first  # not parsed again for the next request
    with pytest.raises(VihfError, match="PEM private key"):
        signed_vihf(IDENTITY, PATIENT, SigningKey(pki.client_cert.read_bytes(), b"junk"), now=NOW)


def test_a_patient_s_vihf_is_reused_while_valid_and_each_copy_verifies(pki: SandboxPki) -> None:
    cache = VihfCache(IDENTITY, key(pki))
    other = "1770121154003291^^^&1.2.250.1.213.1.4.10&ISO^NH"
    first = cache.signed(PATIENT, NOW)
    again = cache.signed(PATIENT, NOW + timedelta(minutes=3))
    assert cache.signatures == 1
    assert first is not again  # a copy each time: the SOAP header takes it
    for vihf, at in ((first, NOW), (again, NOW + timedelta(minutes=3))):
        envelope = etree.Element("Security")
        envelope.append(vihf)  # inside another document, as in the request
        assert judged(vihf, pki, at).attributes[RESOURCE_ID] == (PATIENT,)
    cache.signed(other, NOW)  # another patient: its own assertion
    assert cache.signatures == 2
    later = cache.signed(PATIENT, NOW + REUSE)  # a minute before it expires: a new one
    assert cache.signatures == 3
    assert judged(later, pki, NOW + REUSE + timedelta(minutes=4)).subject
