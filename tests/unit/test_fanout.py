"""Fan-out: DMP, MSSanté (professionals, patient), notification; replacements and deletions."""

from __future__ import annotations

import json

import pytest

from ops.demo.samples import DOMINIQUE, LAB
from relais.contracts import Codec, Record
from relais.envelope import Envelope, EnvelopeError, open_envelope, seal
from relais.keyring import Keyring
from relais.topics import AUDIT, DELIVERY_DMP, DELIVERY_MSSANTE, DELIVERY_NOTIFY
from streams.route import fanout
from streams.route.release_policy import DEFAULT_POLICY
from streams.route.stage import route_stage
from streams.stage import StageContext
from tests.unit.test_route_stage import KEYRING, LATER, ready

CODEC = Codec()
PROS = ["dr.martin@ch-xyz.mssante.fr", "cardiologie@ch-xyz.mssante.fr"]
EVERYONE = {"DESTDMP": True, "DESTMSSANTEPS": True, "DESTMSSANTEPAT": True}


def with_recipients(record: Record, addresses: list[str], flags: dict[str, bool]) -> Record:
    sealed = seal(
        KEYRING, json.dumps(addresses).encode(), event_id=record["event_id"], purpose="recipient"
    )
    return {**record, "hints": {"flags": flags, "recipients": sealed.to_record()}}


def run(record: Record, state: dict[str, str]) -> list[tuple[str, Record]]:
    ctx = StageContext(keyring=KEYRING, now=LATER, state=state)
    outputs = route_stage(DEFAULT_POLICY).handle(record, ctx)
    for out in outputs:
        CODEC.encode(out.record_type, out.record)
    topics = {t.suffix: d for t, d in ((DELIVERY_DMP, "DMP"), (DELIVERY_MSSANTE, "MSSANTE"))}
    topics[DELIVERY_NOTIFY.suffix] = "NOTIFY"
    for out in outputs[:-1]:
        assert topics[out.topic.suffix] == out.record["destination"]
    assert outputs[-1].topic == AUDIT
    return [
        (out.record["destination"] if out.topic != AUDIT else "AUDIT", out.record)
        for out in outputs
    ]


def recipient(request: Record) -> str | None:
    if request["recipient"] is None:
        return None
    return open_envelope(
        KEYRING,
        Envelope.from_record(request["recipient"]),
        event_id=request["event_id"],
        purpose="recipient",
    ).decode()


def test_a_lab_result_fans_out_to_dmp_professionals_patient_mailbox_and_notification() -> None:
    record = with_recipients(ready(LAB, DOMINIQUE), PROS, EVERYONE)
    outputs = run(record, {})
    requests = [(d, recipient(r)) for d, r in outputs if d != "AUDIT"]
    assert requests == [
        ("DMP", None),
        ("MSSANTE", PROS[0]),
        ("MSSANTE", PROS[1]),
        ("MSSANTE", f"{DOMINIQUE.ins}@patient.mssante.fr"),
        ("NOTIFY", None),
    ]
    ids = [r["request_id"] for d, r in outputs if d != "AUDIT"]
    assert len(set(ids)) == len(ids)
    audit = CODEC.encode("AuditEvent", outputs[-1][1])
    assert DOMINIQUE.ins.encode() not in audit
    assert b"mssante.fr" not in audit
    assert outputs[-1][1]["outcome"].startswith("DMP,MSSANTE:ps-")
    assert "MSSANTE:patient,NOTIFY" in outputs[-1][1]["outcome"]


def test_the_same_document_routed_again_gives_the_same_request_ids() -> None:
    record = with_recipients(ready(), PROS, EVERYONE)
    first = [r["request_id"] for d, r in run(record, {}) if d != "AUDIT"]
    again = [r["request_id"] for d, r in run(record, {}) if d != "AUDIT"]
    assert first == again


def test_patient_only_mail_reaches_the_patient_and_notifies() -> None:
    flags = {"DESTDMP": False, "DESTMSSANTEPAT": True}
    outputs = run({**ready(), "hints": {"flags": flags, "recipients": None}}, {})
    assert [(d, recipient(r)) for d, r in outputs[:-1]] == [
        ("MSSANTE", f"{DOMINIQUE.ins}@patient.mssante.fr"),
        ("NOTIFY", None),
    ]


def test_a_document_the_patient_may_never_see_is_never_notified() -> None:
    flags = {"INVISIBLE_PATIENT": True}
    outputs = run({**ready(), "hints": {"flags": flags, "recipients": None}}, {})
    assert [d for d, _ in outputs] == ["DMP", "AUDIT"]


def test_what_cannot_be_done_is_explained_not_guessed() -> None:
    flags = {"DESTMSSANTEPS": True, "INVISIBLE_PATIENT": True}  # the volet's PS-only rule
    record = with_recipients({**ready(), "identity_status": "VALI"}, [], flags)
    outputs = run(record, {})
    assert [d for d, _ in outputs] == ["AUDIT"]
    detail = outputs[-1][1]["detail"]
    assert "the INS is VALI" in detail
    assert "no PRT RCT recipient" in detail


def _version(record: Record, unique_id: str, action: str, parent: str | None) -> Record:
    document = {**record["document"], "unique_id": unique_id, "action": action}
    return {
        **record,
        "event_id": f"ev-{unique_id}-{action}",
        "document": {**document, "parent_unique_id": parent},
    }


def test_replacements_and_deletions_follow_every_destination_of_the_original() -> None:
    state: dict[str, str] = {}
    flags = {"DESTDMP": True, "DESTMSSANTEPS": True, "INVISIBLE_PATIENT": True}
    original = with_recipients(ready(), PROS[:1], flags)
    first = run(original, state)
    assert [d for d, _ in first] == ["DMP", "MSSANTE", "AUDIT"]
    original_id = original["document"]["unique_id"]
    # the correction only says DESTDMP (and may be seen by the patient): it still reaches the
    # professional who got the original
    replacement = _version(ready(), "2.25.2", "REPLACE", original_id)
    replacement = {**replacement, "hints": {"flags": {"DESTDMP": True}, "recipients": None}}
    second = run(replacement, state)
    assert [(d, recipient(r)) for d, r in second[:-1]] == [
        ("DMP", None),
        ("MSSANTE", PROS[0]),
        ("NOTIFY", None),
    ]
    assert all(r["document"]["action"] == "REPLACE" for _, r in second[:-1])
    deletion = _version(ready(), "2.25.2", "DELETE", None)
    third = run({**deletion, "hints": {"flags": {}, "recipients": None}}, state)
    # the notify sink hears of the deletion too: it cancels a notification under embargo
    assert [(d, recipient(r)) for d, r in third[:-1]] == [
        ("DMP", None),
        ("MSSANTE", PROS[0]),
        ("NOTIFY", None),
    ]
    ids = {r["request_id"] for out in (first, second, third) for d, r in out if d != "AUDIT"}
    assert len(ids) == 2 + 3 + 3


def test_the_history_keeps_addresses_sealed() -> None:
    state: dict[str, str] = {}
    run(with_recipients(ready(), PROS, EVERYONE), state)
    stored = json.dumps(state)
    assert "mssante.fr" not in stored
    assert DOMINIQUE.ins not in stored
    [(key, _)] = state.items()
    targets = fanout.recall(state, KEYRING, key.removeprefix("dest:"))
    assert [t.recipient for t in targets if t.destination == "MSSANTE"] == [
        *PROS,
        f"{DOMINIQUE.ins}@patient.mssante.fr",
    ]


@pytest.mark.parametrize("action", ["REPLACE", "DELETE"])
def test_a_life_cycle_step_for_an_unknown_document_goes_where_the_flags_say(action: str) -> None:
    step = _version(ready(), "2.25.9", action, "2.25.8" if action == "REPLACE" else None)
    outputs = run(step, {})
    expected = ["DMP", "NOTIFY", "AUDIT"] if action == "REPLACE" else ["DMP", "AUDIT"]
    assert [d for d, _ in outputs] == expected
    assert (
        "did not route" in outputs[-1][1]["detail"]
        or "unknown to Relais" in outputs[-1][1]["detail"]
    )


def test_keyring_is_needed_to_read_the_history() -> None:
    state: dict[str, str] = {}
    run(with_recipients(ready(), PROS, EVERYONE), state)
    [(key, _)] = state.items()
    with pytest.raises(EnvelopeError):
        fanout.recall(state, Keyring.generate("other"), key.removeprefix("dest:"))
