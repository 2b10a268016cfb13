"""MLLP: framing, the gateway that takes messages in, the forwarder that sends ZAMs back.

Errors (FrameTooLarge, AckRouteError, the forwarder's Retry) are drawn with the other
intake errors in :mod:`producers`.
"""
