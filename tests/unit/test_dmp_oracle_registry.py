"""The DMP sandbox's registry: entryUUIDs it issues, ITI-18 stored queries, ITI-62, RPLC.

The DMP assigns the entryUUID of each version (ANS PDSM4DMP); a replacement or a deletion
must name one it issued. Queries are judged against the ebRS 3.0 ``query.xsd``,
removals against ``lcm.xsd``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from lxml import etree

from consumers.ihe import iti18, iti41, iti62
from consumers.ihe.vihf import signed_vihf
from domain.xds.ebrim import WSSE, Scheme
from domain.xds.metadata import document_entry
from ops.demo.samples import DOMINIQUE, LAB, cda
from sandboxes.dmp import DmpSandbox
from sandboxes.dmp_query import FIND_DOCUMENTS, values
from sandboxes.dmp_registry import REPOSITORY_UNIQUE_ID
from sandboxes.dmp_xml import NS
from sandboxes.pki import SandboxPki, write_test_pki
from tests.unit.test_dmp_oracle_kit import (
    DOC_ID,
    ENTRY,
    IDENTITY,
    client_request,
    fault,
    key_of,
    refusal,
    sandbox_of,
    success,
)

SOAP12 = "application/soap+xml"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=IDENTITY.structure_id)


def security(pki: SandboxPki, patient_id: str = ENTRY.patient_id) -> etree._Element:
    wrapper = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    wrapper.append(signed_vihf(IDENTITY, patient_id, key_of(pki), now=datetime.now(UTC)))
    return wrapper


def filed(pki: SandboxPki) -> DmpSandbox:
    sandbox = sandbox_of(pki)
    assert success(sandbox.file(*client_request(pki)))
    return sandbox


def found(answer: tuple[int, bytes]) -> etree._Element:
    status, body = answer
    assert status == 200
    response = etree.fromstring(body).find(".//query:AdhocQueryResponse", NS)
    assert response is not None
    return response


def test_the_dmp_issues_its_own_entry_uuid_per_version(pki: SandboxPki) -> None:
    sandbox = filed(pki)
    entry_uuid = sandbox.filed[DOC_ID].entry_uuid
    assert entry_uuid.startswith("urn:uuid:")
    assert uuid.UUID(entry_uuid.removeprefix("urn:uuid:")).version == 4
    assert entry_uuid != iti41.entry_uuid(DOC_ID)  # not the id the submitter proposed
    assert sandbox.by_entry == {entry_uuid: DOC_ID}
    other = sandbox_of(pki)
    other.file(*client_request(pki))
    assert other.filed[DOC_ID].entry_uuid != entry_uuid  # another registry, another id


def test_get_documents_answers_the_issued_entry_uuid(pki: SandboxPki) -> None:
    sandbox = filed(pki)
    query = iti18.get_documents(
        (DOC_ID, "1.2.3.9"),
        to="https://x/registry",
        security=security(pki),
        return_type="ObjectRef",
    )
    response = found(sandbox.registry(iti18.CONTENT_TYPE, query))
    refs = response.xpath("rim:RegistryObjectList/rim:ObjectRef/@id", namespaces=NS)
    assert refs == [sandbox.filed[DOC_ID].entry_uuid]
    assert sandbox.queries == 1
    leaf = query.replace(b'returnType="ObjectRef"', b'returnType="LeafClass"')
    entry = found(sandbox.registry(SOAP12, leaf)).find(
        "rim:RegistryObjectList/rim:ExtrinsicObject", NS
    )
    assert entry is not None
    assert entry.get("id") == sandbox.filed[DOC_ID].entry_uuid
    assert entry.get("status", "").endswith(":Approved")
    assert entry.get("lid") == entry.get("id")  # the first version is its own series
    assert entry.find("rim:VersionInfo", NS).get("versionName") == "1"  # type: ignore[union-attr]
    answer = iti18.read_answer(etree.tostring(entry.getroottree()))
    assert answer.current is not None
    assert answer.current.repository_unique_id == REPOSITORY_UNIQUE_ID
    assert answer.current.confidentiality == tuple(c.code for c in ENTRY.confidentiality)
    unique = entry.xpath(
        f"rim:ExternalIdentifier[@identificationScheme='{Scheme.DE_UNIQUE_ID}']/@value",
        namespaces=NS,
    )
    assert unique == [DOC_ID]


def test_find_documents_by_patient_and_status(pki: SandboxPki) -> None:
    sandbox = filed(pki)
    query = iti18.get_documents(
        (DOC_ID,), to="https://x/registry", security=security(pki), return_type="ObjectRef"
    )
    root = etree.fromstring(query)
    adhoc = root.find(".//rim:AdhocQuery", NS)
    assert adhoc is not None
    adhoc.set("id", FIND_DOCUMENTS)
    for slot in list(adhoc):
        adhoc.remove(slot)
    for name, value in (
        ("$XDSDocumentEntryPatientId", f"'{ENTRY.patient_id}'"),
        ("$XDSDocumentEntryStatus", "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')"),
    ):
        slot = etree.SubElement(adhoc, f"{{{NS['rim']}}}Slot", name=name)
        etree.SubElement(
            etree.SubElement(slot, f"{{{NS['rim']}}}ValueList"), f"{{{NS['rim']}}}Value"
        ).text = value
    response = found(sandbox.registry(SOAP12, etree.tostring(root)))
    assert response.xpath("rim:RegistryObjectList/rim:ObjectRef/@id", namespaces=NS) == [
        sandbox.filed[DOC_ID].entry_uuid
    ]
    adhoc.remove(adhoc[1])  # no status: a parameter is missing
    response = found(sandbox.registry(SOAP12, etree.tostring(root)))
    assert response.get("status", "").endswith(":Failure")
    assert response.xpath("rs:RegistryErrorList/rs:RegistryError/@errorCode", namespaces=NS) == [
        "XDSStoredQueryParamNumber"
    ]
    adhoc.set("id", "urn:uuid:00000000-0000-4000-8000-000000000000")
    response = found(sandbox.registry(SOAP12, etree.tostring(root)))
    errors = response.xpath("rs:RegistryErrorList/rs:RegistryError/@errorCode", namespaces=NS)
    assert errors == ["XDSUnknownStoredQuery"]


def test_a_query_must_be_valid_against_query_xsd(pki: SandboxPki) -> None:
    query = iti18.get_documents((DOC_ID,), to="https://x/registry", security=security(pki))
    wrong = query.replace(b'returnType="LeafClass"', b'returnType="Everything"')
    assert "query.xsd" in fault(filed(pki).registry(SOAP12, wrong))[2]


def test_a_replacement_must_name_an_issued_entry_uuid(pki: SandboxPki) -> None:
    sandbox = filed(pki)
    parent = sandbox.filed[DOC_ID].entry_uuid
    new_id = DOC_ID + "2"
    content = cda(LAB, DOMINIQUE, new_id, "texte corrigé")
    entry = document_entry(content, {})
    proposed = client_request(pki, entry, content, replaces=iti41.entry_uuid(DOC_ID))
    assert refusal(sandbox.file(*proposed))[0] == "UnresolvedReferenceException"
    assert success(sandbox.file(*client_request(pki, entry, content, replaces=parent)))
    assert sandbox.filed[DOC_ID].status == "Deprecated"
    assert sandbox.filed[new_id].replaces == DOC_ID
    assert sandbox.filed[new_id].entry_uuid not in {parent, iti41.entry_uuid(new_id)}


def test_a_deletion_must_name_an_issued_entry_uuid(pki: SandboxPki) -> None:
    sandbox = filed(pki)
    proposed = iti62.delete_document_set(
        (iti41.entry_uuid(DOC_ID),), to="https://x/registry", security=security(pki)
    )
    assert refusal(sandbox.registry(SOAP12, proposed))[0] == "UnresolvedReferenceException"
    issued = (sandbox.filed[DOC_ID].entry_uuid,)
    other = security(pki, "184051234567841^^^&1.2.250.1.213.1.4.10&ISO^NH")
    someone_else = iti62.delete_document_set(issued, to="https://x/registry", security=other)
    assert refusal(sandbox.registry(SOAP12, someone_else))[0] == "XDSPatientIdDoesNotMatch"
    right = iti62.delete_document_set(issued, to="https://x/registry", security=security(pki))
    assert success(sandbox.registry(SOAP12, right))
    assert sandbox.filed[DOC_ID].status == "Deleted"
    assert sandbox.deletions[DOC_ID] == 1
    query = iti18.get_documents((DOC_ID,), to="https://x/registry", security=security(pki))
    assert not found(sandbox.registry(SOAP12, query)).xpath(
        "rim:RegistryObjectList/*", namespaces=NS
    )


def test_a_registry_request_without_a_vihf_is_a_fault(pki: SandboxPki) -> None:
    query = iti18.get_documents((DOC_ID,), to="https://x/registry")
    assert fault(filed(pki).registry(SOAP12, query))[1] == "wsse:InvalidSecurity"


def test_stored_query_values() -> None:
    assert values("('a','b''c', 'd')") == ("a", "b'c", "d")
    assert values("'x'") == ("x",)
    assert values("(1,2)") == ("1", "2")
