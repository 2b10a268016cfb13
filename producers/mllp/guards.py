"""What keeps one MLLP sender from stalling or starving the others: pure rules, no I/O.

:class:`PeerSlots` caps the connections of one peer address; :class:`FrameClock`
decides how long the gateway waits for the next bytes (idle timeout, per-frame
deadline); :func:`oversized_nak` is the answer to a frame over the size limit.
The asyncio shell that applies them is :mod:`producers.mllp.gateway`.

Defaults (``GatewayConfig``; RELAIS_MLLP_* in ``relais mllp``), issue 15:

- ``max_connections_per_peer`` (default 20) open connections per peer IP address;
  one more is closed at once (``too-many-from-peer``), so one engine's leak or
  attack cannot take the ``max_connections`` (1,000) slots of everyone else.
- ``frame_timeout_s`` (default 60 s): a frame must be complete 60 s after its first
  byte, plus one second per 64 kB received (:data:`MIN_FRAME_RATE`), however
  steadily it trickles (``slow-frame``): a 16 MB message over a 1 Mbit/s link
  (about 130 s) goes through, a byte a second is closed after about a minute.
- ``idle_timeout_s`` (default 60 s, was 300 s): a connection with no byte of a
  message for that long is closed (``idle-timeout``); junk between frames does not
  keep it open. Engines that keep a connection open between messages reconnect
  when they next send: that costs a TCP (and TLS) handshake per idle minute,
  while 300 s let idle connections hold slots five times as long.
- The handler's CPU work runs outside the event loop (``producers.ingest.Ingest``
  with a process pool, see ``producers.mllp_intake``): the loop only frames,
  writes and waits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from producers.hl7.ack import build_ack
from producers.hl7.errors import Hl7ValidationError

#: bytes a second that earn an open frame more time (a slow link, not a trickle)
MIN_FRAME_RATE: Final = 64 * 1024
#: ERR-3 (HL7 table 0357) and ERR-5 (volet applicationErrorCode) of the oversized NAK.
OVERSIZED_HL7_ERROR: Final = "199"  # Other HL7 error: 0357 has no code for a size limit
OVERSIZED_APP_ERROR: Final = "906"  # Autre erreur


class PeerSlots:
    """Open connections per peer address (IP, any port), at most ``limit`` each."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the per-peer connection limit must be positive")
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, peer: str) -> bool:
        """Take a slot for ``peer``; False (nothing taken) when it already has ``limit``."""
        count = self._open.get(peer, 0)
        if count >= self.limit:
            return False
        self._open[peer] = count + 1
        return True

    def release(self, peer: str) -> None:
        count = self._open.get(peer, 0) - 1
        if count > 0:
            self._open[peer] = count
        else:
            self._open.pop(peer, None)

    def count(self, peer: str) -> int:
        return self._open.get(peer, 0)


@dataclass
class FrameClock:
    """The read deadlines of one connection, on a monotonic clock (seconds).

    - *Idle*: ``idle_timeout_s`` without a byte of a message. Bytes outside any
      frame (junk) do not count, so a peer trickling junk is closed like an idle one.
    - *Frame*: a frame must be complete ``frame_timeout_s`` after its first byte
      arrived, however steadily its bytes trickle. Time the gateway spends on
      messages already complete is not charged to the frame that follows them.
    """

    idle_timeout_s: float
    frame_timeout_s: float
    idle_deadline: float
    frame_deadline: float | None = None

    @classmethod
    def start(cls, now: float, idle_timeout_s: float, frame_timeout_s: float) -> FrameClock:
        return cls(idle_timeout_s, frame_timeout_s, now + idle_timeout_s)

    def next_wait(self, now: float) -> tuple[float, str]:
        """Seconds to wait for bytes (never negative), and the reason to close when they end."""
        if self.frame_deadline is not None and self.frame_deadline < self.idle_deadline:
            return max(0.0, self.frame_deadline - now), "slow-frame"
        return max(0.0, self.idle_deadline - now), "idle-timeout"

    def after_read(
        self,
        now: float,
        *,
        message_bytes: bool,
        completed: bool,
        in_frame: bool,
        received: int = 0,
    ) -> None:
        """Account for one read: ``now`` is after the frames it completed were answered.

        ``message_bytes``: the read held bytes of a frame (not only junk);
        ``completed``: it ended at least one frame; ``in_frame``: a frame is still open;
        ``received``: the bytes it read (each extends the open frame's deadline at
        :data:`MIN_FRAME_RATE`).
        """
        if message_bytes or completed:
            self.idle_deadline = now + self.idle_timeout_s
        if not in_frame:
            self.frame_deadline = None
        elif completed or self.frame_deadline is None:
            self.frame_deadline = now + self.frame_timeout_s
        else:  # a large frame on a slow link earns time as its bytes come (not a trickle)
            self.frame_deadline += received / MIN_FRAME_RATE


def oversized_text(limit: int) -> str:
    """ERR-8 of the oversized NAK: what happened, and what the sender's engineer can do."""
    return (
        f"the message is larger than the {limit}-byte limit of this Relais gateway "
        "(RELAIS_MLLP_MAX_FRAME_BYTES); it was not stored and the same message will be "
        "refused again: split its documents into several messages or send them smaller "
        "(compressed PDF, fewer images), or ask the Relais operator to raise the limit"
    )


def oversized_nak(raw_prefix: bytes, limit: int, now: datetime | None = None) -> bytes:
    """``AE`` (permanent) for a frame refused before it was complete, with an ERR.

    Only the start of the frame was kept, so the header is read best-effort from
    its first segment: the ACK still swaps the applications and echoes MSH-10
    when the MSH was readable, and has empty fields otherwise.
    """
    first_line = raw_prefix.replace(b"\n", b"\r").split(b"\r", 1)[0]
    error = Hl7ValidationError(
        oversized_text(limit),
        hl7_error_code=OVERSIZED_HL7_ERROR,
        app_error_code=OVERSIZED_APP_ERROR,
    )
    return build_ack(
        None,
        first_line,
        code="AE",
        error=error,
        control_id=uuid.uuid4().hex[:20],
        now=now or datetime.now(UTC),
    )
