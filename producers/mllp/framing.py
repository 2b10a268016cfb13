"""MLLP framing (HL7 Minimal Lower Layer Protocol, Release 2): pure, no I/O.

A frame is ``0x0B`` + message + ``0x1C 0x0D``. TCP delivers a byte stream, not
frames: one read may hold several frames (pipelining senders), part of one
(large messages, slow senders), or bytes that belong to no frame (a sender's
keep-alive newline, a port scanner). :class:`MllpDecoder` turns reads into
complete payloads and keeps memory bounded: it refuses a frame as soon as it
grows past the configured limit instead of buffering whatever arrives.

Choices where MLLP leaves room:

- The end block is strictly ``0x1C 0x0D``. A ``0x1C`` that is the last byte of a
  read is held until the next byte shows whether the frame ends there; a
  ``0x1C`` followed by anything else is kept as payload.
- A ``0x0B`` inside a frame starts a new frame: the partial one before it is
  discarded (counted as junk). A sender that gave up mid-frame and started
  again gets no ACK for the cut message, so it resends it; gluing the two
  together would only produce a message that fails to parse.
"""

from __future__ import annotations

from typing import Final

START_BLOCK: Final = b"\x0b"
END_BLOCK: Final = b"\x1c\x0d"

_START: Final = 0x0B
_END: Final = 0x1C
_CR: Final = 0x0D
#: How much of an oversized frame is kept, enough to read its MSH for the NAK.
PREFIX_BYTES: Final = 8192


def frame(payload: bytes) -> bytes:
    """``payload`` wrapped in an MLLP frame.

    MLLP forbids the block characters inside the content; a payload holding
    them would be cut short by the receiver, so it is refused here.
    """
    if b"\x0b" in payload or b"\x1c" in payload:
        raise ValueError("an MLLP payload must not contain 0x0B or 0x1C")
    return START_BLOCK + payload + END_BLOCK


class FrameTooLarge(Exception):
    """The frame being received grew past ``max_frame_bytes``.

    ``size_so_far`` is the payload size that crossed the limit, ``prefix`` the
    first bytes of that frame (the MSH, for the NAK) and ``frames`` the payloads
    completed earlier in the same :meth:`MllpDecoder.feed` call, which the caller
    must still process, in order, before rejecting the oversized one.
    """

    def __init__(self, limit: int, size_so_far: int, prefix: bytes, frames: list[bytes]) -> None:
        super().__init__(
            f"MLLP frame exceeds the limit of {limit} bytes ({size_so_far} bytes so far)"
        )
        self.limit = limit
        self.size_so_far = size_so_far
        self.prefix = prefix
        self.frames = frames


class MllpDecoder:
    """Incremental MLLP decoder for one connection.

    Feed it each read; it returns the payloads completed by that read. Scanning
    only looks at new bytes, so a 16 MB message arriving in 64 KB reads costs
    linear time. After :class:`FrameTooLarge` the oversized frame is dropped and
    the decoder waits for the next start block, but the rest of the read that
    raised is lost: callers are expected to answer and close the connection.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be positive")
        self.max_frame_bytes = max_frame_bytes
        self.junk_bytes = 0
        self._buffer = bytearray()
        self._in_frame = False
        self._end_pending = False  # a 0x1C ended the last read inside a frame

    @property
    def pending_bytes(self) -> int:
        """Payload bytes held for the frame not yet complete."""
        return len(self._buffer) + int(self._end_pending)

    @property
    def in_frame(self) -> bool:
        """True when a frame has started and not ended (a truncated frame on EOF)."""
        return self._in_frame

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads completed by ``data``, in order; raises :class:`FrameTooLarge`."""
        frames: list[bytes] = []
        pos, size = 0, len(data)
        while pos < size:
            if not self._in_frame:
                pos = self._skip_to_start(data, pos)
            elif self._end_pending:
                pos = self._resolve_end(data, pos, frames)
            else:
                pos = self._scan_frame(data, pos, frames)
        return frames

    def _skip_to_start(self, data: bytes, pos: int) -> int:
        start = data.find(START_BLOCK, pos)
        if start < 0:
            self.junk_bytes += len(data) - pos
            return len(data)
        self.junk_bytes += start - pos
        self._in_frame = True
        return start + 1

    def _resolve_end(self, data: bytes, pos: int, frames: list[bytes]) -> int:
        """The byte after a held 0x1C: CR ends the frame, anything else makes it payload."""
        self._end_pending = False
        if data[pos] == _CR:
            self._complete(frames)
            return pos + 1
        self._append(b"\x1c", frames)
        return pos

    def _scan_frame(self, data: bytes, pos: int, frames: list[bytes]) -> int:
        found, length = _boundary(data, pos)
        if found < 0:
            self._append(data[pos:], frames)
            return len(data)
        self._append(data[pos:found], frames)
        if data[found] == _START:
            self.junk_bytes += 1 + len(self._buffer)  # the cut frame, start block included
            self._buffer.clear()
        elif length == 2:
            self._complete(frames)
        else:
            self._end_pending = True  # 0x1C is the last byte of this read
        return found + length

    def _append(self, chunk: bytes, frames: list[bytes]) -> None:
        """Add to the current frame, refusing it before it outgrows the limit."""
        total = len(self._buffer) + len(chunk)
        if total > self.max_frame_bytes:
            kept = max(0, PREFIX_BYTES - len(self._buffer))
            prefix = bytes(self._buffer[:PREFIX_BYTES]) + chunk[:kept]
            self.junk_bytes += total
            self._buffer = bytearray()
            self._in_frame = False
            raise FrameTooLarge(self.max_frame_bytes, total, prefix, frames)
        self._buffer += chunk

    def _complete(self, frames: list[bytes]) -> None:
        frames.append(bytes(self._buffer))
        self._buffer = bytearray()
        self._in_frame = False


def _boundary(data: bytes, pos: int) -> tuple[int, int]:
    """The first start block, end block or 0x1C ending the read from ``pos``: (index, length).

    (-1, 0) when there is none; a 0x1C followed by anything but CR is payload. Two
    ``bytes.find`` (memchr speed), where a regular expression costs ~30 ms per 5 MB.
    """
    found = [(at, length) for at, length in _candidates(data, pos) if at >= 0]
    return min(found) if found else (-1, 0)


def _candidates(data: bytes, pos: int) -> tuple[tuple[int, int], ...]:
    last = len(data) - 1
    pending = last if last >= pos and data[last] == _END else -1
    return ((data.find(START_BLOCK, pos), 1), (data.find(END_BLOCK, pos), 2), (pending, 1))
