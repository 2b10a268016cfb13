"""ITI-18 GetDocuments, ITI-62 Delete Document Set, and the delivery ledger's decisions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from consumers.dmp.request import xds_ids
from consumers.ihe import iti18, iti62
from domain.xds.ebrim import LCM, QUERY, RIM, SOAP, WSA, Scheme
from relais.delivery_ledger import TRANSITIONS, Entry, Met, Outcome, Step, done, next_step, sending
from sandboxes.dmp_query import values
from tests.shared_data import shared

QUERY_XSD = shared("ihe-xsd", "ebRS30", "query.xsd")
LCM_XSD = shared("ihe-xsd", "ebRS30", "lcm.xsd")
NS = {"s": SOAP, "a": WSA, "query": QUERY, "rim": RIM, "lcm": LCM}
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"


def adhoc_query(body: bytes) -> etree._Element:
    """The request's AdhocQueryRequest, valid against the OASIS ebRS 3.0 query.xsd."""
    found = etree.fromstring(body).find("s:Body/query:AdhocQueryRequest", NS)
    assert found is not None
    schema = etree.XMLSchema(etree.parse(str(QUERY_XSD)))
    schema.assertValid(etree.fromstring(etree.tostring(found)))
    return found


def asked_ids(body: bytes) -> tuple[str, ...]:
    """The uniqueIds the query asks for, read as a registry does (the sandbox's parser)."""
    slot = "rim:AdhocQuery/rim:Slot[@name='$XDSDocumentEntryUniqueId']/rim:ValueList/rim:Value"
    return tuple(v for raw in adhoc_query(body).findall(slot, NS) for v in values(raw.text or ""))


def test_a_query_is_valid_get_documents_leaf_class() -> None:
    body = iti18.get_documents(("1.2.3", "2.25.9"), to="https://dmp/registry", message_id="urn:x")
    query = adhoc_query(body)
    assert query.find("query:ResponseOption", NS).get("returnType") == "LeafClass"  # type: ignore[union-attr]
    assert query.find("rim:AdhocQuery", NS).get("id") == iti18.GET_DOCUMENTS  # type: ignore[union-attr]
    assert asked_ids(body) == ("1.2.3", "2.25.9")


@given(
    st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
            lambda s: s.strip() == s and "," not in s and "(" not in s and ")" not in s
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_unique_id_survives_the_quoting(ids: list[str]) -> None:
    body = iti18.get_documents(tuple(ids), to="x")
    assert asked_ids(body) == tuple(ids)


def leaf(entry_uuid: str, lid: str, version: str, status: str, codes: tuple[str, ...]) -> str:
    classes = "".join(
        f'<rim:Classification id="urn:uuid:c{n}" classificationScheme="{Scheme.DE_CONFIDENTIALITY}"'
        f' classifiedObject="{entry_uuid}" nodeRepresentation="{code}"/>'
        for n, code in enumerate(codes)
    )
    return (
        f'<rim:ExtrinsicObject id="{entry_uuid}" lid="{lid}" status="{status}"'
        ' objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">'
        '<rim:Slot name="repositoryUniqueId"><rim:ValueList><rim:Value>1.2.3.4</rim:Value>'
        f'</rim:ValueList></rim:Slot><rim:VersionInfo versionName="{version}"/>{classes}'
        "</rim:ExtrinsicObject>"
    )


def response(found: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{SOAP}"><s:Body><query:AdhocQueryResponse xmlns:query="{QUERY}"'
        f' xmlns:rim="{RIM}" status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success">'
        f"<rim:RegistryObjectList>{found}</rim:RegistryObjectList></query:AdhocQueryResponse>"
        "</s:Body></s:Envelope>"
    ).encode()


def test_a_leaf_class_answer_keeps_the_approved_version_only() -> None:
    first = leaf("urn:uuid:v1", "urn:uuid:v1", "1", DEPRECATED, ("N", "INVISIBLE_PATIENT"))
    second = leaf("urn:uuid:v2", "urn:uuid:v1", "2", APPROVED, ("N",))
    answer = iti18.read_answer(response(first + second))
    assert answer.entry_uuids == ("urn:uuid:v2",)  # never the deprecated one, first or not
    assert answer.current == iti18.Found(
        "urn:uuid:v2", "urn:uuid:v1", "2", "Approved", "1.2.3.4", ("N",)
    )
    assert [v.status for v in answer.versions] == ["Deprecated", "Approved"]


@pytest.mark.parametrize(
    ("drop", "what"),
    [
        (' status="urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"', "status"),
        ('<rim:VersionInfo versionName="2"/>', "VersionInfo"),
        (' versionName="2"', "versionName"),
    ],
)
def test_a_leaf_class_entry_without_its_status_or_version_is_unreadable(
    drop: str, what: str
) -> None:
    """Never guessed (Approved, "1"): the client takes it as DmpUnavailable BadAnswer."""
    good = leaf("urn:uuid:v2", "urn:uuid:v1", "2", APPROVED, ("N",))
    assert drop in good, what
    with pytest.raises(iti18.Iti18Error, match="status or versionName"):
        iti18.read_answer(response(good.replace(drop, "")))


def test_an_object_ref_answer_still_reads() -> None:
    answer = iti18.read_answer(response('<rim:ObjectRef id="urn:uuid:a"/>'))
    assert answer == iti18.Answer("Success", ("urn:uuid:a",))
    assert iti18.read_answer(response("")).entry_uuids == ()
    assert answer.current is None


def test_what_is_not_an_answer_is_refused_with_the_reason() -> None:
    with pytest.raises(iti18.Iti18Error, match="not XML"):
        iti18.read_answer(b"<not-xml")
    with pytest.raises(iti18.Iti18Error, match="AdhocQueryResponse"):
        iti18.read_answer(f'<s:Envelope xmlns:s="{SOAP}"/>'.encode())


def test_no_id_no_query() -> None:
    with pytest.raises(iti18.Iti18Error, match="at least one"):
        iti18.get_documents((), to="x")


NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_the_ledger_says_send_reconcile_or_skip() -> None:
    assert next_step(None) is Step.SEND
    assert next_step(sending("r1", 1, now=NOW)) is Step.RECONCILE
    assert next_step(done("r1", Outcome.DELIVERED, None, 1, now=NOW)) is Step.ALREADY_DONE


def test_a_refusal_is_sent_again_only_when_an_operator_replays_it() -> None:
    refused = done("r1", Outcome.REJECTED, "XDSPatientIdDoesNotMatch", 1, now=NOW)
    delivered = done("r1", Outcome.DELIVERED, None, 1, now=NOW)
    assert next_step(refused) is Step.ALREADY_DONE
    assert next_step(refused, Met.REPLAYED) is Step.SEND
    assert next_step(delivered, Met.REPLAYED) is Step.ALREADY_DONE
    assert next_step(sending("r1", 2, now=NOW), Met.REPLAYED) is Step.RECONCILE


def test_every_state_and_outcome_a_sink_can_write_has_a_step() -> None:
    written = [None, sending("r", 1, now=NOW)] + [
        done("r", outcome, None, 1, now=NOW) for outcome in Outcome
    ]
    for entry in written:
        for met in Met:
            assert next_step(entry, met) in set(Step)
    assert len(TRANSITIONS) == len(written) * len(Met)


def test_ledger_entries_round_trip_and_foreign_values_are_refused() -> None:
    entry = done("r1", Outcome.REJECTED, "XDSPatientIdDoesNotMatch", 3, now=NOW)
    assert Entry.decode(entry.encode()) == entry
    with pytest.raises(ValueError, match="ledger"):
        Entry.decode(b'{"state": "MAYBE"}')


def test_the_entry_bytes_are_those_existing_ledgers_hold() -> None:
    """Sorted JSON keys, plain strings: a ledger written before still reads, and the same."""
    entry = done("r1", Outcome.REJECTED, "X", 3, now=NOW)
    written = (
        b'{"at_ms": 1740830400000, "attempt": 3, "code": "X", "outcome": "REJECTED", '
        b'"request_id": "r1", "state": "DONE"}'
    )
    assert entry.encode() == written
    assert Entry.decode(written) == entry
    sent = b'{"at_ms": 5, "attempt": 2, "code": null, "outcome": null, "request_id": "r2", '
    sent += b'"state": "SENDING"}'
    assert Entry.decode(sent).encode() == sent


def test_a_deletion_is_valid_and_names_the_entries() -> None:
    body = iti62.delete_document_set(["urn:uuid:a", "urn:uuid:b"], to="x", message_id="urn:m")
    root = etree.fromstring(body)
    assert root.findtext("s:Header/a:Action", namespaces=NS) == iti62.ACTION
    removal = root.find("s:Body/lcm:RemoveObjectsRequest", NS)
    assert removal is not None
    schema = etree.XMLSchema(etree.parse(str(LCM_XSD)))
    schema.assertValid(etree.fromstring(etree.tostring(removal)))
    refs = removal.findall("rim:ObjectRefList/rim:ObjectRef", NS)
    assert [r.get("id") for r in refs] == ["urn:uuid:a", "urn:uuid:b"]
    with pytest.raises(iti62.Iti62Error, match="at least one"):
        iti62.delete_document_set([], to="x")


@pytest.mark.parametrize(
    ("unique_id", "candidates"),
    [
        ("2.25.1234", ("2.25.1234",)),
        ("1.2.250.1.213.1.1.9.4242.115022000001", ("1.2.250.1.213.1.1.9.4242.115022000001",)),
        ("1.2.250.1.9.DOC-7", ("1.2.250.1.9.DOC-7", "1.2.250.1.9^DOC-7")),
        ("LAB000001.1", ("LAB000001.1", "LAB000001^1")),
    ],
)
def test_a_document_id_is_looked_up_under_its_xds_forms(
    unique_id: str, candidates: tuple[str, ...]
) -> None:
    assert xds_ids(unique_id) == candidates
