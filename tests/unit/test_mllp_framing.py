"""MLLP framing: any split of the stream decodes to the same messages, memory stays bounded."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.mllp.framing import (
    END_BLOCK,
    START_BLOCK,
    FrameTooLarge,
    MllpDecoder,
    _boundary,
    frame,
)

# Payloads MLLP allows: anything but the block characters.
payloads = st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))
# Bytes a sender may leave between frames (newlines, NULs, noise), without a start block.
junk = st.binary(max_size=20).map(lambda b: b.replace(b"\x0b", b""))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def decode_all(decoder: MllpDecoder, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


@given(st.lists(payloads, max_size=8), st.lists(st.integers(min_value=0), max_size=30))
def test_any_split_decodes_to_the_same_payloads(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in messages)
    decoder = MllpDecoder(max_frame_bytes=1000)
    assert decode_all(decoder, split(stream, cuts)) == messages
    assert decoder.pending_bytes == 0
    assert not decoder.in_frame
    assert decoder.junk_bytes == 0


def without_end_block(data: bytes) -> bytes:
    data = data.replace(b"\x0b", b"")
    while b"\x1c\x0d" in data:
        data = data.replace(b"\x1c\x0d", b"\x1c")
    return data


# What the decoder accepts beyond frame(): lone 0x1C bytes, even last before the end block.
lenient = st.binary(max_size=100).map(without_end_block)


@given(st.lists(lenient, max_size=8), st.lists(st.integers(min_value=0), max_size=30))
def test_lone_fs_bytes_survive_any_split(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(START_BLOCK + m + END_BLOCK for m in messages)
    decoder = MllpDecoder(max_frame_bytes=1000)
    assert decode_all(decoder, split(stream, cuts)) == messages
    assert decoder.pending_bytes == 0


@given(
    st.lists(st.tuples(junk, payloads), max_size=6),
    junk,
    st.lists(st.integers(min_value=0), max_size=30),
)
def test_junk_between_frames_is_ignored_and_counted(
    framed: list[tuple[bytes, bytes]], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(noise + frame(m) for noise, m in framed) + tail
    decoder = MllpDecoder(max_frame_bytes=1000)
    assert decode_all(decoder, split(stream, cuts)) == [m for _, m in framed]
    assert decoder.junk_bytes == sum(len(noise) for noise, _ in framed) + len(tail)


@given(st.integers(min_value=1, max_value=4096), st.integers(min_value=1, max_value=2048))
def test_oversized_frame_raises_before_buffering_past_the_limit(limit: int, read: int) -> None:
    decoder = MllpDecoder(max_frame_bytes=limit)
    stream = START_BLOCK + b"M" * (limit * 3 + read)
    chunks = [stream[start : start + read] for start in range(0, len(stream), read)]
    fed = 0
    error: FrameTooLarge | None = None
    for chunk in chunks:
        try:
            decoder.feed(chunk)
        except FrameTooLarge as raised:
            error = raised
            break
        fed += len(chunk)
        assert decoder.pending_bytes <= limit
    assert error is not None
    assert fed <= limit + 1  # every read before the refusal fitted (start block included)
    assert limit < error.size_so_far <= limit + read
    assert str(limit) in str(error)
    assert decoder.pending_bytes == 0


def test_a_frame_of_exactly_the_limit_is_accepted() -> None:
    decoder = MllpDecoder(max_frame_bytes=10)
    assert decoder.feed(frame(b"0123456789")) == [b"0123456789"]


def test_oversized_error_keeps_earlier_frames_and_the_msh_prefix() -> None:
    decoder = MllpDecoder(max_frame_bytes=50)
    big = b"MSH|^~\\&|APP|FAC|RELAIS|RELAIS|||ORU^R01|C-9|P|2.5\r" + b"X" * 100
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(frame(b"first") + frame(b"second") + frame(big))
    assert info.value.frames == [b"first", b"second"]
    assert info.value.prefix.startswith(b"MSH|^~\\&|APP|FAC|")
    # The decoder resynchronises on the next start block.
    assert decoder.feed(b"tail of the big one" + END_BLOCK + frame(b"next")) == [b"next"]


def test_end_block_split_across_reads() -> None:
    decoder = MllpDecoder(max_frame_bytes=100)
    assert decoder.feed(START_BLOCK + b"abc\x1c") == []
    assert decoder.pending_bytes == 4
    assert decoder.feed(b"\x0d") == [b"abc"]


def test_lone_fs_inside_a_frame_is_payload() -> None:
    decoder = MllpDecoder(max_frame_bytes=100)
    assert decoder.feed(START_BLOCK + b"a\x1cb\x1c") == []
    assert decoder.feed(b"c" + END_BLOCK) == [b"a\x1cb\x1cc"]


def test_start_block_inside_a_frame_restarts_it() -> None:
    decoder = MllpDecoder(max_frame_bytes=100)
    assert decoder.feed(START_BLOCK + b"cut short" + frame(b"whole")) == [b"whole"]
    assert decoder.junk_bytes == 1 + len(b"cut short")


def test_truncated_frame_is_visible() -> None:
    decoder = MllpDecoder(max_frame_bytes=100)
    decoder.feed(START_BLOCK + b"MSH|")
    assert decoder.in_frame
    assert decoder.pending_bytes == 4


def test_frame_refuses_block_characters() -> None:
    with pytest.raises(ValueError, match="0x0B"):
        frame(b"a\x1c\x0db")
    assert frame(b"MSH|") == b"\x0bMSH|\x1c\x0d"


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        MllpDecoder(0)


_REGEX_BOUNDARY = re.compile(rb"\x0b|\x1c(?:\x0d|\Z)")  # the former scanner


@given(
    st.lists(st.sampled_from([b"\x0b", b"\x1c", b"\r", b"\n", b"a"]), max_size=20),
    st.integers(min_value=0, max_value=21),
)
def test_boundaries_are_found_as_the_regular_expression_found_them(
    pieces: list[bytes], pos: int
) -> None:
    data = b"".join(pieces)
    match = _REGEX_BOUNDARY.search(data, pos)
    expected = (match.start(), match.end() - match.start()) if match else (-1, 0)
    assert _boundary(data, pos) == expected
