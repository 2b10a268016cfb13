"""MLLP: framing, the gateway that takes messages in, the forwarder that sends ZAMs back."""
