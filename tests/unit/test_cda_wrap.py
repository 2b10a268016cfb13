"""A producer's PDF becomes a valid CI-SIS N1 CDA with a stable id."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from producers.hl7_message import parse_message
from producers.submission import submissions
from relais.demo.samples import IMAGING, SARAH_LOU, pdf_sample
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from streams.cda_validate import CdaSchema, header_problems
from streams.cda_wrap import WrapFailure, cda_id_for, wrap_pdf
from tests.shared_data import shared

KEYRING = Keyring.generate()
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


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
