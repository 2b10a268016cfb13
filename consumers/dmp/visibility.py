"""Embargoed documents in the DMP: filed invisible to the patient, made visible on time (pure).

The release policy may make a document visible to the patient only some time after its
submission (``release.patient_visible_from``, e.g. 15 days for a CR-IMG): the DMP sink
files it with the confidentiality code ``INVISIBLE_PATIENT`` (cs 1.2.250.1.213.1.1.4.13,
../shared/STANDARDS.md §2, §4). Nothing in the DMP lifts it by itself: at the release
date Relais sends TD3.3b (patient visibility) — XDS ITI-57, a new version of the entry
without that code (:mod:`consumers.ihe.iti57`). One :class:`Lift` per embargoed DMP
request, written by the sink after the filing on the compacted topic
``deliveries.visibility.v1`` (same partition number as the request), read back after a
restart; its life::

    PENDING ──▶ SENDING ──▶ DONE   the DMP answered (DELIVERED or REJECTED)
       └──────────────────▶ DONE   nothing to lift (filed after the date), or not found

Each attempt first asks the DMP for the document's current (Approved) version (ITI-18
GetDocuments, LeafClass: every version comes back, with its status, lid, version and
confidentiality codes). The update is built on it (its lid, its version as
PreviousVersion); a current version without ``INVISIBLE_PATIENT`` means there is nothing
to send — in particular for a lift left SENDING by a crash between the send and the
answer: the update went through.

The DMP's answer is a ``DeliveryStatus`` of the same event whose request id ends in
:data:`SUFFIX`: the notify sink tells the patient only after it (consumers.notify.dmp_gate).
Never a lift for a document the producer hid (``INVISIBLE_PATIENT=Y``): that is the
producer's decision and the policy never makes it visible (``patient_visible_from`` None).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from consumers.ihe.iti18 import Found
from domain.xds.codes import CONFIDENTIALITY_CODES, Coded
from domain.xds.metadata import DocumentEntry
from relais.contracts import Record
from relais.delivery_status import delivery_status
from relais.envelope import Envelope, EnvelopeError

STAGE: Final = "dmp-visibility"
#: the request id of a TD3.3b status: ``<request id>|visibility`` (= the notify gate's)
SUFFIX: Final = "|visibility"
INVISIBLE_PATIENT: Final = "INVISIBLE_PATIENT"
LIFT_VERSION: Final = 1
#: the version of the sealed payload (patient id + entry): another one ends the lift
PAYLOAD_VERSION: Final = 2
#: a DONE lift is removed (a tombstone) this long after it was done
DONE_HORIZON: Final = timedelta(days=7)
_CODED: Final = (
    "class_code",
    "type_code",
    "format_code",
    "healthcare_facility_type",
    "practice_setting",
)


class VisibilityError(ValueError):
    """A visibility lift that cannot be read back: the message says what to fix."""


class State(enum.StrEnum):
    PENDING = "PENDING"  # waits for its release date
    SENDING = "SENDING"  # written (acknowledged) before the ITI-57 is sent
    DONE = "DONE"  # the DMP answered, or there was nothing to send


class Plan(enum.Enum):
    CONFIRM = "confirm"  # filed visible already (after the release date): nothing to send
    SEND = "send"  # the ITI-57 update
    RECONCILED = "reconciled"  # the current version is visible already (an update went through)
    GONE = "gone"  # the DMP holds no such document (deleted, or never filed)


@dataclass(frozen=True)
class Lift:
    """One embargoed document of the DMP and where its visibility update stands."""

    request_id: str
    event_id: str
    document_unique_id: str
    release_at: datetime  # when the patient may see it (the policy's patient_visible_from)
    submitted_at: datetime
    patient_key: str  # the request's Kafka key: statuses meet the notification (same key)
    sealed: Mapping[str, str]  # envelope (key id, nonce, ciphertext; base64): patient + entry
    invisible: bool  # filed with INVISIBLE_PATIENT (False: filed after the release date)
    at: datetime
    state: State = State.PENDING
    lid: str | None = None  # the document's lid in the DMP (found with ITI-18)
    attempt: int = 0
    outcome: str | None = None  # DELIVERED | REJECTED once DONE
    code: str | None = None

    @property
    def key(self) -> bytes:
        return self.request_id.encode()

    def to_bytes(self) -> bytes:
        body = dataclasses.asdict(self)
        body.update(v=LIFT_VERSION, state=self.state.value, sealed=dict(self.sealed))
        for name in ("release_at", "submitted_at", "at"):
            body[name] = int(getattr(self, name).timestamp() * 1000)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Lift:
        try:
            body = json.loads(data)
            if body.pop("v") != LIFT_VERSION:
                raise VisibilityError("a visibility lift of another version: upgrade Relais")
            for name in ("release_at", "submitted_at", "at"):
                body[name] = datetime.fromtimestamp(int(body[name]) / 1000, UTC)
            return cls(**{**body, "state": State(body["state"])})
        except VisibilityError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise VisibilityError(f"unreadable visibility lift ({type(exc).__name__})") from None


def release_date(request: Record) -> datetime | None:
    """The release date of an embargoed DMP request: the patient may see the document only
    after its submission. None when visible on submission, never, or hidden by the producer."""
    if (request.get("flags") or {}).get(INVISIBLE_PATIENT):
        return None
    release = request.get("release")
    visible_from = release["patient_visible_from"] if release else None
    if visible_from is None or visible_from <= request["submitted_at"]:
        return None
    return visible_from  # type: ignore[no-any-return]


def filed_invisible(entry: DocumentEntry) -> bool:
    return any(c.code == INVISIBLE_PATIENT for c in entry.confidentiality)


def lift_of(
    request: Record, entry: DocumentEntry, sealed: Mapping[str, str], *, key: str, now: datetime
) -> Lift | None:
    """The lift an embargoed request's filing leaves (None: not embargoed)."""
    if (release_at := release_date(request)) is None:
        return None
    return Lift(
        request_id=request["request_id"],
        event_id=request["event_id"],
        document_unique_id=request["document"]["unique_id"],
        release_at=release_at,
        submitted_at=request["submitted_at"],
        patient_key=key,
        sealed=sealed,
        invisible=filed_invisible(entry),
        at=now,
    )


def plan(lift: Lift, current: Found | None) -> Plan:
    """What to do with a due lift, given the DMP's current (Approved) version of its document."""
    if not lift.invisible:
        return Plan.CONFIRM
    if current is None:
        return Plan.GONE
    if INVISIBLE_PATIENT not in current.confidentiality:
        return Plan.RECONCILED
    return Plan.SEND


@dataclass(frozen=True)
class Decision:
    """How an attempt ends a lift: the status to report, then DONE. Once decided, it is the
    one reported, however often its acknowledgement must be tried again."""

    lift: Lift  # as it stands (SENDING once the update was sent)
    outcome: str  # DELIVERED | REJECTED
    code: str | None
    detail: str


_SETTLED: Final[dict[Plan, tuple[str, str | None, str]]] = {
    Plan.CONFIRM: (
        "DELIVERED",
        None,
        "filed after the release date: visible to the patient already",
    ),
    Plan.RECONCILED: (
        "DELIVERED",
        None,
        "the DMP's current version is visible to the patient already",
    ),
    Plan.GONE: (
        "REJECTED",
        "UnresolvedReferenceException",
        "the DMP holds no such document (deleted?): not made visible",
    ),
}


def settled(lift: Lift, step: Plan) -> Decision:
    """The decision of a plan that sends nothing (CONFIRM, RECONCILED, GONE)."""
    return Decision(lift, *_SETTLED[step])


def lifted_codes(filed: tuple[Coded, ...], current: tuple[str, ...]) -> tuple[Coded, ...]:
    """TD3.3b's confidentiality codes: the DMP's current version's (a ``MASQUE_PS`` added
    since the filing stays), without ``INVISIBLE_PATIENT``; each as the entry was filed with
    it, else as JDV_J08 publishes it. :class:`ValueError` for a code outside both: never
    dropped (that could unmask the document)."""
    known = {c.code: c for c in CONFIDENTIALITY_CODES.concepts} | {c.code: c for c in filed}
    if unknown := sorted(set(current) - set(known)):
        raise ValueError(f"confidentiality codes outside JDV_J08: {', '.join(unknown)}")
    return tuple(known[code] for code in current if code != INVISIBLE_PATIENT)


def due(lifts: Mapping[str, Lift], now: datetime) -> list[Lift]:
    """The lifts whose release date has come and that are not done, oldest date first."""
    ready = [x for x in lifts.values() if x.state is not State.DONE and x.release_at <= now]
    return sorted(ready, key=lambda x: x.release_at)


def expired(lifts: Mapping[str, Lift], now: datetime) -> list[Lift]:
    """The DONE lifts past :data:`DONE_HORIZON`: removed from the topic (tombstones)."""
    return [x for x in lifts.values() if x.state is State.DONE and x.at + DONE_HORIZON <= now]


def status_of(lift: Lift, *, outcome: str, code: str | None, detail: str, now: datetime) -> Record:
    """The ``DeliveryStatus`` of the visibility step (request id ``<request id>|visibility``)."""
    return delivery_status(
        event_id=lift.event_id,
        request_id=lift.request_id + SUFFIX,
        destination="DMP",
        document_unique_id=lift.document_unique_id,
        outcome=outcome,
        code=code,
        detail=detail,
        attempt=max(lift.attempt, 1),
        now=now,
        submitted_at=lift.submitted_at,
    )


def payload(patient_id: str, entry: DocumentEntry) -> bytes:
    """What is sealed in a lift: the patient's XDS id and the entry as filed."""
    body = {"v": PAYLOAD_VERSION, "patient_id": patient_id, "entry": dataclasses.asdict(entry)}
    return json.dumps(body).encode()


def opened(plain: bytes) -> tuple[str, DocumentEntry]:
    """(patient id, entry) back from :func:`payload`'s bytes; :class:`VisibilityError` when
    it was sealed by another release (another version, or fields this one does not know)."""
    try:
        return _opened(json.loads(plain))
    except VisibilityError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VisibilityError(f"the lift's payload is unreadable ({type(exc).__name__})") from None


def _opened(body: dict[str, Any]) -> tuple[str, DocumentEntry]:
    if body.get("v", 1) not in (1, PAYLOAD_VERSION):  # 1: the same fields, unversioned
        raise VisibilityError("a lift sealed by another release of Relais")
    fields: dict[str, Any] = dict(body["entry"])
    for name in _CODED:
        fields[name] = Coded(**fields[name])
    fields["confidentiality"] = tuple(Coded(**c) for c in fields["confidentiality"])
    for name in ("source_patient_info", "reference_ids"):
        fields[name] = tuple(fields[name])
    return str(body["patient_id"]), DocumentEntry(**fields)


def envelope_fields(envelope: Envelope) -> dict[str, str]:
    """A sealed payload as JSON-friendly text (base64)."""
    return {
        "key_id": envelope.key_id,
        "nonce": base64.b64encode(envelope.nonce).decode(),
        "ciphertext": base64.b64encode(envelope.ciphertext).decode(),
    }


def envelope_of(fields: Mapping[str, str]) -> Envelope:
    """:func:`envelope_fields` read back; :class:`VisibilityError` when it is not one."""
    try:
        return Envelope(
            key_id=fields["key_id"],
            nonce=base64.b64decode(fields["nonce"], validate=True),
            ciphertext=base64.b64decode(fields["ciphertext"], validate=True),
        )
    except (KeyError, ValueError, EnvelopeError) as exc:
        raise VisibilityError(f"the lift's sealed payload is unreadable ({exc})") from None
