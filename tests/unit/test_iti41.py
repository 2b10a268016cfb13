"""ITI-41 requests and answers (consumers.ihe.iti41) and their MTOM/XOP packaging (consumers.ihe.mtom).

The client's requests are read back with the DMP sandbox's own readers
(:mod:`sandboxes.dmp_envelope`, :mod:`sandboxes.dmp_ebrim`: SOAP 1.2 schema, MTOM/XOP, ebRIM)
and its answers are written by the sandbox (:mod:`sandboxes.dmp_answers`): never the
client's own reading of its own output.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from consumers.ihe import iti41, mtom
from consumers.ihe.iti41 import NS, RegistryError, RegistryResponse, SoapFault
from domain.xds.ebrim import HAS_MEMBER, STABLE_DOCUMENT, SUBMISSION_SET_NODE, Scheme
from domain.xds.metadata import document_entry
from ops.demo.samples import DOMINIQUE, LAB, cda
from sandboxes import dmp_answers, dmp_envelope
from sandboxes.dmp_ebrim import Objects, read_objects
from sandboxes.dmp_envelope import Envelope
from sandboxes.dmp_xml import elements
from tests.unit.test_dmp_oracle_kit import DATA

DOC_ID = "1.2.250.1.213.1.1.9.4242.115022000001"
CONTENT = cda(LAB, DOMINIQUE, DOC_ID, "texte")
FLAGS = {"MASQUE_PS": True, "INVISIBLE_PATIENT": True}
ENTRY = document_entry(CONTENT, FLAGS)
NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
SUBMISSION_SET = iti41.submission_set_of(ENTRY, source_id="2.25.42", now=NOW, visit_class="O")
VIHF = etree.fromstring(b'<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/>')


def built(replaces: str | None = None) -> tuple[str, bytes]:
    return iti41.request(
        ENTRY,
        SUBMISSION_SET,
        CONTENT,
        vihf=VIHF,
        endpoint="https://dmp.example/repository",
        message_id="urn:uuid:1",
        replaces=replaces,
    )


def received(package: tuple[str, bytes]) -> Envelope:
    """The request as the DMP sandbox reads it (its SOAP 1.2 schema and MTOM/XOP checks)."""
    return dmp_envelope.read(*package, action=iti41.ACTION, schema_dir=DATA / "ihe-xsd")


def documents(envelope: Envelope) -> dict[str, bytes | None]:
    """The attached documents by entry id (``xdsb:Document/@id``)."""
    return {
        str(d.get("id")): envelope.included(d) for d in elements(envelope.payload, "xdsb:Document")
    }


def objects(envelope: Envelope) -> Objects:
    [submit] = elements(envelope.payload, "lcm:SubmitObjectsRequest")
    return read_objects(submit)


# the request ----------------------------------------------------------------------------


def test_the_package_is_mtom_with_a_soap12_root_and_the_document_as_a_binary_part() -> None:
    content_type, body = built()
    assert content_type.startswith("multipart/related;")
    assert 'type="application/xop+xml"' in content_type
    assert 'start-info="application/soap+xml"' in content_type
    package = mtom.read(content_type, body)
    assert package.action == iti41.ACTION
    assert 'type="application/soap+xml"' in package.root_type
    [(cid, part)] = package.parts.items()
    assert part == mtom.Part("text/xml", CONTENT)  # the bytes themselves, not base64
    assert CONTENT in body
    envelope = etree.fromstring(package.root)
    [include] = envelope.iterfind(".//xdsb:Document/xop:Include", NS)
    assert include.get("href") == f"cid:{cid}"


def test_addressing_and_security_headers() -> None:
    envelope = received(built())
    assert envelope.action == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    assert (envelope.message_id, envelope.to) == ("urn:uuid:1", "https://dmp.example/repository")
    assert envelope.assertion is not None
    assert documents(envelope) == {iti41.entry_uuid(DOC_ID): CONTENT}
    assert envelope.unreferenced() == frozenset()


def test_the_document_entry_carries_the_xds_metadata() -> None:
    [entry] = objects(received(built())).extrinsic
    assert entry.id == iti41.entry_uuid(DOC_ID)
    assert entry.attributes["mimeType"] == "text/xml"
    assert entry.attributes["objectType"] == STABLE_DOCUMENT
    assert {scheme: value for scheme, value, _ in entry.identifiers} == {
        Scheme.DE_PATIENT_ID: ENTRY.patient_id,
        Scheme.DE_UNIQUE_ID: DOC_ID,
    }
    assert entry.slot("hash") == ENTRY.hash_sha1
    assert entry.slot("size") == str(len(CONTENT))
    assert entry.slot("creationTime") == ENTRY.creation_time
    assert entry.slots["sourcePatientInfo"] == ENTRY.source_patient_info
    assert entry.name == ENTRY.title

    def codes(scheme: str) -> list[tuple[str, str]]:
        return [(c.node, c.coding_scheme) for c in entry.coded(scheme)]

    assert codes(Scheme.DE_CLASS) == [(ENTRY.class_code.code, ENTRY.class_code.scheme)]
    assert codes(Scheme.DE_TYPE) == [("11502-2", "2.16.840.1.113883.6.1")]
    assert [c for c, _ in codes(Scheme.DE_CONFIDENTIALITY)] == [
        "N",
        "MASQUE_PS",
        "INVISIBLE_PATIENT",
    ]
    [author] = entry.coded(Scheme.DE_AUTHOR)
    assert author.slots["authorPerson"] == (ENTRY.author_person,)
    assert author.slots["authorInstitution"] == (ENTRY.author_institution,)


def test_the_submission_set_and_its_association() -> None:
    submitted = objects(received(built()))
    [package] = submitted.packages
    assert submitted.classified_as(package.id, SUBMISSION_SET_NODE)
    assert package.identifier(Scheme.SS_SOURCE_ID) == "2.25.42"
    assert package.identifier(Scheme.SS_PATIENT_ID) == ENTRY.patient_id
    assert package.identifier(Scheme.SS_UNIQUE_ID).startswith("2.25.")
    assert package.slot("submissionTime") == "20261122093000"
    [content_type] = package.coded(Scheme.SS_CONTENT_TYPE)
    assert (content_type.node, content_type.coding_scheme) == ("07", "1.2.250.1.213.2.2")
    [member] = submitted.associations
    assert member.type == HAS_MEMBER
    assert (member.source, member.target) == (package.id, iti41.entry_uuid(DOC_ID))
    assert member.slots == {"SubmissionSetStatus": ("Original",)}


def test_a_replacement_adds_the_rplc_association_to_the_parent_entry() -> None:
    parent = "urn:uuid:0a4e0b8e-2f57-4c1e-9d4c-3c1f8f0e7a11"  # the entryUUID the DMP gave it
    submitted = objects(received(built(replaces=parent)))
    [rplc] = [a for a in submitted.associations if a.type == iti41.RPLC]
    assert (rplc.source, rplc.target) == (iti41.entry_uuid(DOC_ID), parent)


def test_ids_are_stable_for_the_same_document_and_change_with_its_bytes() -> None:
    again = iti41.submission_set_of(ENTRY, source_id="2.25.42", now=NOW)
    assert again.unique_id == SUBMISSION_SET.unique_id
    other = document_entry(CONTENT + b" ", {})
    assert iti41.submission_set_of(other, source_id="2.25.42", now=NOW).unique_id != (
        SUBMISSION_SET.unique_id
    )
    assert iti41.entry_uuid(DOC_ID) == iti41.entry_uuid(DOC_ID) != iti41.entry_uuid(DOC_ID + "1")


@pytest.mark.parametrize(
    ("visit", "code"),
    [("I", "03"), ("O", "07"), ("E", "07"), ("R", "19"), ("N", "97"), (None, "97")],
)
def test_content_type_follows_the_visit_class(visit: str | None, code: str) -> None:
    assert iti41.content_type_of(visit).code == code


# answers -----------------------------------------------------------------------------------


def test_registry_responses_are_read() -> None:
    """The DMP sandbox writes the answers (sandboxes.dmp_answers); the client reads them."""
    errors = (
        dmp_answers.Error("XDSRegistryMetadataError", "classCode"),
        dmp_answers.Error("XDSDuplicateUniqueIdInRegistry", "held", "Warning"),
    )
    body = dmp_answers.registry_response(errors, relates_to="urn:uuid:1")
    assert iti41.read_response("application/soap+xml", body) == RegistryResponse(
        "Failure",
        (
            RegistryError("XDSRegistryMetadataError", "classCode", "Error"),
            RegistryError("XDSDuplicateUniqueIdInRegistry", "held", "Warning"),
        ),
    )
    success = dmp_answers.registry_response((), relates_to="")
    assert iti41.read_response("application/soap+xml", success) == RegistryResponse("Success")


def test_an_mtom_answer_is_read_too() -> None:
    content_type, body = mtom.build(dmp_answers.registry_response((), relates_to=""), {})
    assert iti41.read_response(content_type, body).status == "Success"


def test_a_fault_is_raised() -> None:
    body = dmp_answers.fault("Sender", "wsse:InvalidSecurity", "no VIHF", relates_to="")
    with pytest.raises(SoapFault) as caught:
        iti41.read_response("application/soap+xml", body)
    assert caught.value == SoapFault("Sender", "wsse:InvalidSecurity", "no VIHF")


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>',
        dmp_answers.registry_response((), relates_to="").replace(
            b"ResponseStatusType:Success", b"ResponseStatusType:Odd"
        ),
    ],
)
def test_an_unreadable_answer_says_so(body: bytes) -> None:
    with pytest.raises(iti41.Iti41Error):
        iti41.read_response("application/soap+xml", body)


# MTOM ---------------------------------------------------------------------------------------


@given(
    st.binary(max_size=300),
    st.dictionaries(st.from_regex(r"[a-z0-9]{1,8}@x", fullmatch=True), st.binary(max_size=200)),
)
def test_any_parts_round_trip(root: bytes, attachments: dict[str, bytes]) -> None:
    parts = {cid: mtom.Part("application/octet-stream", data) for cid, data in attachments.items()}
    content_type, body = mtom.build(root, parts, action=iti41.ACTION)
    package = mtom.read(content_type, body)
    assert package.root == root
    assert dict(package.parts) == parts


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        ("application/soap+xml", "not multipart/related"),
        ('multipart/related; boundary="b"', "MTOM"),
        ('multipart/related; type="application/xop+xml"', "boundary"),
    ],
)
def test_not_an_mtom_package(content_type: str, reason: str) -> None:
    with pytest.raises(mtom.MtomError, match=reason):
        mtom.read(content_type, b"--b\r\n\r\n--b--")


def test_a_truncated_package_is_refused() -> None:
    content_type, body = built()
    with pytest.raises(mtom.MtomError, match="closing delimiter"):
        mtom.read(content_type, body[: len(body) // 2])


def test_the_root_must_be_soap12_xop() -> None:
    content_type, body = built()
    soap11 = body.replace(b'type="application/soap+xml"', b'type="text/xml"', 1)
    with pytest.raises(mtom.MtomError, match=r"SOAP 1\.2"):
        mtom.read(content_type, soap11)


def test_base64_parts_are_not_mtom() -> None:
    content_type, body = built()
    encoded = body.replace(b"binary", b"base64")
    with pytest.raises(mtom.MtomError, match="Content-Transfer-Encoding"):
        mtom.read(content_type, encoded)


def test_content_id_of_an_href() -> None:
    assert mtom.content_id("cid:doc%401@relais") == "doc@1@relais"
    with pytest.raises(mtom.MtomError):
        mtom.content_id("http://evil.example/doc")
