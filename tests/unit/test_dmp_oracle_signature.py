"""The DMP sandbox's signed-submission-set oracle (IHE DSG, XAdES over a ds:Manifest).

The right request is the client's, signed with the structure's key; the wrong ones are
unsigned, tampered, signed by a stranger, signed over another document, or missing the
metadata that ties the signature to the submission set.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime

import pytest
from lxml import etree

from consumers.ihe import iti41
from consumers.ihe.vihf import signed_vihf
from domain.xds.ebrim import Scheme
from sandboxes.dmp_refusals import Rejected
from sandboxes.dmp_signature import SIGNS, check_manifest
from sandboxes.dmp_xml import DS, NS
from sandboxes.pki import SandboxPki, write_test_pki
from tests.unit.test_dmp_oracle_kit import (
    CONTENT,
    DOC_ID,
    ENTRY,
    IDENTITY,
    Package,
    client_request,
    key_of,
    package,
    refusal,
    sandbox_of,
    set_document,
    success,
)

SIGNATURE = "//rim:ExtrinsicObject[rim:Classification/@nodeRepresentation='urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1']"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=IDENTITY.structure_id)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("foreign"), structure_id=IDENTITY.structure_id)


def signature_id(pack: Package) -> str:
    return str(pack.one(SIGNATURE).get("id"))


def signature_of(pack: Package) -> bytes:
    return pack.parts[pack.document_of(signature_id(pack))]


def test_a_signed_submission_set_is_accepted(pki: SandboxPki) -> None:
    sandbox = sandbox_of(pki)
    assert success(sandbox.file(*client_request(pki)))
    assert sandbox.filed[DOC_ID].sha1 == ENTRY.hash_sha1


def test_an_unsigned_submission_set_is_refused_unless_told_otherwise(pki: SandboxPki) -> None:
    unsigned = client_request(pki, signed=False)
    error_code, context = refusal(sandbox_of(pki).file(*unsigned))
    assert (error_code, "not signed" in context) == ("XDSRegistryMetadataError", True)
    assert success(sandbox_of(pki, require_signed_submission=False).file(*unsigned))


def test_a_tampered_manifest_breaks_the_signature(pki: SandboxPki) -> None:
    pack = package(pki)
    signature = etree.fromstring(signature_of(pack))
    [digest] = signature.xpath(".//ds:Manifest/ds:Reference/ds:DigestValue", namespaces=NS)[:1]
    digest.text = base64.b64encode(hashlib.sha256(b"another document").digest()).decode()
    set_document(pack, signature_id(pack), etree.tostring(signature))
    assert "signature fails" in refusal(sandbox_of(pki).file(*pack.wire()))[1]


def test_a_signature_over_another_document_s_digest_is_refused(pki: SandboxPki) -> None:
    now = datetime.now(UTC)
    submission_set = iti41.submission_set_of(ENTRY, source_id="2.25.1", now=now)
    content_type, body = iti41.request(
        ENTRY,
        submission_set,
        CONTENT,
        vihf=signed_vihf(IDENTITY, ENTRY.patient_id, key_of(pki), now=now),
        endpoint="https://127.0.0.1/repository",
        message_id=f"urn:uuid:{uuid.uuid4()}",
        signing=key_of(pki),
    )
    pack = Package.of(content_type, body)
    other = iti41.signature_of(ENTRY, submission_set, CONTENT + b"<!-- not sent -->", key_of(pki))
    set_document(pack, signature_id(pack), other.content)
    assert "digest differs" in refusal(sandbox_of(pki).file(*pack.wire()))[1]


def test_a_signature_by_an_untrusted_certificate_is_refused(
    pki: SandboxPki, foreign: SandboxPki
) -> None:
    stranger = client_request(pki, signing=foreign)
    assert "trusted CA" in refusal(sandbox_of(pki).file(*stranger))[1]


def test_the_signature_must_sign_the_submission_set(pki: SandboxPki) -> None:
    pack = package(pki).drop(f"//rim:Association[@associationType='{SIGNS}']")
    assert SIGNS in refusal(sandbox_of(pki).file(*pack.wire()))[1]


def test_the_signature_entry_codes(pki: SandboxPki) -> None:
    pack = package(pki)
    pack.one(f"{SIGNATURE}/rim:Classification[@classificationScheme='{Scheme.DE_TYPE}']").set(
        "nodeRepresentation", "11502-2"
    )
    assert "E1762" in refusal(sandbox_of(pki).file(*pack.wire()))[1]
    pack = package(pki)
    pack.one(f"{SIGNATURE}/rim:Slot[@name='languageCode']/rim:ValueList/rim:Value").text = "fr-FR"
    assert "art" in refusal(sandbox_of(pki).file(*pack.wire()))[1]


def test_the_signature_document_must_be_a_ds_signature(pki: SandboxPki) -> None:
    pack = package(pki)
    set_document(pack, signature_id(pack), b"<Signature/>")
    assert "ds:Signature" in refusal(sandbox_of(pki).file(*pack.wire()))[1]


def manifest(references: dict[str, bytes]) -> etree._Element:
    """A ds:Manifest with one Reference per URI, digest SHA-256 of its bytes."""
    root = etree.Element(f"{{{DS}}}Manifest", nsmap={"ds": DS})
    for uri, data in references.items():
        reference = etree.SubElement(root, f"{{{DS}}}Reference", URI=uri)
        etree.SubElement(reference, f"{{{DS}}}DigestMethod", Algorithm=SHA256)
        etree.SubElement(reference, f"{{{DS}}}DigestValue").text = base64.b64encode(
            hashlib.sha256(data).digest()
        ).decode()
    return root


def test_manifest_digests_are_the_documents_digests() -> None:
    documents = {"1.2.3.4": b"<doc/>"}
    check_manifest(
        manifest({"urn:oid:1.2.3.4": b"<doc/>", "urn:oid:1.2.9": b""}), documents, "1.2.9"
    )
    wrong = [
        ({"urn:oid:1.2.3.4": b"<other/>"}, "digest differs"),
        ({"urn:oid:1.2.3.5": b"<doc/>"}, "does not reference"),
        ({"urn:oid:1.2.3.4": b"<doc/>", "urn:oid:7.7": b"x"}, "not submitted"),
    ]
    for references, reason in wrong:
        with pytest.raises(Rejected, match=reason):
            check_manifest(manifest(references), documents, "1.2.9")


def test_the_signature_document_must_be_valid_against_the_xmldsig_schema(pki: SandboxPki) -> None:
    pack = package(pki)
    set_document(pack, signature_id(pack), f'<ds:Signature xmlns:ds="{DS}"/>'.encode())
    assert "xmldsig-core-schema.xsd" in refusal(sandbox_of(pki).file(*pack.wire()))[1]
