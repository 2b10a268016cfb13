"""ITI-57 Update Document Set requests (consumers.ihe.iti57): TD3.3b's wire format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from consumers.ihe import iti41, iti57
from domain.xds.ebrim import HAS_MEMBER, LCM, RIM, SOAP, WSA, WSSE, Scheme
from domain.xds.metadata import document_entry
from ops.demo.samples import DOMINIQUE, LAB, cda
from tests.shared_data import shared

DOC_ID = "1.2.250.1.213.1.1.9.4242.115022000057"
CONTENT = cda(LAB, DOMINIQUE, DOC_ID, "texte")
FILED = document_entry(CONTENT, {"INVISIBLE_PATIENT": True, "MASQUE_PS": True})
LID = iti41.entry_uuid(DOC_ID)
VIHF = etree.fromstring(b'<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/>')
NS = {"s": SOAP, "a": WSA, "lcm": LCM, "rim": RIM, "wsse": WSSE}
LCM_XSD = shared("ihe-xsd", "ebRS30", "lcm.xsd")
REPOSITORY = "1.2.250.1.213.1.1.9.1"


def update(previous: str = "1") -> iti57.Update:
    return iti57.Update(iti57.without(FILED, "INVISIBLE_PATIENT"), LID, previous, REPOSITORY)


def request(previous: str = "1") -> etree._Element:
    body = iti57.update_document_set(
        update(previous),
        source_id="2.25.42",
        submission_time="20261207093000",
        vihf=VIHF,
        to="https://dmp.example/registry",
        message_id="urn:uuid:57",
    )
    return etree.fromstring(body)


def codes(entry: etree._Element) -> list[str]:
    path = f"rim:Classification[@classificationScheme='{Scheme.DE_CONFIDENTIALITY}']"
    return [str(c.get("nodeRepresentation")) for c in entry.iterfind(path, NS)]


def test_the_body_is_valid_against_the_ebrs_lcm_schema() -> None:
    schema = etree.XMLSchema(etree.parse(str(LCM_XSD)))
    [submit] = request().iterfind("s:Body/lcm:SubmitObjectsRequest", NS)
    document = etree.fromstring(etree.tostring(submit))
    assert schema.validate(document), str(schema.error_log)


def test_addressing_and_the_vihf() -> None:
    root = request()
    assert root.findtext("s:Header/a:Action", namespaces=NS) == iti57.ACTION
    assert root.findtext("s:Header/a:MessageID", namespaces=NS) == "urn:uuid:57"
    assert root.findtext("s:Header/a:To", namespaces=NS) == "https://dmp.example/registry"
    assert root.find("s:Header/wsse:Security/{*}Assertion", NS) is not None
    assert iti57.ACTION in iti57.CONTENT_TYPE


def test_a_new_version_of_the_entry_same_lid_without_invisible_patient() -> None:
    objects = request().find("s:Body/lcm:SubmitObjectsRequest/rim:RegistryObjectList", NS)
    assert objects is not None
    [entry] = objects.iterfind("rim:ExtrinsicObject", NS)
    assert entry.get("lid") == LID
    assert entry.get("id") == iti57.ENTRY_ID  # symbolic: the registry gives its entryUUID
    path = "rim:Slot[@name='repositoryUniqueId']/rim:ValueList/rim:Value"
    assert entry.findtext(path, namespaces=NS) == REPOSITORY  # required as in ITI-42
    assert codes(entry) == ["N", "MASQUE_PS"]  # INVISIBLE_PATIENT is lifted, nothing else
    unique = f"rim:ExternalIdentifier[@identificationScheme='{Scheme.DE_UNIQUE_ID}']"
    assert entry.find(unique, NS).get("value") == DOC_ID  # type: ignore[union-attr]
    # every classification and identifier names the new version, none the filed entryUUID
    owners = {e.get("classifiedObject") or e.get("registryObject") for e in entry}
    assert owners - {None} == {iti57.ENTRY_ID}
    assert LID not in etree.tostring(objects).decode().replace(f'lid="{LID}"', "")


def test_has_member_says_original_and_the_previous_version() -> None:
    objects = request("3").find("s:Body/lcm:SubmitObjectsRequest/rim:RegistryObjectList", NS)
    assert objects is not None
    [member] = objects.iterfind(f"rim:Association[@associationType='{HAS_MEMBER}']", NS)
    assert (member.get("sourceObject"), member.get("targetObject")) == (
        iti57.SUBMISSION_SET_ID,
        iti57.ENTRY_ID,
    )
    slots = {
        s.get("name"): s.findtext("rim:ValueList/rim:Value", namespaces=NS)
        for s in member.iterfind("rim:Slot", NS)
    }
    assert slots == {"SubmissionSetStatus": "Original", "PreviousVersion": "3"}
    # no document, no RPLC: metadata only
    assert not objects.findall(f"rim:Association[@associationType='{iti41.RPLC}']", NS)
    assert len(objects.findall("rim:ExtrinsicObject", NS)) == 1
    assert len(objects.findall("rim:RegistryPackage", NS)) == 1


def test_the_submission_set_is_new_and_ids_are_fresh() -> None:
    first, second = request(), request()
    scheme = Scheme.SS_UNIQUE_ID
    path = f".//rim:RegistryPackage/rim:ExternalIdentifier[@identificationScheme='{scheme}']"
    filing = iti41.submission_set_of(
        FILED, source_id="2.25.42", now=datetime(2026, 12, 7, tzinfo=UTC)
    )
    [ss] = first.iterfind(path, NS)
    assert ss.get("value") != filing.unique_id  # a registry refuses a submission set twice
    ids = {e.get("id") for e in first.iter(f"{{{RIM}}}Classification")}
    assert ids.isdisjoint({e.get("id") for e in second.iter(f"{{{RIM}}}Classification")})


def test_an_update_needs_a_lid_a_version_and_a_code() -> None:
    with pytest.raises(iti57.Iti57Error, match="lid"):
        iti57.submit_objects(
            iti57.Update(FILED, "DocumentEntry01", "1", REPOSITORY),
            source_id="2.25.1",
            submission_time="2026",
        )
    with pytest.raises(iti57.Iti57Error, match="repositoryUniqueId"):
        iti57.submit_objects(
            iti57.Update(FILED, LID, "1", " "), source_id="2.25.1", submission_time="2026"
        )
    with pytest.raises(iti57.Iti57Error, match="confidentialityCode"):
        iti57.with_confidentiality(FILED, ())
