"""Corrections of CDAs Relais builds: new id, same setId, versionNumber + 1, RPLC to the latest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from domain.cda_validate import CdaSchema, header_problems
from ops.demo.samples import DOMINIQUE, lab_report_sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Record
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring
from streams.stage import StageContext
from streams.transcode.document_series import Version, assign, cda_id_for, latest
from streams.transcode.lab_catalogue import load_directory
from streams.transcode.lab_codes import LoincTable, UcumUnits
from streams.transcode.lab_report import LabReferences
from streams.transcode.stage import transcode_stage
from tests.builders import qualified
from tests.shared_data import shared

KEYRING = Keyring.generate()
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
V3 = {"v3": "urn:hl7-org:v3"}
REFS = LabReferences(
    catalogues=load_directory(Path(__file__).resolve().parents[1] / "fixtures" / "catalogues"),
    loinc=LoincTable.from_csv(
        shared("loinc", "loinc_fr_labels_from_ans_crbio_examples.csv").read_text(encoding="utf-8")
    ),
    ucum=UcumUnits.from_xml(shared("jdv", "UCUM_2.16.840.1.113883.6.8.xml").read_bytes()),
)
SCHEMA = CdaSchema.load(shared("cda-xsd"))


def test_a_first_submission_is_its_own_series() -> None:
    state: dict[str, str] = {}
    version = assign(
        state, unique_id="OBR.1", action="SUBMIT", parent_unique_id=None, event_id="e1"
    )
    assert version == Version(cda_id_for("OBR.1"), cda_id_for("OBR.1"), 1, None)
    assert latest(state, "OBR.1") == version.cda_id


def test_each_correction_replaces_the_latest_version() -> None:
    state: dict[str, str] = {}
    first = assign(state, unique_id="OBR.1", action="SUBMIT", parent_unique_id=None, event_id="e1")
    second = assign(
        state, unique_id="OBR.1", action="REPLACE", parent_unique_id=None, event_id="e2"
    )
    third = assign(state, unique_id="OBR.1", action="REPLACE", parent_unique_id=None, event_id="e3")
    assert (second.number, second.set_id, second.replaces) == (2, first.set_id, first.cda_id)
    assert (third.number, third.set_id, third.replaces) == (3, first.set_id, second.cda_id)
    assert len({first.cda_id, second.cda_id, third.cda_id}) == 3
    assert latest(state, "OBR.1") == third.cda_id


def test_a_correction_processed_again_keeps_its_version() -> None:
    state: dict[str, str] = {}
    assign(state, unique_id="OBR.1", action="SUBMIT", parent_unique_id=None, event_id="e1")
    once = assign(state, unique_id="OBR.1", action="REPLACE", parent_unique_id=None, event_id="e2")
    again = assign(state, unique_id="OBR.1", action="REPLACE", parent_unique_id=None, event_id="e2")
    assert once == again
    assert latest(state, "OBR.1") == once.cda_id


def test_mdm_replacements_follow_their_parent_chain() -> None:
    state: dict[str, str] = {}
    first = assign(state, unique_id="DOC-A", action="SUBMIT", parent_unique_id=None, event_id="e1")
    second = assign(
        state, unique_id="DOC-B", action="REPLACE", parent_unique_id="DOC-A", event_id="e2"
    )
    third = assign(
        state, unique_id="DOC-C", action="REPLACE", parent_unique_id="DOC-B", event_id="e3"
    )
    assert second == Version(cda_id_for("DOC-B"), first.set_id, 2, first.cda_id)
    assert third == Version(cda_id_for("DOC-C"), first.set_id, 3, second.cda_id)


def test_a_correction_of_a_document_relais_never_saw_is_version_two() -> None:
    version = assign({}, unique_id="OBR.9", action="REPLACE", parent_unique_id=None, event_id="e")
    assert (version.number, version.replaces) == (2, cda_id_for("OBR.9"))


@given(st.lists(st.sampled_from(["new", "replay"]), min_size=1, max_size=12))
def test_versions_are_contiguous_whatever_the_replays(steps: list[str]) -> None:
    state: dict[str, str] = {}
    assign(state, unique_id="S", action="SUBMIT", parent_unique_id=None, event_id="e0")
    seen: dict[str, Version] = {}
    events: list[str] = []
    for step in steps:
        if step == "new" or not events:
            events.append(f"e{len(events) + 1}")
            event = events[-1]
        else:
            event = events[len(events) // 2]
        version = assign(
            state, unique_id="S", action="REPLACE", parent_unique_id=None, event_id=event
        )
        assert seen.setdefault(event, version) == version
    numbers = sorted(v.number for v in seen.values())
    assert numbers == list(range(2, len(events) + 2))
    by_number = {v.number: v for v in seen.values()}
    for number in numbers[1:]:
        assert by_number[number].replaces == by_number[number - 1].cda_id


# ------------------------------------------------------------- through the transcode stage


def _transcode(raw: bytes, state: dict[str, str]) -> tuple[Record, bytes]:
    [submitted] = submissions(parse_message(raw), sector="LAB", keyring=KEYRING, now=NOW)
    ctx = StageContext(keyring=KEYRING, now=NOW, state=state)
    out = transcode_stage(SCHEMA, REFS).handle(qualified(submitted, NOW), ctx)[0]
    document = out.record["document"]
    content = open_envelope(
        KEYRING,
        Envelope.from_record(document["content"]),
        event_id=out.record["event_id"],
        purpose="content",
    )
    return out.record, content


def _header(cda: bytes) -> dict[str, str | None]:
    root = etree.fromstring(cda)

    def one(path: str) -> str | None:
        found = root.xpath(path, namespaces=V3)
        return str(found[0]) if found else None

    return {
        "id": one("v3:id/@root"),
        "set": one("v3:setId/@root"),
        "version": one("v3:versionNumber/@value"),
        "rplc": one("v3:relatedDocument[@typeCode='RPLC']/v3:parentDocument/v3:id/@root"),
    }


def test_an_oru_correction_becomes_a_new_version_of_the_cr_bio() -> None:
    state: dict[str, str] = {}
    original, first = _transcode(lab_report_sample(DOMINIQUE, 1), state)
    corrected, second = _transcode(lab_report_sample(DOMINIQUE, 1, status="C"), state)
    _, third = _transcode(lab_report_sample(DOMINIQUE, 1, status="C", resend=1), state)
    h1, h2, h3 = _header(first), _header(second), _header(third)
    assert h1 == {"id": h1["id"], "set": h1["id"], "version": "1", "rplc": None}
    assert h2 == {"id": h2["id"], "set": h1["id"], "version": "2", "rplc": h1["id"]}
    assert h3 == {"id": h3["id"], "set": h1["id"], "version": "3", "rplc": h2["id"]}
    assert len({h1["id"], h2["id"], h3["id"]}) == 3
    assert corrected["document"]["unique_id"] == h2["id"]
    assert corrected["document"]["parent_unique_id"] == h1["id"]
    assert original["document"]["parent_unique_id"] is None
    for cda in (second, third):
        assert header_problems(cda) == []
        assert SCHEMA.validate(cda) == []


def test_a_deletion_names_the_current_version() -> None:
    state: dict[str, str] = {}
    _transcode(lab_report_sample(DOMINIQUE, 1), state)
    _, corrected = _transcode(lab_report_sample(DOMINIQUE, 1, status="C"), state)
    deletion, _ = _transcode(lab_report_sample(DOMINIQUE, 1, status="D"), state)
    assert deletion["document"]["action"] == "DELETE"
    assert deletion["document"]["unique_id"] == _header(corrected)["id"]
    assert deletion["cda_model"] == "deletion"


def test_the_generated_cr_bio_names_the_biologist_and_the_laboratory_setting() -> None:
    record, cda = _transcode(lab_report_sample(DOMINIQUE, 2), {})
    root = etree.fromstring(cda)
    code = root.xpath("v3:author/v3:assignedAuthor/v3:code", namespaces=V3)[0]
    assert (code.get("code"), code.get("codeSystem")) == ("G15_10/SM03", "1.2.250.1.213.1.1.4.5")
    facility = root.xpath(
        "v3:componentOf/v3:encompassingEncounter/v3:location/v3:healthCareFacility/v3:code/@code",
        namespaces=V3,
    )
    assert facility == ["SA25"]
    signed = root.xpath("v3:legalAuthenticator/v3:time/@value", namespaces=V3)[0]
    assert record["validated_at"] is not None
    assert record["validated_at"].strftime("%Y%m%d") == signed[:8]
    assert json.dumps(record["modalities"]) == "[]"
