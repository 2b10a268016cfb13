"""The signed submission set's signature document (consumers.ihe.dsg): XAdES over a manifest."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidSignature
from signxml.xades.xades import XAdESVerifier

from consumers.ihe import dsg
from consumers.ihe.vihf import DS, SigningKey
from sandboxes.pki import SandboxPki, write_test_pki
from tests.shared_data import shared

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
SUBMISSION_SET = "1.2.250.1.213.1.1.9.4242.7"
DOCUMENTS = (
    dsg.Signed("1.2.250.1.213.1.1.9.4242.115022000001", b"<ClinicalDocument>un</ClinicalDocument>"),
    dsg.Signed("1.2.250.1.213.1.1.9.4242.115022000002", b"%PDF-1.4 deux"),
)
XADES = {"ds": DS, "xades": dsg.XADES}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id="1120459876")


@pytest.fixture(scope="module")
def key(pki: SandboxPki) -> SigningKey:
    return SigningKey(pki.client_cert.read_bytes(), pki.client_key.read_bytes())


@pytest.fixture(scope="module")
def signature(key: SigningKey) -> dsg.SignatureDocument:
    return dsg.sign_submission_set(DOCUMENTS, SUBMISSION_SET, key, now=NOW)


def verify(content: bytes, ca: Path) -> list[object]:
    return list(XAdESVerifier().verify(content, ca_pem_file=str(ca)))


def test_the_signature_verifies_with_the_trusted_ca(
    signature: dsg.SignatureDocument, pki: SandboxPki
) -> None:
    results = verify(signature.content, pki.ca_cert)
    signed = [r.signed_xml.tag for r in results]  # type: ignore[attr-defined]
    assert f"{{{DS}}}Manifest" in signed
    assert f"{{{dsg.XADES}}}SignedProperties" in signed


def test_a_foreign_ca_does_not_vouch_for_it(
    signature: dsg.SignatureDocument, tmp_path: Path
) -> None:
    foreign = write_test_pki(tmp_path, structure_id="1120459876")
    with pytest.raises(InvalidCertificate):
        verify(signature.content, foreign.ca_cert)


def test_the_manifest_lists_the_submission_set_then_each_document_with_its_digest(
    signature: dsg.SignatureDocument,
) -> None:
    manifest = dsg.manifest_of(signature.content)
    assert list(manifest) == [
        f"urn:oid:{SUBMISSION_SET}",
        *(f"urn:oid:{d.unique_id}" for d in DOCUMENTS),
    ]
    assert manifest[f"urn:oid:{SUBMISSION_SET}"] == "AA=="  # DSG's zero hash
    for document in DOCUMENTS:
        expected = base64.b64encode(hashlib.sha256(document.content).digest()).decode()
        assert manifest[f"urn:oid:{document.unique_id}"] == expected


def test_a_tampered_document_no_longer_matches_its_digest(signature: dsg.SignatureDocument) -> None:
    manifest = dsg.manifest_of(signature.content)
    original = DOCUMENTS[0]
    assert dsg.digest(original.content) == manifest[f"urn:oid:{original.unique_id}"]
    tampered = original.content.replace(b"un", b"u n")
    assert dsg.digest(tampered) != manifest[f"urn:oid:{original.unique_id}"]


def test_a_tampered_manifest_breaks_the_signature(
    signature: dsg.SignatureDocument, pki: SandboxPki
) -> None:
    forged_digest = dsg.digest(b"another document")
    genuine = dsg.digest(DOCUMENTS[0].content)
    forged = signature.content.replace(genuine.encode(), forged_digest.encode())
    assert forged != signature.content
    with pytest.raises((InvalidDigest, InvalidSignature)):
        verify(forged, pki.ca_cert)


def test_the_signed_properties_say_when_who_and_why(
    signature: dsg.SignatureDocument, pki: SandboxPki
) -> None:
    root = etree.fromstring(signature.content)
    props = root.find("ds:Object/xades:QualifyingProperties/xades:SignedProperties", XADES)
    assert props is not None
    assert props.findtext(".//xades:SigningTime", None, XADES) == "2026-11-22T09:30:00Z"
    certificate = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    cert_digest = props.findtext(
        "xades:SignedSignatureProperties/xades:SigningCertificateV2/xades:Cert/"
        "xades:CertDigest/ds:DigestValue",
        None,
        XADES,
    )
    assert cert_digest == dsg.digest(certificate.public_bytes(Encoding.DER))
    assert (
        props.find(".//xades:SignaturePolicyIdentifier/xades:SignaturePolicyImplied", XADES)
        is not None
    )
    commitment = props.find(".//xades:CommitmentTypeIndication", XADES)
    assert commitment is not None
    identifier = commitment.findtext("xades:CommitmentTypeId/xades:Identifier", None, XADES)
    assert identifier == "urn:oid:1.2.840.10065.1.12.1.14"  # ASTM E1762 source signature
    assert commitment.find("xades:AllSignedDataObjects", XADES) is not None


def test_sha256_canonical_xml_11_and_a_typed_manifest_reference(
    signature: dsg.SignatureDocument,
) -> None:
    root = etree.fromstring(signature.content)
    assert root.get("Id") == f"dsg-{signature.unique_id}"
    info = root.find("ds:SignedInfo", XADES)
    assert info is not None
    c14n = info.find("ds:CanonicalizationMethod", XADES)
    assert c14n is not None
    assert c14n.get("Algorithm") == "http://www.w3.org/2006/12/xml-c14n11#WithComments"
    [manifest] = info.findall(f"ds:Reference[@URI='#{dsg.MANIFEST_ID}']", XADES)
    assert manifest.get("Type") == "http://www.w3.org/2000/09/xmldsig#Manifest"
    digests = {m.get("Algorithm") for m in root.iter(f"{{{DS}}}DigestMethod")}
    assert digests == {"http://www.w3.org/2001/04/xmlenc#sha256"}


def test_the_signature_is_valid_xml_dsig(signature: dsg.SignatureDocument) -> None:
    schema = etree.XMLSchema(etree.parse(str(shared("ihe-xsd", "saml", "xmldsig-core-schema.xsd"))))
    document = etree.fromstring(signature.content)
    assert schema.validate(document), schema.error_log


def test_the_same_inputs_make_the_same_bytes_and_other_documents_others(
    signature: dsg.SignatureDocument, key: SigningKey
) -> None:
    again = dsg.sign_submission_set(DOCUMENTS, SUBMISSION_SET, key, now=NOW)
    assert again == signature
    assert again.unique_id == dsg.signature_unique_id(SUBMISSION_SET)
    assert again.hash_sha1 == hashlib.sha1(again.content, usedforsecurity=False).hexdigest()
    assert again.size == len(again.content)
    other = dsg.sign_submission_set(DOCUMENTS[:1], SUBMISSION_SET, key, now=NOW)
    assert other.content != signature.content
    assert other.unique_id == signature.unique_id  # one signature per submission set


@pytest.mark.parametrize(
    ("documents", "submission_set", "reason"),
    [
        ((), SUBMISSION_SET, "at least one document"),
        ((dsg.Signed("1.2.3^ext", b"x"),), SUBMISSION_SET, "document uniqueId must be an OID"),
        (DOCUMENTS, "not-an-oid", "submission set uniqueId must be an OID"),
    ],
)
def test_what_cannot_be_signed_is_refused(
    documents: tuple[dsg.Signed, ...], submission_set: str, reason: str, key: SigningKey
) -> None:
    with pytest.raises(dsg.DsgError, match=reason):
        dsg.sign_submission_set(documents, submission_set, key, now=NOW)


@pytest.mark.parametrize(
    "content", [b"not xml", b'<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>']
)
def test_a_document_without_the_manifest_is_not_read_as_one(content: bytes) -> None:
    with pytest.raises(dsg.DsgError):
        dsg.manifest_of(content)


def test_an_ec_key_signs_with_ecdsa(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "RELAIS TEST EC")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    pem = certificate.public_bytes(Encoding.PEM)
    key_pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    signature = dsg.sign_submission_set(
        DOCUMENTS, SUBMISSION_SET, SigningKey(pem, key_pem), now=NOW
    )
    assert b"xmldsig-more#ecdsa-sha256" in signature.content
    XAdESVerifier().verify(signature.content, x509_cert=pem.decode())
