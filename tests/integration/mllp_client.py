"""A sender's side of MLLP, for the tests that talk to a real gateway process."""

from __future__ import annotations

import asyncio

from producers.mllp.framing import MllpDecoder, frame


async def exchange(port: int, message: bytes, *, timeout_s: float = 30.0) -> bytes:
    """Send one message on its own connection to 127.0.0.1:``port``; its ACK, unframed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame(message))
        await writer.drain()
        decoder, acks = MllpDecoder(1 << 20), list[bytes]()
        while not acks:
            acks = decoder.feed(await asyncio.wait_for(reader.read(65536), timeout_s))
    finally:
        writer.close()
    return acks[0]
