"""The pure rules of ``producers.mllp.guards``: per-peer slots, read deadlines, oversized NAK."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.mllp.guards import MIN_FRAME_RATE, FrameClock, PeerSlots, oversized_nak

NOW = dt.datetime(2024, 3, 1, 10, 15, 30, tzinfo=dt.UTC)


def test_peer_slots_count_per_address() -> None:
    slots = PeerSlots(2)
    assert slots.acquire("10.0.0.1")
    assert slots.acquire("10.0.0.1")
    assert not slots.acquire("10.0.0.1")  # refused: nothing taken
    assert slots.acquire("10.0.0.2")
    slots.release("10.0.0.1")
    assert slots.count("10.0.0.1") == 1
    assert slots.acquire("10.0.0.1")
    for _ in range(3):
        slots.release("10.0.0.1")
    assert slots.count("10.0.0.1") == 0
    with pytest.raises(ValueError, match="positive"):
        PeerSlots(0)


@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b", "c"])), max_size=60))
def test_peer_slots_never_exceed_the_limit(ops: list[tuple[bool, str]]) -> None:
    slots, held = PeerSlots(3), {"a": 0, "b": 0, "c": 0}
    for take, peer in ops:
        if take:
            held[peer] += slots.acquire(peer)
        elif held[peer]:
            slots.release(peer)
            held[peer] -= 1
        assert slots.count(peer) == held[peer] <= 3


def test_idle_connection_waits_the_idle_timeout() -> None:
    clock = FrameClock.start(100.0, idle_timeout_s=60, frame_timeout_s=10)
    assert clock.next_wait(100.0) == (60.0, "idle-timeout")
    assert clock.next_wait(170.0) == (0.0, "idle-timeout")


def test_a_frame_must_end_before_its_deadline_however_it_trickles() -> None:
    clock = FrameClock.start(0.0, idle_timeout_s=60, frame_timeout_s=10)
    clock.after_read(1.0, message_bytes=True, completed=False, in_frame=True)
    for now in (2.0, 5.0, 9.0):  # more bytes: the idle deadline moves, not the frame's
        clock.after_read(now, message_bytes=True, completed=False, in_frame=True)
    assert clock.next_wait(9.0) == (2.0, "slow-frame")
    clock.after_read(10.5, message_bytes=True, completed=True, in_frame=False)
    assert clock.frame_deadline is None
    assert clock.next_wait(10.5) == (60.0, "idle-timeout")


def test_a_frame_following_a_completed_one_starts_its_own_deadline() -> None:
    clock = FrameClock.start(0.0, idle_timeout_s=60, frame_timeout_s=10)
    clock.after_read(1.0, message_bytes=True, completed=False, in_frame=True)
    clock.after_read(30.0, message_bytes=True, completed=True, in_frame=True)  # handled until 30
    assert clock.next_wait(30.0) == (10.0, "slow-frame")


def test_junk_does_not_reset_the_idle_timeout() -> None:
    clock = FrameClock.start(0.0, idle_timeout_s=60, frame_timeout_s=10)
    clock.after_read(50.0, message_bytes=False, completed=False, in_frame=False)
    assert clock.next_wait(50.0) == (10.0, "idle-timeout")


def test_oversized_nak_is_a_permanent_refusal_naming_the_limit() -> None:
    prefix = b"MSH|^~\\&|SIL|LAB|RELAIS|RELAIS|20240301||ORU^R01^ORU_R01|BIG-7|P|2.5\rPID|"
    nak = oversized_nak(prefix, 1024, NOW).decode()
    msh, msa, err = nak.rstrip("\r").split("\r")
    assert msa == "MSA|AE|BIG-7"
    assert msh.split("|")[2:6] == ["RELAIS", "RELAIS", "SIL", "LAB"]
    fields = err.split("|")
    assert fields[3] == "199^Other HL7 error^HL70357"
    assert fields[4] == "E"
    assert fields[5] == "906^Autre erreur^applicationErrorCode"
    assert "1024-byte limit" in fields[8]
    assert "RELAIS_MLLP_MAX_FRAME_BYTES" in fields[8]


def test_oversized_nak_without_a_readable_header() -> None:
    nak = oversized_nak(b"\x00\x01 not a header", 10, NOW).decode()
    assert "\rMSA|AE|\r" in nak
    assert "\rERR||" in nak


def test_a_large_frame_on_a_slow_link_earns_time_a_trickle_does_not() -> None:
    slow_link = FrameClock.start(0.0, 60.0, 60.0)
    trickle = FrameClock.start(0.0, 60.0, 60.0)
    for second in range(1, 130):  # 16 MB at 1 Mbit/s: 125 kB a second for ~130 s
        slow_link.after_read(
            float(second), message_bytes=True, completed=False, in_frame=True, received=125_000
        )
        trickle.after_read(
            float(second), message_bytes=True, completed=False, in_frame=True, received=1
        )
    assert slow_link.next_wait(130.0)[0] > 0  # still open
    assert trickle.next_wait(130.0) == (0.0, "slow-frame")  # closed after about a minute
    assert trickle.frame_deadline is not None
    assert trickle.frame_deadline < 62.0 + 130 / MIN_FRAME_RATE
