"""The scope of an identitovigilance block (pure): what it holds, and what it lets through.

A block is raised when a document contradicts the *reference identity* of its
patient: the traits last accepted (``PatientState.traits_digest``), or what INSi
or the INS itself says. It holds what contradicts that reference, nothing else:

* every document of a sender whose traits disagreed (its record is suspect until a
  human corrects it, and its documents keep their order behind the held ones);
* every document, from any sender, whose traits are the contradicting ones;
* every document whose traits differ from the reference (a new contradiction: its
  sender joins the block).

Documents of other senders whose traits agree with the reference go on as if there
were no block. Without a reference (the first document already contradicted INSi or
its INS), or for a block that names no sender (one local id tied to two INS, a block
written before blocks had a scope), nothing can be shown to agree: the block holds
every document of the patient.
"""

from __future__ import annotations

from dataclasses import replace

from streams.identity.state import PatientState


def block_holds(state: PatientState, facility: str, digest: str) -> bool:
    """True when the patient's block holds a document from ``facility`` with these traits."""
    if not state.blocked:
        return False
    if facility in state.blocked_senders or digest in state.blocked_digests:
        return True
    if state.traits_digest is None or not state.blocked_senders:
        return True  # no reference, or a whole-patient block: nothing agrees for sure
    return digest != state.traits_digest


def blocking(
    state: PatientState, reason_code: str, facility: str, digest: str, now_ms: int
) -> PatientState:
    """``state`` blocked for ``reason_code`` by a document of ``facility`` with these traits.

    A block already in place keeps its reason and its start; the sender and the traits
    join its scope.
    """
    return replace(
        state,
        blocked=state.blocked or reason_code,
        blocked_at_ms=state.blocked_at_ms if state.blocked else now_ms,
        blocked_senders=_with(state.blocked_senders, facility),
        blocked_digests=_with(state.blocked_digests, digest),
    )


def widened(state: PatientState, facility: str, digest: str) -> PatientState:
    """A held document that disagrees with the reference brings its sender into the block."""
    if not state.blocked or not state.blocked_senders or state.traits_digest in (None, digest):
        return state
    return replace(
        state,
        blocked_senders=_with(state.blocked_senders, facility),
        blocked_digests=_with(state.blocked_digests, digest),
    )


def unblocked(state: PatientState) -> PatientState:
    """The patient after a human lifted the block (after correcting the identity)."""
    return replace(state, blocked=None, blocked_senders=(), blocked_digests=(), blocked_at_ms=None)


def _with(values: tuple[str, ...], value: str) -> tuple[str, ...]:
    return values if value in values else (*values, value)
