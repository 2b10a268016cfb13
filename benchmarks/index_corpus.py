"""Synthetic document journeys for the index benchmarks, written as the pipeline writes them.

Each document gets the records Relais's components produce for it, built with their own
builders: the producer's RECEIVED audit (sender, application, MSH-10, type; the patient's
pseudonym as the Kafka key), identity's IDENTITY_DECIDED, transcode's TRANSCODED, route's
ROUTED, and per destination the sink's ``DeliveryStatus`` and DELIVERED / DELIVERY_FAILED
audit, the ZAM (``BusinessAck``) and its ACKNOWLEDGED audit when the sender asks for one. A
few per cent end elsewhere: held by identity, or dead-lettered (a ``DeadLetter`` with its
original sealed, by transcode, or by the DMP sink on a refusal).

The mix (seeded, so every run builds the same documents): 50 senders, 10,000 patients,
2 % held, 1.5 % dead-lettered at transcode, 1.4 % refused by the DMP (so 2.9 % have a dead
letter); the others routed to the DMP (70 %), DMP and MSSanté (25 %) or MSSanté alone (5 %);
40 of the 50 senders ask for ZAMs. That is 8.3 records a document.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from consumers.dmp.business_ack import business_ack
from relais.audit import audit_event
from relais.audit_records import acknowledged, delivery, received
from relais.contracts import Record
from relais.deadletter import Failure, Origin, dead_letter, derived_id
from relais.delivery_status import delivery_status
from relais.keyring import Keyring
from relais.topics import AUDIT, BUSINESS_ACKS, DEADLETTER, DELIVERY_STATUS, TopicSpec

SENDERS: Final = 50
PATIENTS: Final = 10_000
START: Final = datetime(2026, 12, 1, tzinfo=UTC)
TYPES: Final = (("11502-2", "CR d'examens biologiques"), ("34133-9", "Synthèse"),
                ("11488-4", "Note de consultation"), ("18842-5", "Lettre de sortie"))  # fmt: skip
_COMPONENT = {"DMP": "dmp-sink", "MSSANTE": "mss-sender"}
_ZAM = {"DMP": "Z01", "MSSANTE": "Z02"}


@dataclass(frozen=True)
class Produced:
    """One record as a component produces it: its topic, type, body and key."""

    spec: TopicSpec
    record_type: str
    record: Record
    key: bytes


@dataclass(frozen=True)
class DocIds:
    """What a lookup can ask a document by."""

    event_id: str
    unique_id: str
    control_id: str
    sender: str
    patient_key: str
    received_at: datetime


def patient_key(n: int) -> str:
    """A pseudonymised key as the pipeline writes it: 64 hex characters."""
    return hashlib.sha256(f"bench-patient-{n}".encode()).hexdigest()


def sender(n: int) -> str:
    return f"LAB{n:02d}"


def _ms(at: datetime) -> datetime:
    """Millisecond precision, as Avro's timestamp-millis gives it back."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


class Corpus:
    """``documents`` journeys, ``spacing`` apart from ``start`` (or from now)."""

    def __init__(
        self,
        *,
        seed: int = 19,
        start: datetime = START,
        spacing: timedelta = timedelta(seconds=0.864),  # 100,000 a day
        keyring: Keyring | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.start = start
        self.spacing = spacing
        self.keyring = keyring or Keyring.generate("bench-key")
        self.patients = [patient_key(n) for n in range(PATIENTS)]

    def journeys(self, first: int, count: int) -> Iterator[tuple[DocIds, list[Produced]]]:
        for n in range(first, first + count):
            yield self.journey(n, self.start + n * self.spacing)

    def journey(self, n: int, at: datetime) -> tuple[DocIds, list[Produced]]:
        rng = self.rng
        facility = sender(rng.randrange(SENDERS))
        ids = DocIds(
            event_id=derived_id("bench-event", n),
            unique_id=f"1.2.250.1.999.1.{n}",
            control_id=f"{facility}{n:012d}",
            sender=facility,
            patient_key=self.patients[rng.randrange(PATIENTS)],
            received_at=_ms(at),
        )
        return ids, self._records(ids, rng)

    def _records(self, ids: DocIds, rng: random.Random) -> list[Produced]:
        key = ids.patient_key.encode()
        submitted = _submitted(ids, TYPES[rng.randrange(len(TYPES))])
        out = [Produced(AUDIT, "AuditEvent", received(submitted), key)]
        fate = rng.random()
        t = ids.received_at
        if fate < 0.02:
            out.append(
                _audit(ids, "identity", "IDENTITY_DECIDED", "held:INS-NOT-QUALIFIED", t, key)
            )
            return out
        out.append(_audit(ids, "identity", "IDENTITY_DECIDED", "qualified:QUALIFIED", t, key))
        if fate < 0.035:
            out.append(self._letter(ids, "transcode", "cda-invalid", t, key))
            return out
        out.append(_audit(ids, "transcode", "TRANSCODED", "CR-BIO", t, key))
        where = rng.random()
        targets = ["DMP"] if where < 0.7 else ["DMP", "MSSANTE"] if where < 0.95 else ["MSSANTE"]
        labels = ["DMP" if d == "DMP" else "MSSANTE:ps-10001234567" for d in targets]
        out.append(_audit(ids, "route", "ROUTED", ",".join(labels), t, key))
        zams = int(ids.sender.removeprefix("LAB")) < SENDERS * 0.8  # the sender's setting
        refused = fate < 0.05 and "DMP" in targets
        for destination in targets:
            outcome = "REJECTED" if refused and destination == "DMP" else "DELIVERED"
            out += self._delivered(submitted, ids, destination, outcome, zams, key)
        return out

    def _delivered(
        self, submitted: Record, ids: DocIds, destination: str, outcome: str, zams: bool, key: bytes
    ) -> list[Produced]:
        now = ids.received_at + timedelta(milliseconds=120 if destination == "DMP" else 160)
        request_id = derived_id(ids.event_id, destination)
        status = delivery_status(
            event_id=ids.event_id, request_id=request_id, destination=destination,
            document_unique_id=ids.unique_id, outcome=outcome,
            code="DMPKO_0051" if outcome == "REJECTED" else None, detail=None, attempt=1,
            now=now, submitted_at=ids.received_at,
        )  # fmt: skip
        component = _COMPONENT[destination]
        out = [Produced(DELIVERY_STATUS, "DeliveryStatus", status, key)]
        if outcome == "REJECTED":
            out.append(self._letter(ids, component, "dmp-refused", now, key))
        out.append(Produced(AUDIT, "AuditEvent", delivery(status, component=component), key))
        if zams:
            request = {**submitted, "request_id": request_id}
            ack = business_ack(request, kind=_ZAM[destination], accepted=outcome != "REJECTED",
                               now=now, code=status["code"])  # fmt: skip
            audit = acknowledged(ack, component=component, document_unique_id=ids.unique_id)
            out += [Produced(BUSINESS_ACKS, "BusinessAck", ack, key),
                    Produced(AUDIT, "AuditEvent", audit, key)]  # fmt: skip
        return out

    def _letter(self, ids: DocIds, stage: str, reason: str, at: datetime, key: bytes) -> Produced:
        original = (
            (
                f"MSH|^~\\&|SIL|{ids.sender}|RELAIS|RELAIS|20261201000000||ORU^R01^ORU_R01|"
                f"{ids.control_id}|P|2.5\r"
            ).encode()
            + b"OBX|1|ED|11502-2||"
            + b"A" * 2000
            + b"\r"
        )
        letter = dead_letter(
            self.keyring,
            stage=stage,
            failure=Failure(reason, f"{stage} gave up on this record ({reason}); see the runbook"),
            origin=Origin(f"bench.{stage}.in", 0, int(ids.event_id[:6], 16), ids.event_id),
            original=original,
            now=at + timedelta(milliseconds=40),
        )
        return Produced(DEADLETTER, "DeadLetter", letter, key)


def _submitted(ids: DocIds, doc_type: tuple[str, str]) -> Record:
    """The parts of a ``DocumentSubmitted`` the RECEIVED audit and a ZAM read."""
    return {
        "event_id": ids.event_id,
        "submitted_at": ids.received_at,
        "sector": "LAB",
        "source": {"facility": ids.sender, "application": "SIL",
                   "message_type": "ORU^R01", "message_control_id": ids.control_id},
        "document": {"unique_id": ids.unique_id, "type_code": doc_type[0],
                     "type_label": doc_type[1], "action": "CREATE", "size_bytes": 320_000},
        "flags": {"ACK_RECEPTION": True},
    }  # fmt: skip


_OFFSET_MS = {"IDENTITY_DECIDED": 15, "TRANSCODED": 45, "ROUTED": 60}


def _audit(
    ids: DocIds, component: str, action: str, outcome: str, t: datetime, key: bytes
) -> Produced:
    record = audit_event(
        event_id=ids.event_id,
        component=component,
        action=action,
        outcome=outcome,
        now=t + timedelta(milliseconds=_OFFSET_MS[action]),
        document_unique_id=ids.unique_id,
        detail=f"{action.lower()} {outcome}",
    )
    if action == "IDENTITY_DECIDED":  # relais.audit_records.identity_decided's id
        record["audit_id"] = derived_id(ids.event_id, "identity", outcome)
    return Produced(AUDIT, "AuditEvent", record, key)
