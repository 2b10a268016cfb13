"""The identity decision for one document (pure): qualify, hold, ask INSi, or block.

"No trust, no use": a document proceeds only when its patient's identity is
QUAL (INSi + identity document), its INS is well-formed and consistent with
its traits, nothing marks it doubtful or fictitious, and nothing contradicts
what Relais already knows about that patient. A contradiction is never
resolved by guessing: the patient is blocked and an identitovigilance alert
is raised for a human.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final

from domain.ins import INS_C_OLD, INS_OIDS, ins_key_valid
from domain.ins_traits import TraitsError, normalise_name
from streams.identity.scope import block_holds
from streams.identity.state import PatientState
from streams.identity.status import BLOCKING_ATTRIBUTES, Event, Status, transition

TRAIT_FIELDS: Final = ("birth_name", "given_names", "birth_date", "sex", "birthplace_code")


@dataclass(frozen=True)
class InsiOutcome:
    """What INSi said about this INS and these traits."""

    code: str  # "00" confirmed, "01" unknown, "02" several, "mismatch", "unavailable"


@dataclass(frozen=True)
class Verdict:
    kind: str  # "qualify" | "hold" | "ask-insi" | "block"
    status: Status
    reason_code: str | None = None
    reason: str | None = None
    attributes: tuple[str, ...] = ()

    @property
    def alert(self) -> bool:
        return self.kind == "block"


def _hold(status: Status, code: str, reason: str, attributes: tuple[str, ...] = ()) -> Verdict:
    return Verdict("hold", status, code, reason, attributes)


#: a keyed traits digest starts with it; an unkeyed one (earlier releases) is bare hex
KEYED_DIGEST: Final = "k1:"


def traits_digest(traits: Mapping[str, Any], key: bytes) -> str:
    """A keyed digest of the normalised traits (HMAC-SHA256 under ``key``, the keyring's
    pseudonym key): equal traits, equal digest. It is kept in the identity state (changelog,
    RocksDB) after the patient's erasure: unkeyed, names and birth dates could be tried
    against it; keyed, not without the keyring. Never logged."""
    message = b"relais/traits-digest\x00" + _normalised(traits)
    return KEYED_DIGEST + hmac.new(key, message, hashlib.sha256).hexdigest()


def legacy_traits_digest(traits: Mapping[str, Any]) -> str:
    """The unkeyed digest earlier releases stored (SHA-256): only to recognise it."""
    return hashlib.sha256(_normalised(traits)).hexdigest()


def upgraded(state: PatientState, traits: Mapping[str, Any], key: bytes) -> PatientState:
    """``state`` with the unkeyed digests of ``traits`` (earlier releases) replaced by the
    keyed one: a patient's state upgrades on their next document or identity event. An
    unkeyed digest of other traits stays, and differs from every keyed digest: as before,
    "other traits"."""
    digests = (state.traits_digest, *state.blocked_digests)
    if all(d is None or d.startswith(KEYED_DIGEST) for d in digests):
        return state
    legacy, keyed = legacy_traits_digest(traits), traits_digest(traits, key)
    return replace(
        state,
        traits_digest=keyed if state.traits_digest == legacy else state.traits_digest,
        blocked_digests=tuple(keyed if d == legacy else d for d in state.blocked_digests),
    )


def _normalised(traits: Mapping[str, Any]) -> bytes:
    norm = {}
    for name in TRAIT_FIELDS:
        value = str(traits.get(name) or "")
        if name in {"birth_name", "given_names"}:
            try:
                value = normalise_name(value)
            except TraitsError:
                value = value.upper()  # unusable characters: compared as given
        norm[name] = value
    return json.dumps(norm, sort_keys=True).encode()


InsChecker = Callable[[Mapping[str, Any]], list[str]]


def ins_problems(traits: Mapping[str, Any], consistency: InsChecker) -> Verdict | None:
    """A hold for an absent, malformed or inconsistent INS; None when it is usable."""
    ins, oid = traits.get("ins"), traits.get("ins_oid")
    if not ins:
        return _hold(Status.PROV, "no-ins", "no INS for this patient: fetch it from INSi first")
    if oid == INS_C_OLD:
        return _hold(
            Status.PROV, "ins-c-not-an-ins", "the old INS-C (1.2.250.1.213.1.4.2) is not an INS"
        )
    if oid not in INS_OIDS:
        return _hold(Status.PROV, "not-an-ins-oid", "the INS assigning authority is not an INS OID")
    if not ins_key_valid(str(ins)):
        return _hold(Status.PROV, "ins-key-invalid", "the INS matricule fails its key check")
    mismatches = consistency(traits)
    if mismatches:
        return Verdict(
            "block",
            Status.PROV,
            "ins-traits-inconsistent",
            "the INS does not agree with the traits: " + ", ".join(mismatches),
        )
    return None


def _known_problem(
    traits: Mapping[str, Any],
    state: PatientState,
    known: Status,
    consistency: InsChecker,
    scope: tuple[str, bool, str],
) -> Verdict | None:
    """A block that holds this document, an unusable INS, or traits that contradict the
    known ones. ``scope``: the sender, whether an operator vouched for the document (its
    release lifts the block and the comparison with the reference, not the INS checks),
    and the traits' digest.
    """
    facility, vouched, digest = scope
    if not vouched and block_holds(state, facility, digest):
        return _hold(
            known,
            "identity-blocked",
            f"patient blocked for identitovigilance ({state.blocked}): a human must resolve it",
        )
    problem = ins_problems(traits, consistency)
    if problem is not None:
        return problem
    if not vouched and state.traits_digest and state.traits_digest != digest:
        return Verdict(
            "block",
            known,
            "same-ins-different-traits",
            "this INS already came with other traits",
        )
    return None


def assess(
    traits: Mapping[str, Any],
    state: PatientState,
    known: Status,
    insi: InsiOutcome | None,
    consistency: InsChecker,
    *,
    digest: str,
    facility: str = "",
    vouched: bool = False,
) -> Verdict:
    """Decide for one document, given what is known of its patient.

    ``known`` is the sending structure's current status for this identity: what
    its latest message declared (PID-32), or its latest ADT event, or QUAL after
    INSi confirmed a validated identity. ``facility`` is the sender (a block's
    scope, :mod:`streams.identity.scope`); ``vouched``: an operator released it; ``digest``
    the traits' :func:`traits_digest`.
    """
    problem = _known_problem(traits, state, known, consistency, (facility, vouched, digest))
    if problem is not None:
        return problem
    status = known
    attributes = tuple(sorted({*state.attributes, *(traits.get("attributes") or ())}))
    for attribute, why in BLOCKING_ATTRIBUTES.items():
        if attribute in attributes:
            return _hold(status, f"identity-{attribute.lower()}", why, attributes)
    if status is Status.QUAL:
        return Verdict("qualify", status, attributes=attributes)
    if status is not Status.VALI:
        return _hold(
            status,
            "identity-not-qualified",
            f"identity status is {status}; only QUAL (INSi + identity document) may proceed",
        )
    return _after_insi(status, insi, attributes)


#: INSi answers that keep the document waiting: code -> (reason code, reason, extra attribute)
INSI_HOLDS: Final = MappingProxyType(
    {
        "02": ("insi-several-answers", "INSi finds several identities (homonyms)", "HOMD"),
        "01": ("insi-unknown-ins", "INSi does not know this INS", None),
        "rejected": ("insi-refused-request", "INSi refused the request (see its fault code)", None),
    }
)


def _after_insi(status: Status, insi: InsiOutcome | None, attributes: tuple[str, ...]) -> Verdict:
    """A validated identity becomes qualified when INSi confirms its INS and traits."""
    if insi is None:
        return Verdict("ask-insi", status)
    if insi.code == "00":
        return Verdict("qualify", transition(status, Event.INSI_CONFIRMED), attributes=attributes)
    if insi.code == "mismatch":
        return Verdict(
            "block",
            status,
            "insi-disagrees",
            "INSi knows this INS with other traits than the sender's",
        )
    if insi.code in INSI_HOLDS:
        code, reason, attribute = INSI_HOLDS[insi.code]
        extra = (attribute,) if attribute else ()
        return _hold(status, code, reason, (*attributes, *extra))
    return _hold(status, "insi-unavailable", "INSi cannot be reached; the document waits for it")
