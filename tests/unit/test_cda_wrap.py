"""A producer's PDF becomes a valid CI-SIS N1 CDA with a stable id."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from lxml import etree

from domain.cda_validate import CdaSchema, header_problems
from ops.demo.samples import IMAGING, SARAH_LOU, pdf_sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from streams.transcode.cda_wrap import WrapFailure, wrap_pdf
from streams.transcode.document_series import cda_id_for
from tests.shared_data import shared

KEYRING = Keyring.generate()
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
V3 = {"v3": "urn:hl7-org:v3"}


def submitted() -> tuple[dict, bytes, dict]:
    raw = pdf_sample(IMAGING, SARAH_LOU, 1)
    [record] = submissions(parse_message(raw), sector="RADIOLOGY", keyring=KEYRING, now=NOW)
    pdf = parse_message(raw).documents[0].content
    traits = json.loads(
        open_envelope(
            KEYRING,
            Envelope.from_record(record["patient"]["identity"]),
            event_id=record["event_id"],
            purpose="identity",
        )
    )
    return record, pdf, traits


def test_wrapped_pdf_is_a_valid_n1() -> None:
    record, pdf, traits = submitted()
    cda, doc_id = wrap_pdf(record, pdf, traits)
    assert doc_id == cda_id_for(record["document"]["unique_id"])
    assert doc_id.startswith("2.25.")
    assert header_problems(cda) == []
    assert CdaSchema.load(shared("cda-xsd")).validate(cda) == []
    assert wrap_pdf(record, pdf, traits) == (cda, doc_id)  # a retry builds the same document


def test_no_sender_no_cda() -> None:
    record, pdf, traits = submitted()
    anonymous = {**record, "source": {**record["source"], "author": None}}
    with pytest.raises(WrapFailure, match="PRT SB"):
        wrap_pdf(anonymous, pdf, traits)


def test_not_a_pdf() -> None:
    record, _, traits = submitted()
    with pytest.raises(WrapFailure, match="not a PDF"):
        wrap_pdf(record, b"<html/>", traits)


def test_the_facility_type_follows_the_sending_sector() -> None:
    record, pdf, traits = submitted()
    codes = {}
    for sector in ("HOSPITAL", "RADIOLOGY", "LAB", "OTHER"):
        cda, _ = wrap_pdf({**record, "sector": sector}, pdf, traits)
        root = etree.fromstring(cda)
        [code] = root.xpath(
            "v3:componentOf/v3:encompassingEncounter/v3:location/v3:healthCareFacility"
            "/v3:code/@code",
            namespaces=V3,
        )
        codes[sector] = code
        assert CdaSchema.load(shared("cda-xsd")).validate(cda) == []
    assert codes == {"HOSPITAL": "SA01", "RADIOLOGY": "SA08", "LAB": "SA25", "OTHER": "SA30"}


def test_local_ids_with_an_oid_authority_join_the_ins_in_record_target() -> None:
    record, pdf, traits = submitted()
    traits = {**traits, "local_ids": [["000002", "1.2.250.1.999.1.2"], ["77", "CHU-X"]]}
    cda, _ = wrap_pdf(record, pdf, traits)
    ids = etree.fromstring(cda).xpath("v3:recordTarget/v3:patientRole/v3:id", namespaces=V3)
    assert [(i.get("root"), i.get("extension")) for i in ids] == [
        (traits["ins_oid"], traits["ins"]),
        ("1.2.250.1.999.1.2", "000002"),
    ]
    assert header_problems(cda) == []
