"""The signed submission set in an ITI-41 request: the DSG document, its entry, its associations.

The request is read back with the DMP sandbox's own readers (:mod:`sandboxes.dmp_envelope`,
:mod:`sandboxes.dmp_ebrim`) and judged with the OASIS ebRS schema and signxml, never with
the client's reading of its own output.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from lxml import etree
from signxml.xades.xades import XAdESVerifier

from consumers.ihe import dsg, iti41, mtom
from consumers.ihe.iti41 import NS
from consumers.ihe.vihf import SigningKey
from domain.xds.ebrim import HAS_MEMBER, STABLE_DOCUMENT, Scheme
from domain.xds.metadata import document_entry
from ops.demo.samples import DOMINIQUE, LAB, cda
from sandboxes import dmp_envelope
from sandboxes.dmp_ebrim import Objects, read_objects
from sandboxes.dmp_envelope import Envelope
from sandboxes.dmp_refusals import Rejected
from sandboxes.dmp_signature import check_manifest, check_signature_entry, verified_manifest
from sandboxes.dmp_xml import elements, first
from sandboxes.pki import SandboxPki, write_test_pki
from tests.shared_data import shared
from tests.unit.test_dmp_oracle_kit import DATA

DOC_ID = "1.2.250.1.213.1.1.9.4242.115022000001"
CONTENT = cda(LAB, DOMINIQUE, DOC_ID, "texte")
ENTRY = document_entry(CONTENT, {"MASQUE_PS": True})
NOW = datetime(2026, 11, 22, 9, 30, 12, tzinfo=UTC)
SUBMISSION_SET = iti41.submission_set_of(ENTRY, source_id="2.25.42", now=NOW, visit_class="O")
VIHF = etree.fromstring(b'<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/>')


def read(package: tuple[str, bytes]) -> Envelope:
    """The request as the DMP sandbox reads it (SOAP 1.2 schema, MTOM/XOP)."""
    return dmp_envelope.read(*package, action=iti41.ACTION, schema_dir=DATA / "ihe-xsd")


def documents(envelope: Envelope) -> dict[str, bytes]:
    """The attached documents by entry id (``xdsb:Document/@id``)."""
    found = {
        str(d.get("id")): envelope.included(d) for d in elements(envelope.payload, "xdsb:Document")
    }
    return {entry: data for entry, data in found.items() if data is not None}


def objects(envelope: Envelope) -> Objects:
    [submit] = elements(envelope.payload, "lcm:SubmitObjectsRequest")
    return read_objects(submit)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id="1120459876")


@pytest.fixture(scope="module")
def package(pki: SandboxPki) -> tuple[str, bytes]:
    key = SigningKey(pki.client_cert.read_bytes(), pki.client_key.read_bytes())
    return iti41.request(
        ENTRY,
        SUBMISSION_SET,
        CONTENT,
        vihf=VIHF,
        endpoint="https://dmp.example/repository",
        message_id="urn:uuid:1",
        replaces="urn:uuid:0a4e0b8e-2f57-4c1e-9d4c-3c1f8f0e7a11",
        signing=key,
    )


@pytest.fixture(scope="module")
def received(package: tuple[str, bytes]) -> Envelope:
    return read(package)


def signature_id() -> str:
    return iti41.entry_uuid(dsg.signature_unique_id(SUBMISSION_SET.unique_id))


def test_the_signature_travels_as_its_own_mtom_part_and_verifies(
    received: Envelope, pki: SandboxPki
) -> None:
    attached = documents(received)
    assert set(attached) == {iti41.entry_uuid(DOC_ID), signature_id()}
    assert received.unreferenced() == frozenset()
    signature = attached[signature_id()]
    assert signature.startswith(b"<?xml")
    assert b"ds:Signature" in signature
    XAdESVerifier().verify(signature, ca_pem_file=str(pki.ca_cert))
    assert attached[iti41.entry_uuid(DOC_ID)] == CONTENT
    # the DMP sandbox's checks: schema, signature, trusted CA, a digest per document
    now = datetime.now(UTC)
    manifest = verified_manifest(signature, pki.ca_cert, now, DATA / "ihe-xsd")
    check_manifest(manifest, {DOC_ID: CONTENT}, SUBMISSION_SET.unique_id)
    set_digest = f"ds:Reference[@URI='urn:oid:{SUBMISSION_SET.unique_id}']/ds:DigestValue"
    assert first(manifest, set_digest) == "AA=="  # DSG's zero hash, as the DMP's sample


def test_a_signature_over_other_bytes_fails_the_sandbox_s_check(
    received: Envelope, pki: SandboxPki
) -> None:
    signature = documents(received)[signature_id()]
    manifest = verified_manifest(signature, pki.ca_cert, datetime.now(UTC), DATA / "ihe-xsd")
    with pytest.raises(Rejected, match="digest differs"):
        check_manifest(manifest, {DOC_ID: CONTENT + b" "}, SUBMISSION_SET.unique_id)


def test_the_signature_part_is_text_xml(package: tuple[str, bytes]) -> None:
    parts = mtom.read(*package).parts
    cid = iti41.content_id(dsg.signature_unique_id(SUBMISSION_SET.unique_id))
    assert parts[cid].content_type == "text/xml"


def test_the_signature_entry_carries_the_dmp_metadata(received: Envelope) -> None:
    [signed] = [e for e in objects(received).extrinsic if e.id == signature_id()]
    content = documents(received)[signature_id()]
    assert signed.attributes["mimeType"] == "text/xml"
    assert signed.attributes["objectType"] == STABLE_DOCUMENT
    assert signed.slot("languageCode") == "art"
    assert signed.slot("creationTime") == "20261122093012"
    assert signed.slot("hash") == hashlib.sha1(content, usedforsecurity=False).hexdigest()
    assert signed.slot("size") == str(len(content))
    assert signed.slot("sourcePatientId") == ENTRY.patient_id
    assert signed.name == "Source"
    assert {scheme: value for scheme, value, _ in signed.identifiers} == {
        Scheme.DE_PATIENT_ID: ENTRY.patient_id,
        Scheme.DE_UNIQUE_ID: dsg.signature_unique_id(SUBMISSION_SET.unique_id),
    }
    codes: dict[str, list[tuple[str, str]]] = {}
    for c in signed.classifications:
        codes.setdefault(c.scheme, []).append((c.node, c.coding_scheme))
    assert codes[Scheme.DE_CLASS] == [("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN")]
    assert codes[Scheme.DE_TYPE] == [("E1762", "ASTM")]
    assert codes[Scheme.DE_FORMAT] == [("http://www.w3.org/2000/09/xmldsig#", "URN")]
    assert codes[iti41.EVENT_CODE_LIST] == [("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12")]
    document = ENTRY  # masked, placed and filed like the document it signs
    assert [c for c, _ in codes[Scheme.DE_CONFIDENTIALITY]] == [
        c.code for c in document.confidentiality
    ]
    assert "MASQUE_PS" in [c for c, _ in codes[Scheme.DE_CONFIDENTIALITY]]
    assert codes[Scheme.DE_FACILITY] == [
        (document.healthcare_facility_type.code, document.healthcare_facility_type.scheme)
    ]
    assert codes[Scheme.DE_PRACTICE] == [
        (document.practice_setting.code, document.practice_setting.scheme)
    ]
    [author] = signed.coded(Scheme.DE_AUTHOR)
    assert author.slots["authorPerson"] == (SUBMISSION_SET.author_person,)
    assert author.slots["authorInstitution"] == (SUBMISSION_SET.author_institution,)


def test_has_member_for_both_and_the_signature_signs_the_submission_set(
    received: Envelope,
) -> None:
    metadata = objects(received)
    [package] = metadata.packages
    members = {a.target for a in metadata.associations if a.type == HAS_MEMBER}
    assert all(a.source == package.id for a in metadata.associations if a.type == HAS_MEMBER)
    assert members == {iti41.entry_uuid(DOC_ID), signature_id()}
    [signature] = [e for e in metadata.extrinsic if e.id == signature_id()]
    check_signature_entry(signature, metadata, package)  # the DMP sandbox's rule, passed
    [signs] = [a for a in metadata.associations if a.type == iti41.SIGNS]
    assert signs.type == "urn:ihe:iti:2007:AssociationType:signs"
    assert (signs.source, signs.target) == (signature_id(), package.id)
    [rplc] = [a for a in metadata.associations if a.type == iti41.RPLC]
    assert rplc.source == iti41.entry_uuid(
        DOC_ID
    )  # the replacement is the document's, not the signature's


def test_the_submit_objects_request_is_valid_ebrs(received: Envelope) -> None:
    schema = etree.XMLSchema(etree.parse(str(shared("ihe-xsd", "ebRS30", "lcm.xsd"))))
    submit = received.payload.find("lcm:SubmitObjectsRequest", NS)
    assert submit is not None
    assert schema.validate(submit), schema.error_log


def test_an_invalid_request_fails_the_same_schema(received: Envelope) -> None:
    """The schema check above can fail: an ExternalIdentifier before a Classification does."""
    schema = etree.XMLSchema(etree.parse(str(shared("ihe-xsd", "ebRS30", "lcm.xsd"))))
    original = received.payload.find("lcm:SubmitObjectsRequest", NS)
    assert original is not None
    submit = etree.fromstring(etree.tostring(original))
    extrinsic = submit.find("rim:RegistryObjectList/rim:ExtrinsicObject", NS)
    assert extrinsic is not None
    identifier = extrinsic.find("rim:ExternalIdentifier", NS)
    assert identifier is not None
    extrinsic.remove(identifier)
    extrinsic.insert(0, identifier)
    assert not schema.validate(submit)


def test_signing_is_deterministic_and_dated_by_the_submission(pki: SandboxPki) -> None:
    key = SigningKey(pki.client_cert.read_bytes(), pki.client_key.read_bytes())
    first = iti41.signature_of(ENTRY, SUBMISSION_SET, CONTENT, key)
    assert first == iti41.signature_of(ENTRY, SUBMISSION_SET, CONTENT, key)
    assert first.signed_at == NOW
    assert b"<xades:SigningTime>2026-11-22T09:30:12Z</xades:SigningTime>" in first.content


def test_without_a_key_the_request_stays_unsigned() -> None:
    received = read(
        iti41.request(
            ENTRY,
            SUBMISSION_SET,
            CONTENT,
            vihf=VIHF,
            endpoint="https://x/r",
            message_id="urn:uuid:2",
        )
    )
    metadata = objects(received)
    assert [e.id for e in metadata.extrinsic] == [iti41.entry_uuid(DOC_ID)]
    assert not [a for a in metadata.associations if a.type == iti41.SIGNS]
