"""The identity stage's per-patient logic: hold, release, merge, ask INSi.

Everything here works on one patient key at a time and on injected
collaborators (a mapping for the patient table, an async INSi verifier), so
it runs the same inside the Faust agent and in unit tests with a dict and a
fake INSi. The decision itself is :func:`streams.identity.rules.assess`.

Order: a patient's documents leave in the order they came. Once one of them
is held, the next ones queue behind it, and a release re-checks the queue
from its head, stopping at the first document that must still wait.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from producers.submission import local_key
from relais.contracts import Codec, Record
from relais.deadletter import derived_id
from relais.envelope import Envelope, open_envelope
from relais.keyring import Keyring, warm_patient_key
from relais.patient_traits import open_traits
from relais.topics import IDENTITY_ALERTS, IDENTITY_EVENTS, IDENTITY_PENDING, QUALIFIED, SUBMITTED
from streams.identity.consent import absorbed_consent, consented, moved, stamped
from streams.identity.handover import forwarded, hand_over, resealed
from streams.identity.rules import (
    InsChecker,
    InsiOutcome,
    Verdict,
    assess,
    traits_digest,
    upgraded,
)
from streams.identity.scope import blocking, widened
from streams.identity.state import Held, PatientState
from streams.identity.status import Event, parse_status, transition, with_declared
from streams.stage import Output

InsiVerifier = Callable[[Mapping[str, Any]], Awaitable[InsiOutcome]]


@dataclass(frozen=True)
class Observed:
    """What the shell reports as metrics after a step."""

    verdicts: tuple[Verdict, ...] = ()
    released_after_s: tuple[float, ...] = ()


class IdentityProcessor:
    def __init__(
        self,
        table: MutableMapping[str, bytes],
        *,
        keyring: Keyring,
        verify: InsiVerifier,
        consistency: InsChecker,
    ) -> None:
        self.table, self.keyring = table, keyring
        self.verify, self.consistency = verify, consistency
        self.codec = Codec()
        self.observed = Observed()
        self._pending: dict[str, bytes] = {}

    # -- state -----------------------------------------------------------------------------
    def state(self, key: str) -> PatientState:
        pending = self._pending.get(key)
        return PatientState.from_bytes(pending if pending is not None else self.table.get(key))

    def save(self, key: str, state: PatientState) -> None:
        """Stage a state change; :meth:`commit` writes it once the outputs are on the bus."""
        self._pending[key] = state.to_bytes()

    def commit(self) -> None:
        """Write the staged states to the table (after the step's outputs were acknowledged:
        a crash in between replays the step instead of forgetting released documents)."""
        for key, value in self._pending.items():
            self.table[key] = value
        self._pending.clear()

    def discard(self) -> None:
        self._pending.clear()

    def _note(self, verdict: Verdict, released_after_s: float | None = None) -> None:
        extra = () if released_after_s is None else (released_after_s,)
        self.observed = Observed(
            (*self.observed.verdicts, verdict), (*self.observed.released_after_s, *extra)
        )

    # -- documents ------------------------------------------------------------------------
    async def on_document(self, record: Record, raw: bytes, now: datetime) -> list[Output]:
        key = record["patient"]["patient_key"]
        state = self.state(key)
        if state.merged_into and state.redirect:
            # re-sealed under the survivor's existing key: read it off the event loop first
            await warm_patient_key(self.keyring, state.merged_into, create=False)
            return [self._rekey(record, state, now)]
        if any(h.event_id == record["event_id"] for h in state.held):
            return []  # a replay (at-least-once) of a document already held
        state, noted = moved(state, record, now)  # re-keyed: the absorbed patient's word
        declared = record["patient"].get("reliability")
        if declared:  # the structure's latest word on its identity record
            state = state.with_status(record["source"]["facility"], parse_status(declared))
        facility = record["source"]["facility"]
        if any(h.facility == facility for h in state.held):
            verdict = Verdict(
                "hold",
                state.status_for(facility),
                "behind-held-documents",
                "an earlier document of this patient from this sender is held; order is kept",
            )
            self._note(verdict)
            self.save(key, state.holding(_held(record, raw, verdict, now)))
            return [*noted, self._held_output(record, verdict, now)]
        state, outputs = await self._decide(key, state, record, raw, now)
        self.save(key, state)
        return noted + outputs

    async def _decide(
        self,
        key: str,
        state: PatientState,
        record: Record,
        raw: bytes,
        now: datetime,
        *,
        vouched: bool = False,
    ) -> tuple[PatientState, list[Output]]:
        """``vouched``: an operator released this document (:mod:`streams.identity.operations`)."""
        traits = open_traits(record, self.keyring)
        state = upgraded(state, traits, self.keyring.pseudonym_key)
        facility = record["source"]["facility"]
        digest = traits_digest(traits, self.keyring.pseudonym_key)
        verdict = await self._verdict(traits, state, (facility, digest), vouched=vouched)
        self._note(verdict)
        if verdict.kind == "qualify":
            state = replace(
                state.with_status(facility, verdict.status),
                traits_digest=state.traits_digest if vouched else digest,
                attributes=verdict.attributes,
            )
            return state, [self._qualified_output(stamped(record, state), verdict, now)]
        outputs = [self._held_output(record, verdict, now)]
        if verdict.alert:
            state = blocking(state, str(verdict.reason_code), facility, digest, _ms(now))
            outputs.append(self._alert_output(record, verdict, now))
        elif verdict.reason_code == "identity-blocked":
            state = widened(state, facility, digest)
        if verdict.attributes:
            state = replace(state, attributes=verdict.attributes)
        return state.holding(_held(record, raw, verdict, now)), outputs

    async def _verdict(
        self, traits: Record, state: PatientState, scope: tuple[str, str], *, vouched: bool
    ) -> Verdict:
        """The rules' verdict (:func:`assess`), asking INSi when they say to; ``scope``: the
        sender and the traits' digest."""
        facility, digest = scope
        known = state.status_for(facility)

        def decided(insi: InsiOutcome | None) -> Verdict:
            return assess(
                traits,
                state,
                known,
                insi,
                self.consistency,
                digest=digest,
                facility=facility,
                vouched=vouched,
            )

        verdict = decided(None)
        return decided(await self.verify(traits)) if verdict.kind == "ask-insi" else verdict

    async def release(self, key: str, state: PatientState, now: datetime) -> list[Output]:
        """Re-check the held documents in arrival order; release what may go.

        Order is kept per sending structure: once one of a structure's documents
        must still wait, its later ones wait too; other structures' go on.
        """
        outputs: list[Output] = []
        kept: list[Held] = []
        queue, state = list(state.held), replace(state, held=())
        for held in queue:
            if any(k.facility == held.facility for k in kept):
                kept.append(held)
                continue
            _, record = self.codec.decode(held.value, expected="DocumentSubmitted")
            decided, produced = await self._decide(key, state, record, held.value, now)
            if decided.held:  # still waiting, with its new reason (a new block is alerted)
                kept.extend(decided.held)
                state = replace(decided, held=())
                outputs += [o for o in produced if o.topic == IDENTITY_ALERTS]
                continue
            state = decided
            released = decided.status_for(held.facility)
            self._note(Verdict("release", released), _seconds(held.held_at_ms, now))
            outputs += produced
        self.save(key, replace(state, held=tuple(kept)))
        return outputs

    # -- identity events ------------------------------------------------------------------
    async def on_identity(self, record: Record, now: datetime) -> list[Output]:
        kind = record["kind"]
        if kind == "MERGE":
            return self._merge(record, now)
        if kind == "REDIRECT":
            return self._redirected(record, now)
        key = record.get("target_key") or record["patient"]["patient_key"]
        state = self.state(key)
        if kind != "UPDATE":  # RETRY, maybe carrying the consent of an absorbed patient
            state, outputs = moved(state, record, now)
        elif state.merged_into and state.redirect:  # merged away: its word is the survivor's
            state = self._updated(state, record)
            outputs = forwarded(self.keyring, self.codec, record, state)
        else:
            state, outputs = consented(self._updated(state, record), record, now)
            traits = open_traits(record, self.keyring)
            if traits.get("ins"):  # the IPPs it names belong to this INS from now on
                ids = [(str(i), str(a)) for i, a in traits.get("local_ids") or ()]
                outputs += self._redirects(record, ids)
        return outputs + await self.release(key, state, now)

    def _updated(self, state: PatientState, record: Record) -> PatientState:
        traits = open_traits(record, self.keyring)
        state = upgraded(state, traits, self.keyring.pseudonym_key)
        digest = traits_digest(traits, self.keyring.pseudonym_key)
        facility = record["source"]["facility"]
        if state.traits_digest and state.traits_digest != digest:
            # What was checked were the old traits: every structure's status drops.
            state = replace(
                state,
                statuses=tuple((f, transition(s, Event.TRAITS_CHANGED)) for f, s in state.statuses),
            )
        status = with_declared(state.status_for(facility), record["patient"].get("reliability"))
        return replace(state.with_status(facility, status), traits_digest=digest)

    def _merge(self, record: Record, now: datetime) -> list[Output]:
        """A40: every absorbed identifier is redirected to the surviving patient."""
        merged = record.get("merged")
        if not merged:
            return []
        plain = open_envelope(
            self.keyring,
            Envelope.from_record(merged),
            event_id=record["event_id"],
            purpose="merged",
        )
        return self._redirects(record, [(str(i), str(a)) for i, a in json.loads(plain)])

    def _redirects(self, record: Record, local_ids: list[tuple[str, str]]) -> list[Output]:
        """REDIRECT events telling each local-id key which INS patient it now belongs to."""
        facility, survivor = record["source"]["facility"], record["patient"]["patient_key"]
        outputs = []
        for local_id, authority in local_ids:
            absorbed = local_key(self.keyring, facility, authority, local_id)
            if absorbed == survivor:
                continue  # the same record: nothing to move
            event_id = derived_id(record["event_id"], "redirect", absorbed)
            redirect = {
                **record,
                "event_id": event_id,
                "kind": "REDIRECT",
                "merged": None,
                "target_key": absorbed,
                "patient": self._reseal(record["patient"], record["event_id"], event_id),
            }
            outputs.append(Output(IDENTITY_EVENTS, "IdentityUpdate", redirect, absorbed.encode()))
        return outputs

    def _redirected(self, record: Record, now: datetime) -> list[Output]:
        """On the absorbed patient's key: re-key what it holds, and what comes later."""
        key = record["target_key"]
        state = self.state(key)
        survivor = record["patient"]["patient_key"]
        if state.merged_into and state.merged_into != survivor:
            # One local id, two INS: never guess which one is right.
            self.save(key, replace(state, blocked="local-id-two-ins"))
            verdict = Verdict(
                "block",
                state.status_for(record["source"]["facility"]),
                "local-id-two-ins",
                "this local id was tied to another INS before",
            )
            self._note(verdict)
            return [self._identity_alert(record, key, verdict, now)]
        redirect = self.codec.encode("IdentityUpdate", record)
        state = replace(state, merged_into=record["patient"]["patient_key"], redirect=redirect)
        outputs = hand_over(self.keyring, record, state)  # its word, once
        for held in state.held:
            _, document = self.codec.decode(held.value, expected="DocumentSubmitted")
            outputs.append(self._rekey(document, state, now))
        self.save(key, replace(state, held=(), consent_handed=True))
        return outputs

    def _rekey(self, document: Record, state: PatientState, now: datetime) -> Output:
        assert state.redirect is not None
        _, redirect = self.codec.decode(state.redirect, expected="IdentityUpdate")
        patient = self._reseal(redirect["patient"], redirect["event_id"], document["event_id"])
        # The document keeps its own structure's declared status: the survivor's identity
        # replaces the traits, not what the document's sender checked.
        # ... and the absorbed patient's word until it was handed over (it may arrive before
        # hand_over's RETRY; once handed, the survivor's word is the patient's)
        consent = None if state.consent_handed else absorbed_consent(state)
        reliability = document["patient"]["reliability"]
        to = {**patient, "reliability": reliability, "dmp_consent": consent}
        return Output(SUBMITTED, "DocumentSubmitted", {**document, "patient": to}, _key(to))

    def _reseal(self, patient: Record, from_event: str, to_event: str) -> Record:
        return resealed(self.keyring, patient, from_event, to_event)

    # -- outputs ----------------------------------------------------------------------------
    def _qualified_output(self, record: Record, verdict: Verdict, now: datetime) -> Output:
        qualified = {
            **_carried(record),
            "qualified_at": now,
            "identity_status": verdict.status.value,
            "identity_attributes": list(verdict.attributes),
        }
        return Output(QUALIFIED, "IdentityQualified", qualified, _key(record))

    def _held_output(self, record: Record, verdict: Verdict, now: datetime) -> Output:
        held = {
            **_carried(record),
            "held_at": now,
            "identity_status": verdict.status.value,
            "reason_code": verdict.reason_code or "held",
            "reason": verdict.reason or "held",
        }
        return Output(IDENTITY_PENDING, "IdentityHeld", held, _key(record))

    def _identity_alert(
        self,
        record: Record,
        key: str,
        verdict: Verdict,
        now: datetime,
        document_unique_id: str | None = None,
    ) -> Output:
        alert = {
            "alert_id": derived_id(record["event_id"], "identity-alert", verdict.reason_code),
            "event_id": record["event_id"],
            "at": now,
            "patient_key": key,
            "reason_code": verdict.reason_code or "conflict",
            "reason": verdict.reason or "identity conflict",
            "document_unique_id": document_unique_id,
            "source_facility": record["source"]["facility"],
        }
        return Output(IDENTITY_ALERTS, "IdentityAlert", alert, key.encode())

    def _alert_output(self, record: Record, verdict: Verdict, now: datetime) -> Output:
        key, unique_id = record["patient"]["patient_key"], record["document"]["unique_id"]
        return self._identity_alert(record, key, verdict, now, unique_id)


def _carried(record: Record) -> Record:
    fields = ("event_id", "submitted_at", "sector", "source", "patient", "document", "hints")
    return {f: record[f] for f in fields}


def _key(record: Record) -> bytes:
    patient = record.get("patient", record)  # a record, or its patient
    return str(patient["patient_key"]).encode()


def _held(record: Record, raw: bytes, verdict: Verdict, now: datetime) -> Held:
    return Held(
        raw,
        record["event_id"],
        verdict.reason_code or "held",
        _ms(now),
        record["source"]["facility"],
    )


def _ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


def _seconds(held_at_ms: int, now: datetime) -> float:
    return max(0.0, now.timestamp() - held_at_ms / 1000)
