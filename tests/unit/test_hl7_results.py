"""Result OBX of an ORU^R01: every value kept whole, none dropped, none mislabelled."""

from __future__ import annotations

import pytest
from lxml import etree

from domain.cda_model import DocumentHeader, PatientHeader
from domain.lab_results import CodedResult, LabResult, MappingStatus, ValueType
from ops.demo.samples import (
    BIOLOGIST,
    DOMINIQUE,
    INS_TEST_OID,
    LABORATORY,
    RESULTS,
    lab_report_sample,
)
from producers.hl7.errors import Hl7ValidationError
from producers.hl7.message import parse_message
from streams.transcode.cda_build import build_cr_bio_n3

BASE = lab_report_sample(DOMINIQUE, 1)


def with_obx(*segments: str) -> bytes:
    return BASE + "".join(s + "\r" for s in segments).encode()


def test_ratios_and_ranges_are_kept_whole_as_text() -> None:
    message = parse_message(
        with_obx(
            "OBX|20|SN|TITRE^Titre^L||^1^:^128||||||F",
            "OBX|21|SN|PLQ^Plaquettes^L||>^400|10*9/L|||||F",
        )
    )
    titre, plaquettes = message.results[-2:]
    assert (titre.value, titre.value_type) == ("1:128", ValueType.TEXT)
    assert (plaquettes.value, plaquettes.value_type) == (">400", ValueType.NUMERIC)


def test_dates_and_multi_line_text_are_results_too() -> None:
    message = parse_message(
        with_obx(
            "OBX|20|DT|DDR^Dernières règles^L||20261101||||||F",
            "OBX|21|TX|COM^Commentaire^L||ligne 1~ligne 2||||||F",
        )
    )
    date, comment = message.results[-2:]
    assert (date.value, date.value_type) == ("20261101", ValueType.TEXT)
    assert comment.value == "ligne 1\nligne 2"


def test_an_unsupported_value_type_is_refused_not_dropped() -> None:
    with pytest.raises(Hl7ValidationError) as caught:
        parse_message(with_obx("OBX|20|RP|IMG^Image^L||http://x||||||F"))
    assert caught.value.location == "OBX-2"


def test_a_unit_that_is_not_ucum_is_never_written_as_1() -> None:
    result = LabResult("TSH", "TSH", "2.5", ValueType.NUMERIC, "mUI/L", "0.4-4.0")
    odd = CodedResult(
        result,
        "3016-3",
        RESULTS[0].code_system,
        "TSH",
        None,
        MappingStatus.SUSPICIOUS,
        ("unit-not-ucum",),
    )
    header = DocumentHeader(
        "1.2.3.4",
        "5",
        "1.2.3.4",
        "6",
        1,
        "11502-2",
        "CR",
        "CR",
        "20261122101500+0100",
        BIOLOGIST,
        LABORATORY,
        LABORATORY,
        BIOLOGIST,
        "20261122101500+0100",
    )
    patient = PatientHeader(
        DOMINIQUE.ins,
        INS_TEST_OID,
        DOMINIQUE.family,
        DOMINIQUE.given,
        DOMINIQUE.birth_date,
        DOMINIQUE.sex,
        DOMINIQUE.birthplace,
    )
    built = etree.fromstring(build_cr_bio_n3(header, patient, [odd], b"%PDF-1.4\n%%EOF\n"))
    v3 = {"v3": "urn:hl7-org:v3", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
    value = built.xpath("//v3:observation/v3:value", namespaces=v3)[0]
    assert value.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "ST"
    assert value.text == "2.5 mUI/L"
    assert not built.xpath("//v3:observation//*[@unit='1']", namespaces=v3)
