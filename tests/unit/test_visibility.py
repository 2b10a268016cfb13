"""The embargo lifecycle's pure parts: the DMP's visibility lifts (consumers.dmp.visibility),
the notification gate that waits for TD3.3b (consumers.notify), the patient's MSSanté hold."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from consumers.dmp import visibility
from consumers.dmp import visibility_lifts as lifts_module
from consumers.dmp.submission import Answer
from consumers.dmp.visibility import Lift, Plan, State, VisibilityError
from consumers.dmp.visibility_lifts import VisibilityLifts
from consumers.ihe.iti18 import Found
from consumers.notify import dmp_gate
from consumers.notify.dmp_gate import DmpOutcome, dmp_outcome_of
from consumers.notify.ledger_entry import Entry
from consumers.notify.ledger_entry import State as NotifyState
from consumers.notify.rate import RateLimit
from consumers.notify.schedule import Incoming, Ledger
from domain.xds.metadata import document_entry
from mss_bridge.patient_hold import Hold, PatientHolds, held_until
from ops.demo.samples import DOMINIQUE, IMAGING, cda
from relais.contracts import Codec
from relais.envelope import open_envelope, seal
from relais.health import Flag
from relais.keyring import Keyring

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
RELEASE = T0 + timedelta(days=15)
DOC_ID = "1.2.250.1.213.1.1.9.4242.18748400057"
FILED = document_entry(cda(IMAGING, DOMINIQUE, DOC_ID, "scanner"), {"INVISIBLE_PATIENT": True})
PATIENT = FILED.patient_id
KEYRING = Keyring.generate()


def request(
    *, visible_from: datetime | None = RELEASE, flags: dict[str, bool] | None = None
) -> dict[str, Any]:
    return {
        "request_id": "req-1",
        "event_id": "evt-1",
        "submitted_at": T0,
        "flags": flags or {},
        "release": {"patient_visible_from": visible_from},
        "document": {"unique_id": DOC_ID, "action": "SUBMIT"},
        "patient": {"patient_key": "a" * 64},
    }


def lift(**changes: Any) -> Lift:
    sealed = seal(KEYRING, visibility.payload(PATIENT, FILED), event_id="evt-1", purpose="x")
    made = visibility.lift_of(
        request(), FILED, visibility.envelope_fields(sealed), key="a" * 64, now=T0
    )
    assert made is not None
    return replace(made, **changes)


# -- which filings leave a lift ----------------------------------------------------------


def test_an_embargoed_document_leaves_a_lift_at_its_release_date() -> None:
    made = lift()
    assert (made.release_at, made.state, made.invisible) == (RELEASE, State.PENDING, True)
    assert visibility.release_date(request()) == RELEASE


@pytest.mark.parametrize(
    ("visible_from", "flags"),
    [
        (None, {}),  # never visible: nothing lifts it
        (T0, {}),  # visible on submission
        (T0 - timedelta(days=1), {}),  # the embargo ended before the submission
        (RELEASE, {"INVISIBLE_PATIENT": True}),  # the producer's choice: never lifted
    ],
)
def test_no_lift_without_an_embargo(visible_from: datetime | None, flags: dict[str, bool]) -> None:
    assert visibility.release_date(request(visible_from=visible_from, flags=flags)) is None
    sealed = {"key_id": "k", "nonce": "", "ciphertext": ""}
    made = visibility.lift_of(
        request(visible_from=visible_from, flags=flags), FILED, sealed, key="k", now=T0
    )
    assert made is None


def test_a_filing_after_the_date_only_confirms() -> None:
    visible = document_entry(cda(IMAGING, DOMINIQUE, DOC_ID, "scanner"), {})
    sealed = {"key_id": "k", "nonce": "", "ciphertext": ""}
    made = visibility.lift_of(request(), visible, sealed, key="k", now=T0)
    assert made is not None
    assert not made.invisible
    assert visibility.plan(made, None) is Plan.CONFIRM


# -- the lift's life -----------------------------------------------------------------------


def version(number: str, codes: tuple[str, ...], status: str = "Approved") -> Found:
    """The DMP's version of the document, as ITI-18 LeafClass describes it."""
    return Found(f"urn:uuid:v{number}", "urn:uuid:v1", number, status, "1.2.3", codes)


def test_plan_sends_then_reconciles_on_the_current_version() -> None:
    pending = lift()
    assert visibility.plan(pending, None) is Plan.GONE
    assert visibility.plan(pending, version("1", ("N", "INVISIBLE_PATIENT"))) is Plan.SEND
    sending = replace(pending, state=State.SENDING, lid="urn:uuid:v1", attempt=1)
    # the current version still hides it: the update never arrived, send it again
    assert visibility.plan(sending, version("1", ("N", "INVISIBLE_PATIENT"))) is Plan.SEND
    # the current version is visible: the DMP made it before the crash, nothing to resend
    assert visibility.plan(sending, version("2", ("N",))) is Plan.RECONCILED


def test_done_lifts_expire_after_the_horizon() -> None:
    done = lift(request_id="c", state=State.DONE, at=T0)
    pending = lift(request_id="d")
    lifts = {x.request_id: x for x in (done, pending)}
    assert visibility.expired(lifts, T0 + visibility.DONE_HORIZON - timedelta(seconds=1)) == []
    assert visibility.expired(lifts, T0 + visibility.DONE_HORIZON) == [done]


def test_a_payload_of_another_release_is_a_visibility_error() -> None:
    good = json.loads(visibility.payload(PATIENT, FILED))
    assert good["v"] == visibility.PAYLOAD_VERSION
    unversioned = {k: v for k, v in good.items() if k != "v"}  # sealed before the version
    assert visibility.opened(json.dumps(unversioned).encode()) == (PATIENT, FILED)
    for bad in (
        {**good, "v": 99},
        {**good, "entry": {**good["entry"], "renamed_field": 1}},  # TypeError
        {"v": 2, "patient_id": PATIENT},  # KeyError
    ):
        with pytest.raises(VisibilityError):
            visibility.opened(json.dumps(bad).encode())


def test_due_lifts_are_the_undone_ones_whose_date_came() -> None:
    early = lift(request_id="a", release_at=T0 + timedelta(days=1))
    late = lift(request_id="b")
    done = lift(request_id="c", release_at=T0, state=State.DONE)
    lifts = {x.request_id: x for x in (late, early, done)}
    assert visibility.due(lifts, T0) == []
    assert visibility.due(lifts, RELEASE) == [early, late]


def test_a_lift_reads_back_and_its_sealed_payload_opens() -> None:
    made = lift(state=State.SENDING, lid="urn:uuid:v1", attempt=2)
    assert Lift.from_bytes(made.to_bytes()) == made
    plain = open_envelope(
        KEYRING, visibility.envelope_of(made.sealed), event_id="evt-1", purpose="x"
    )
    assert visibility.opened(plain) == (PATIENT, FILED)
    assert DOMINIQUE.ins.encode() not in made.to_bytes()  # the patient travels sealed
    with pytest.raises(VisibilityError):
        Lift.from_bytes(b'{"v": 9}')
    with pytest.raises(VisibilityError):
        visibility.envelope_of({"key_id": "k", "nonce": "%%", "ciphertext": ""})


def test_the_visibility_status_meets_the_notification_gate() -> None:
    status = visibility.status_of(
        lift(), outcome="DELIVERED", code=None, detail="visible", now=RELEASE
    )
    assert status["request_id"] == "req-1|visibility"
    assert status["destination"] == "DMP"
    assert visibility.SUFFIX == dmp_gate.VISIBILITY_SUFFIX
    outcome = dmp_outcome_of(status)
    assert outcome is not None
    assert outcome.step == dmp_gate.VISIBILITY
    assert outcome.filed
    assert outcome.key == b"dmp:evt-1|visibility"
    filing = dmp_outcome_of({**status, "request_id": "req-1"})
    assert filing is not None
    assert filing.step == dmp_gate.FILING


# -- the notification waits for TD3.3b -----------------------------------------------------

NO_LIMIT = RateLimit(1000, 1.0)
IDENTITY = {"key_id": "k1", "nonce": b"\x01" * 12, "ciphertext": b"\x02" * 40}


def incoming(visible_from: datetime = RELEASE) -> Incoming:
    return Incoming(
        request_id="notify-1",
        event_id="evt-1",
        patient_key="a" * 64,
        document_unique_id=DOC_ID,
        parent_unique_id=None,
        action="SUBMIT",
        visible_from=visible_from,
        submitted_at=T0,
        identity=IDENTITY,
        after_dmp=True,
    )


def gate(filed: bool, step: str, at: datetime = T0) -> DmpOutcome:
    return DmpOutcome("evt-1", filed, None if filed else "XDSMetadataVersionError", at, step)


def admitted(ledger: Ledger, when: datetime = T0) -> list[Entry]:
    writes = ledger.admit(incoming(), when).writes
    for entry in writes:
        ledger.apply(entry)
    return list(writes)


def apply(ledger: Ledger, outcome: DmpOutcome, now: datetime) -> list[Any]:
    admission, _keep = ledger.dmp_outcome(outcome, now)
    for entry in admission.writes:
        ledger.apply(entry)
    return [(e.state, n.code) for e, n in admission.notes]


def due_ids(ledger: Ledger, now: datetime) -> list[str]:
    return [e.request_id for b in ledger.due(now, NO_LIMIT).batches for e in b.entries]


def test_an_embargoed_notification_waits_for_the_visibility_confirmation() -> None:
    ledger = Ledger()
    [waiting] = admitted(ledger)
    assert waiting.state is NotifyState.WAITING
    # filed invisible: it waits on, and says what for
    assert apply(ledger, gate(True, dmp_gate.FILING), T0) == [
        (NotifyState.WAITING, "WAITING_FOR_DMP_VISIBILITY")
    ]
    assert ledger.waiting["notify-1"].state is NotifyState.WAITING
    assert due_ids(ledger, RELEASE + timedelta(days=1)) == []  # the date alone tells nobody
    assert apply(ledger, gate(True, dmp_gate.VISIBILITY, RELEASE), RELEASE) == []
    assert due_ids(ledger, RELEASE) == ["notify-1"]


def test_a_refused_visibility_update_cancels_the_notification() -> None:
    ledger = Ledger()
    admitted(ledger)
    apply(ledger, gate(True, dmp_gate.FILING), T0)
    notes = apply(ledger, gate(False, dmp_gate.VISIBILITY, RELEASE), RELEASE)
    assert notes == [(NotifyState.CANCELLED, "DMP_VISIBILITY_REFUSED")]
    assert due_ids(ledger, RELEASE + timedelta(days=30)) == []


def test_outcomes_before_the_request_are_kept_per_step() -> None:
    ledger = Ledger()
    assert ledger.dmp_outcome(gate(True, dmp_gate.FILING), T0)[1]
    writes = ledger.admit(incoming(), T0).writes
    assert [e.state for e in writes] == [NotifyState.WAITING]  # the filing alone is not enough
    restored = Ledger()
    confirmed = gate(True, dmp_gate.VISIBILITY, RELEASE)
    restored.restore_outcome(DmpOutcome.from_bytes(gate(True, dmp_gate.FILING).to_bytes()))
    restored.restore_outcome(DmpOutcome.from_bytes(confirmed.to_bytes()))
    assert [e.state for e in restored.admit(incoming(), RELEASE).writes] == [NotifyState.SCHEDULED]
    refused = Ledger()
    refused.restore_outcome(gate(True, dmp_gate.FILING))
    refused.restore_outcome(gate(False, dmp_gate.VISIBILITY, RELEASE))
    admission = refused.admit(incoming(), RELEASE)
    assert [n.code for _, n in admission.notes] == ["DMP_VISIBILITY_REFUSED"]


def test_a_document_visible_on_submission_needs_only_the_filing() -> None:
    ledger = Ledger()
    writes = ledger.admit(incoming(visible_from=T0), T0).writes
    for entry in writes:
        ledger.apply(entry)
    assert apply(ledger, gate(True, dmp_gate.FILING), T0) == []
    assert due_ids(ledger, T0) == ["notify-1"]


def test_an_outcome_written_before_the_step_existed_reads_as_the_filing() -> None:
    old = b'{"at":1,"code":null,"event_id":"evt-1","filed":true,"v":1}'
    assert DmpOutcome.from_bytes(old).step == dmp_gate.FILING


# -- the patient's MSSanté copy ------------------------------------------------------------


def test_only_the_patients_copy_of_an_embargoed_document_is_held() -> None:
    embargoed = request()
    assert held_until(embargoed, "patient.mssante.fr", T0) == RELEASE
    assert held_until(embargoed, "PATIENT.mssante.fr", RELEASE) is None  # the date came
    assert held_until(embargoed, "medecin.mssante.fr", T0) is None  # professionals: now
    assert held_until(request(visible_from=T0), "patient.mssante.fr", T0) is None
    deletion = {**embargoed, "document": {"unique_id": DOC_ID, "action": "DELETE"}}
    assert held_until(deletion, "patient.mssante.fr", T0) is None


def test_a_hold_reads_back() -> None:
    hold = Hold("req-1", DOC_ID, RELEASE, b"a" * 64, b"\xc3\x01record")
    assert Hold.from_bytes(hold.to_bytes()) == hold
    with pytest.raises(ValueError, match="version"):
        Hold.from_bytes(b'{"v": 2}')


# -- the async shell (consumers.dmp.visibility_lifts): order, errors, budget, tombstones --


class Recorder:
    """The sink loop's producer and emit, recording what the lifts write, in order; the
    writes named in ``fail`` (by their number, from 1) raise a broker error."""

    def __init__(self, fail: tuple[int, ...] = ()) -> None:
        self.log: list[tuple[str, Any]] = []
        self.statuses: list[tuple[str, str | None]] = []  # (outcome, code) emitted
        self.producer = self
        self.consumer = SimpleNamespace(assignment=lambda: {TopicPartition("in", 0)})
        self.fail, self.writes = fail, 0

    async def send_and_wait(self, topic: str, value: bytes | None, **_: Any) -> None:
        self.writes += 1
        if self.writes in self.fail:
            raise KafkaTimeoutError()
        self.log.append(("write", None if value is None else Lift.from_bytes(value).state))

    async def emit(self, outputs: list[Any]) -> None:
        self.log.append(("emit", len(outputs)))
        status = Codec().decode(outputs[0].value)[1]
        self.statuses.append((status["outcome"], status["code"]))


class Dmp:
    """The DMP as the lifts use it: its current version, then ITI-57 (or an error)."""

    def __init__(self, current: Found | None = None, error: Exception | None = None) -> None:
        self.current_version, self.error = current, error
        self.updates: list[Any] = []

    async def current(self, *_: Any) -> Found | None:
        if self.error is not None:
            raise self.error
        return self.current_version

    async def update(self, update: Any, *_: Any) -> Answer:
        self.updates.append(update)
        return Answer("success")


def shell(
    dmp: Dmp, *lifts: Lift, answered: Flag | None = None, loop: Recorder | None = None
) -> tuple[VisibilityLifts, Recorder]:
    loop = loop or Recorder()
    flag = answered or Flag(True, "")
    held = VisibilityLifts(
        bootstrap="localhost:1", prefix="t", keyring=KEYRING, client=dmp, loop=loop,  # type: ignore[arg-type]
        codec=Codec(), input_topic="in", clock=lambda: RELEASE,
        dmp_answered=lambda: flag.set(True, "DMP answering"),
    )  # fmt: skip
    held.lifts = {0: {x.request_id: x for x in lifts}}
    return held, loop


def due_lift(request_id: str = "req-1", plain: bytes | None = None) -> Lift:
    sealed = seal(
        KEYRING,
        plain or visibility.payload(PATIENT, FILED),
        event_id="evt-1",
        purpose=lifts_module.PURPOSE,
    )
    return lift(request_id=request_id, sealed=visibility.envelope_fields(sealed))


HIDDEN = Found("urn:uuid:v3", "urn:uuid:v1", "3", "Approved", "1.2.3.4", ("N", "INVISIBLE_PATIENT"))


async def test_the_status_is_acknowledged_before_the_lift_is_written_done() -> None:
    dmp = Dmp(HIDDEN)
    held, loop = shell(dmp, due_lift())
    await held.tick()
    assert loop.log == [("write", State.SENDING), ("emit", 2), ("write", State.DONE)]
    [update] = dmp.updates  # the next version of the DMP's current one
    assert (update.lid, update.previous_version, update.repository_unique_id) == (
        "urn:uuid:v1",
        "3",
        "1.2.3.4",
    )


async def test_an_unexpected_error_ends_the_lift_instead_of_the_sink() -> None:
    held, loop = shell(Dmp(error=RuntimeError("boom")), due_lift())
    await held.tick()  # never raises out of after_poll
    [done] = held.lifts[0].values()
    assert (done.state, done.outcome, done.code) == (State.DONE, "REJECTED", "lift-error")
    assert loop.log == [("emit", 2), ("write", State.DONE)]
    old = json.dumps({"patient_id": PATIENT, "entry": {"renamed": 1}}).encode()
    held, _ = shell(Dmp(HIDDEN), due_lift(plain=old))  # sealed by another release
    await held.tick()
    assert next(iter(held.lifts[0].values())).code == "lift-unreadable"


async def test_a_tick_sends_a_bounded_number_and_none_while_a_lift_waits_out_an_outage() -> None:
    many = [due_lift(f"req-{n}") for n in range(lifts_module.TICK_MAX + 5)]
    dmp = Dmp(HIDDEN)
    held, _ = shell(dmp, *many)
    held.down_until = RELEASE + timedelta(seconds=30)  # a lift met an outage: its backoff
    await held.tick()
    assert dmp.updates == []
    held, _ = shell(dmp, *many)
    await held.tick()
    assert len(dmp.updates) == lifts_module.TICK_MAX  # the rest at the next poll
    await held.tick()
    assert len(dmp.updates) == len(many)


async def test_a_done_lift_is_removed_after_the_horizon() -> None:
    old = lift(request_id="old", state=State.DONE, at=RELEASE - visibility.DONE_HORIZON)
    recent = lift(request_id="recent", state=State.DONE, at=RELEASE - timedelta(days=1))
    held, loop = shell(Dmp(), old, recent)
    await held.tick()
    assert loop.log == [("write", None)]  # a tombstone for the old one only
    assert set(held.lifts[0]) == {"recent"}
    held._restore(0, b"recent", None)  # a tombstone read back: forgotten too
    assert held.lifts[0] == {}


# -- second review: outages, decisions, readiness, the current version's codes, budgets ----


def later(held: VisibilityLifts, minutes: int = 60) -> None:
    """The clock moves past any backoff."""
    held.clock = lambda: RELEASE + timedelta(minutes=minutes)


async def test_a_broker_failure_writing_sending_is_an_outage_not_an_ending() -> None:
    dmp = Dmp(HIDDEN)
    held, loop = shell(dmp, due_lift(), loop=Recorder(fail=(1,)))  # SENDING not acknowledged
    await held.tick()
    [kept] = held.lifts[0].values()
    assert (kept.state, loop.statuses, dmp.updates) == (State.PENDING, [], [])
    assert held.down_until is not None  # no lift before the backoff
    later(held)
    await held.tick()
    assert loop.statuses == [("DELIVERED", None)]
    assert next(iter(held.lifts[0].values())).state is State.DONE


async def test_a_status_emitted_then_done_unacknowledged_is_reported_again_never_contradicted() -> (
    None
):
    dmp = Dmp(HIDDEN)
    held, loop = shell(dmp, due_lift(), loop=Recorder(fail=(2,)))  # DONE not acknowledged
    await held.tick()
    assert loop.statuses == [("DELIVERED", None)]  # and no REJECTED lift-error after it
    assert next(iter(held.lifts[0].values())).state is State.SENDING
    dmp.current_version = None  # whatever the DMP says now, the decision stands
    later(held)
    await held.tick()
    assert loop.statuses == [("DELIVERED", None), ("DELIVERED", None)]
    assert len(dmp.updates) == 1  # never sent again
    assert next(iter(held.lifts[0].values())).state is State.DONE
    assert held.decided == {}


async def test_lifts_follow_their_own_backoff_and_set_the_dmp_readiness() -> None:
    down = Flag(False, "DMP unavailable (busy): deliveries paused")  # as a filing left it
    dmp = Dmp(HIDDEN)
    held, _ = shell(dmp, due_lift(), answered=down)
    await held.tick()
    assert len(dmp.updates) == 1  # not held up by the filings' flag
    assert down.ok  # the lift's ITI-18/ITI-57 answered: the DMP is up


def masked(*codes: str) -> Found:
    return Found("urn:uuid:v2", "urn:uuid:v1", "2", "Approved", "1.2.3.4", codes)


async def test_the_update_keeps_the_current_versions_codes_but_invisible_patient() -> None:
    dmp = Dmp(masked("N", "INVISIBLE_PATIENT", "MASQUE_PS"))  # the patient masked it since
    held, _ = shell(dmp, due_lift())
    await held.tick()
    [update] = dmp.updates
    assert [c.code for c in update.entry.confidentiality] == ["N", "MASQUE_PS"]
    assert update.entry.confidentiality[1].scheme == "1.2.250.1.213.1.1.4.13"
    assert update.entry.unique_id == FILED.unique_id  # the rest as filed
    with pytest.raises(ValueError, match="outside JDV_J08"):
        visibility.lifted_codes(FILED.confidentiality, ("N", "SOMETHING_NEW"))
    held, _ = shell(Dmp(masked("N", "INVISIBLE_PATIENT", "SOMETHING_NEW")), due_lift())
    await held.tick()  # never dropped silently: the lift ends, the document stays hidden
    assert next(iter(held.lifts[0].values())).code == "lift-error"


async def test_the_sweep_is_bounded_like_the_lifts() -> None:
    old = [
        lift(request_id=f"old-{n}", state=State.DONE, at=RELEASE - visibility.DONE_HORIZON)
        for n in range(lifts_module.TICK_MAX + 5)
    ]
    held, loop = shell(Dmp(), *old)
    await held.tick()
    assert loop.log == [("write", None)] * lifts_module.TICK_MAX
    assert len(held.lifts[0]) == 5  # the rest at the next poll
    await held.tick()
    assert held.lifts[0] == {}


async def test_a_deletion_records_done_before_the_held_copy_goes() -> None:
    """A crash between the two: the replayed deletion is found done (never a withdrawal
    mailed) and the hold left behind is found done at its date (never mailed)."""
    order: list[tuple[str, str]] = []

    async def tombstone(topic: str, value: bytes | None, *, key: bytes, **_: Any) -> None:
        order.append(("tombstone" if value is None else "hold", key.decode()))

    async def write(partition: int, entry: Any) -> None:
        order.append(("ledger", f"{entry.request_id} {entry.state} {entry.code}"))

    loop = SimpleNamespace(producer=SimpleNamespace(send_and_wait=tombstone))
    stage = SimpleNamespace(clock=lambda: T0, prefix="t", codec=Codec())
    holds = PatientHolds("localhost:1", stage, loop, ledger=SimpleNamespace(write=write))  # type: ignore[arg-type]
    holds.holds = {0: {"held-1": Hold("held-1", DOC_ID, RELEASE, b"k", b"v")}}
    document = {"unique_id": DOC_ID, "parent_unique_id": None, "action": "DELETE"}
    deletion = {**request(), "request_id": "del-1", "destination": "MSSANTE", "document": document}
    message = SimpleNamespace(partition=0, key=b"k", value=b"v")
    kept = await holds.keep(deletion, message, "patient.mssante.fr", 1)
    assert kept is not None
    assert order == [
        ("ledger", "held-1 DONE HELD_COPY_CANCELLED"),
        ("ledger", "del-1 DONE HELD_COPY_CANCELLED"),
        ("tombstone", "held-1"),
    ]
    assert holds.holds[0] == {}
