"""The routing stage: a qualified, DMP-bound document gives one DMP request; all get an audit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ops.demo.samples import DOMINIQUE, IMAGING, LAB, LETTER, SARAH_LOU, Kind, Patient, sample
from producers.hl7.message import parse_message
from producers.submission import submissions
from relais.contracts import Codec, Record
from relais.deadletter import StageFailure
from relais.keyring import Keyring
from relais.settings import Settings, StageSettings
from relais.topics import AUDIT, DELIVERY_DMP, DELIVERY_NOTIFY
from streams.route.release_policy import DEFAULT_POLICY
from streams.route.stage import STAGE, handle, request_id
from streams.stage import StageContext
from streams.transcode import stage as transcode
from streams.worker import _release_policy
from tests.builders import qualified

KEYRING = Keyring.generate("k-route")
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
LATER = datetime(2026, 11, 22, 9, 17, tzinfo=UTC)
CODEC = Codec()
CTX = StageContext(keyring=KEYRING, now=LATER)


def ready(
    kind: Kind = LAB, patient: Patient = DOMINIQUE, flags: dict[str, bool] | None = None
) -> Record:
    """A DocumentReady record, made by the identity and transcode stages from a demo message."""
    ctx = StageContext(keyring=KEYRING, now=NOW)
    [record] = submissions(
        parse_message(sample(kind, patient, 1)), sector="LAB", keyring=KEYRING, now=NOW
    )
    _, record = CODEC.decode(CODEC.encode("IdentityQualified", qualified(record, NOW)))
    out = transcode.handle(record, ctx)[0]
    _, record = CODEC.decode(CODEC.encode(out.record_type, out.record))
    if flags is not None:
        record = {**record, "hints": {**record["hints"], "flags": flags}}
    return record


def route(record: Record) -> list[tuple[str, Record]]:
    outputs = handle(record, CTX)
    for out in outputs:
        CODEC.encode(out.record_type, out.record)  # every output matches its schema
        assert out.key == record["patient"]["patient_key"].encode()
    return [(out.record_type, out.record) for out in outputs]


@pytest.mark.parametrize("flags", [None, {}, {"DESTDMP": True}, {"OTHER": False}])
@pytest.mark.parametrize(
    ("kind", "patient"), [(LAB, DOMINIQUE), (IMAGING, SARAH_LOU), (LETTER, SARAH_LOU)]
)
def test_qualified_dmp_document_gives_one_request_and_one_audit(
    flags: dict[str, bool] | None, kind: Kind, patient: Patient
) -> None:
    record = ready(kind, patient, flags)
    outputs = handle(record, CTX)
    assert [(o.topic, o.record_type) for o in outputs] == [
        (DELIVERY_DMP, "DeliveryRequest"),
        (DELIVERY_NOTIFY, "DeliveryRequest"),  # the patient may see it: told when it can
        (AUDIT, "AuditEvent"),
    ]
    request, audit = outputs[0].record, outputs[2].record
    assert outputs[1].record["destination"] == "NOTIFY"
    document = record["document"]
    assert request["destination"] == "DMP"
    assert request["event_id"] == record["event_id"]
    assert request["request_id"] == request_id(document["unique_id"], document["action"], "DMP")
    assert request["requested_at"] == LATER
    assert request["document"] == document
    assert request["patient"] == record["patient"]
    assert request["recipient"] is None
    assert audit["outcome"] == "DMP,NOTIFY"
    assert audit["action"] == "ROUTED"
    assert audit["component"] == "route"
    assert audit["event_id"] == record["event_id"]
    assert audit["document_unique_id"] == document["unique_id"]
    route(record)


def test_destdmp_n_gives_only_the_audit() -> None:
    record = ready(flags={"DESTDMP": False})
    [(record_type, audit)] = route(record)
    assert record_type == "AuditEvent"
    assert audit["outcome"] == "no-destination"
    assert audit["document_unique_id"] == record["document"]["unique_id"]


@pytest.mark.parametrize("status", ["PROV", "RECUP", "VALI"])
def test_unqualified_identity_gives_no_delivery(status: str) -> None:
    record = {**ready(), "identity_status": status}
    [(record_type, audit)] = route(record)
    assert record_type == "AuditEvent"
    assert audit["outcome"] == "no-destination"


def test_audit_carries_no_patient_data() -> None:
    record = ready()
    audit = route(record)[-1][1]
    encoded = CODEC.encode("AuditEvent", audit)
    assert DOMINIQUE.ins.encode() not in encoded
    assert DOMINIQUE.family.encode() not in encoded
    assert record["patient"]["patient_key"].encode() not in encoded


def test_request_id_is_stable_across_calls() -> None:
    record = ready()
    first = route(record)[0][1]["request_id"]
    second = route(record)[0][1]["request_id"]
    assert first == second
    assert route(ready())[0][1]["request_id"] == first  # a new event for the same document
    assert len(first) == 32
    int(first, 16)


def test_audit_id_is_stable_for_a_replayed_event_and_distinct_across_events() -> None:
    record = ready()
    assert route(record)[-1][1]["audit_id"] == route(record)[-1][1]["audit_id"]
    other = {**record, "event_id": "another-event"}
    assert route(other)[-1][1]["audit_id"] != route(record)[-1][1]["audit_id"]


def test_request_id_differs_per_action_destination_and_document() -> None:
    uid = "1.2.250.1.213.1.1.9.4242.115022000001"
    ids = {
        request_id(uid, "SUBMIT", "DMP"),
        request_id(uid, "REPLACE", "DMP"),
        request_id(uid, "DELETE", "DMP"),
        request_id(uid, "SUBMIT", "MSSANTE"),
        request_id(uid, "SUBMIT", "NOTIFY"),
        request_id(uid + "2", "SUBMIT", "DMP"),
    }
    assert len(ids) == 6
    assert request_id(uid, "SUBMIT", "DMP") == request_id(uid, "SUBMIT", "DMP")


def test_request_id_separates_its_parts() -> None:
    assert request_id("1.2", "SUBMIT", "DMP") != request_id("1.2S", "UBMIT", "DMP")


def test_stage_declaration() -> None:
    assert STAGE.name == "route"
    assert STAGE.record_type == "DocumentReady"


def test_release_policy_travels_with_the_request_and_is_explained() -> None:
    record = ready(IMAGING, SARAH_LOU)
    outputs = route(record)
    request = next(r for t, r in outputs if t == "DeliveryRequest")
    audit = next(r for t, r in outputs if t == "AuditEvent")
    release = request["release"]
    assert release["patient_visible_from"] is not None
    assert (release["patient_visible_from"] - record["validated_at"]).days == 15
    assert "imaging-report-delay" in release["explanation"]
    assert audit["detail"].startswith(release["explanation"])


def test_forbidden_flag_combination_is_refused_with_the_volet_rule() -> None:
    flags = {"DESTMSSANTEPAT": True, "DESTDMP": True}  # patient only needs DESTDMP=N
    with pytest.raises(StageFailure) as caught:
        route(ready(flags=flags))
    assert caught.value.reason_code == "invalid-flag-combination"


def test_nuclear_medicine_waits_a_month() -> None:
    record = {**ready(IMAGING, SARAH_LOU), "modalities": ["NM"]}
    request = next(r for t, r in route(record) if t == "DeliveryRequest")
    delay = request["release"]["patient_visible_from"] - record["validated_at"]
    assert 28 <= delay.days <= 31
    assert "nuclear-medicine-delay" in request["release"]["explanation"]


def test_the_worker_runs_the_bundled_policy_or_the_operators_file(tmp_path: Path) -> None:
    assert _release_policy(Settings()) == DEFAULT_POLICY
    own = tmp_path / "policy.toml"
    own.write_text(
        (Path(__file__).resolve().parents[2] / "streams" / "route" / "release_policy.toml")
        .read_text(encoding="utf-8")
        .replace('"15 days"', '"20 days"')
    )
    assert _release_policy(Settings(stages=StageSettings(release_policy=own))) != DEFAULT_POLICY
