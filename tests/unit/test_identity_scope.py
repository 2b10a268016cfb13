"""Issue 15, "One typo blocks everyone, forever": the scope of a block (pure rule)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from streams.identity.scope import block_holds, blocking, unblocked, widened
from streams.identity.state import PatientState

REFERENCE, TYPO = "ref-digest", "typo-digest"
digests = st.text(alphabet="abcdef0123456789", min_size=1, max_size=8)
senders = st.sampled_from(["LABO-A", "LABO-B", "CHU-X", "CABINET-Y"])


def typo_block() -> PatientState:
    """LABO-A sent the patient with a typo after the reference identity was accepted."""
    state = PatientState(traits_digest=REFERENCE)
    return blocking(state, "same-ins-different-traits", "LABO-A", TYPO, 1_000)


def test_one_typo_blocks_its_sender_and_its_traits_not_everyone() -> None:
    state = typo_block()
    assert block_holds(state, "LABO-A", TYPO)
    assert block_holds(state, "LABO-A", REFERENCE)  # the typo's sender is held until corrected
    assert block_holds(state, "LABO-B", TYPO)  # the contradicting traits, from anyone
    assert not block_holds(state, "LABO-B", REFERENCE)  # another sender that agrees goes on
    assert block_holds(state, "LABO-B", "third-digest")  # a new contradiction is held


def test_one_typo_without_a_reference_blocks_the_whole_patient() -> None:
    state = blocking(PatientState(), "insi-disagrees", "LABO-A", TYPO, 1_000)
    assert block_holds(state, "LABO-B", "anything")


def test_one_typo_block_written_without_a_scope_holds_everyone() -> None:
    legacy = PatientState(traits_digest=REFERENCE, blocked="same-ins-different-traits")
    assert block_holds(legacy, "LABO-B", REFERENCE)


def test_one_typo_block_keeps_its_first_reason_and_start() -> None:
    state = blocking(typo_block(), "insi-disagrees", "LABO-C", "other", 5_000)
    assert state.blocked == "same-ins-different-traits"
    assert state.blocked_at_ms == 1_000
    assert state.blocked_senders == ("LABO-A", "LABO-C")


def test_one_typo_a_disagreeing_sender_joins_the_block_an_agreeing_one_does_not() -> None:
    assert widened(typo_block(), "LABO-B", REFERENCE) == typo_block()
    wider = widened(typo_block(), "LABO-C", "third-digest")
    assert wider.blocked_senders == ("LABO-A", "LABO-C")
    assert wider.blocked_digests == (TYPO, "third-digest")


def test_one_typo_state_round_trips_with_its_scope() -> None:
    state = replace(typo_block(), held=())
    assert PatientState.from_bytes(state.to_bytes()) == state


@given(senders, digests, senders, digests)
def test_one_typo_an_unblocked_patient_holds_nothing(
    blocker: str, bad: str, sender: str, digest: str
) -> None:
    state = blocking(PatientState(traits_digest=REFERENCE), "x", blocker, bad, 0)
    assert not block_holds(unblocked(state), sender, digest)


@given(senders, digests, senders, digests)
def test_one_typo_the_block_holds_exactly_what_contradicts_the_reference(
    blocker: str, bad: str, sender: str, digest: str
) -> None:
    state = blocking(PatientState(traits_digest=REFERENCE), "x", blocker, bad, 0)
    agrees = digest == REFERENCE and sender != blocker and digest != bad
    assert block_holds(state, sender, digest) is not agrees
