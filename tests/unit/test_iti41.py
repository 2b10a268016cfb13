"""ITI-41 requests and answers (consumers.ihe.iti41) and their MTOM/XOP packaging (consumers.ihe.mtom)."""

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
    received = iti41.read_request(*built())
    assert received.action == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    assert (received.message_id, received.to) == ("urn:uuid:1", "https://dmp.example/repository")
    assert received.assertion is not None
    assert received.documents == {iti41.entry_uuid(DOC_ID): CONTENT}
    assert received.unreferenced_parts == ()


def test_the_document_entry_carries_the_xds_metadata() -> None:
    metadata = iti41.read_metadata(iti41.read_request(*built()).body)
    [entry] = metadata.entries
    assert entry.id == iti41.entry_uuid(DOC_ID)
    assert entry.attributes["mimeType"] == "text/xml"
    assert entry.attributes["objectType"] == STABLE_DOCUMENT
    assert entry.identifiers == {
        Scheme.DE_PATIENT_ID: ENTRY.patient_id,
        Scheme.DE_UNIQUE_ID: DOC_ID,
    }
    assert entry.slot("hash") == ENTRY.hash_sha1
    assert entry.slot("size") == str(len(CONTENT))
    assert entry.slot("creationTime") == ENTRY.creation_time
    assert entry.slots["sourcePatientInfo"] == ENTRY.source_patient_info
    assert entry.name == ENTRY.title
    codes = {k: [(c.node, c.scheme) for c in v] for k, v in entry.classifications.items()}
    assert codes[Scheme.DE_CLASS] == [(ENTRY.class_code.code, ENTRY.class_code.scheme)]
    assert codes[Scheme.DE_TYPE] == [("11502-2", "2.16.840.1.113883.6.1")]
    assert [c for c, _ in codes[Scheme.DE_CONFIDENTIALITY]] == [
        "N",
        "MASQUE_PS",
        "INVISIBLE_PATIENT",
    ]
    [author] = entry.classifications[Scheme.DE_AUTHOR]
    assert author.slots["authorPerson"] == (ENTRY.author_person,)
    assert author.slots["authorInstitution"] == (ENTRY.author_institution,)


def test_the_submission_set_and_its_association() -> None:
    metadata = iti41.read_metadata(iti41.read_request(*built()).body)
    [package] = metadata.submission_sets
    assert metadata.nodes[package.id] == SUBMISSION_SET_NODE
    assert package.identifiers[Scheme.SS_SOURCE_ID] == "2.25.42"
    assert package.identifiers[Scheme.SS_PATIENT_ID] == ENTRY.patient_id
    assert package.identifiers[Scheme.SS_UNIQUE_ID].startswith("2.25.")
    assert package.slot("submissionTime") == "20261122093000"
    [content_type] = package.classifications[Scheme.SS_CONTENT_TYPE]
    assert (content_type.node, content_type.scheme) == ("07", "1.2.250.1.213.2.2")
    [member] = metadata.associations
    assert member.type == HAS_MEMBER
    assert (member.source, member.target) == (package.id, iti41.entry_uuid(DOC_ID))
    assert member.slots == {"SubmissionSetStatus": ("Original",)}


def test_a_replacement_adds_the_rplc_association_to_the_parent_entry() -> None:
    parent = "urn:uuid:0a4e0b8e-2f57-4c1e-9d4c-3c1f8f0e7a11"  # the entryUUID the DMP gave it
    metadata = iti41.read_metadata(iti41.read_request(*built(replaces=parent)).body)
    [rplc] = [a for a in metadata.associations if a.type == iti41.RPLC]
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


def test_registry_responses_round_trip() -> None:
    errors = (
        RegistryError("XDSRegistryMetadataError", "classCode", "Error", "DocumentEntry"),
        RegistryError("XDSDuplicateUniqueIdInRegistry", "held", "Warning"),
    )
    body = iti41.registry_response(errors, relates_to="urn:uuid:1")
    assert iti41.read_response("application/soap+xml", body) == RegistryResponse("Failure", errors)
    assert iti41.read_response("application/soap+xml", iti41.registry_response()) == (
        RegistryResponse("Success")
    )
    envelope = etree.fromstring(body)
    assert envelope.findtext("soap:Header/wsa:RelatesTo", None, NS) == "urn:uuid:1"
    assert envelope.findtext("soap:Header/wsa:Action", None, NS) == iti41.RESPONSE_ACTION


def test_an_mtom_answer_is_read_too() -> None:
    content_type, body = mtom.build(iti41.registry_response(), {})
    assert iti41.read_response(content_type, body).status == "Success"


def test_a_fault_is_raised() -> None:
    body = iti41.soap_fault(SoapFault("Sender", "wsse:InvalidSecurity", "no VIHF"))
    with pytest.raises(SoapFault) as caught:
        iti41.read_response("application/soap+xml", body)
    assert caught.value == SoapFault("Sender", "wsse:InvalidSecurity", "no VIHF")


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>',
        iti41.registry_response().replace(b"ResponseStatusType:Success", b"ResponseStatusType:Odd"),
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
