"""Operator tooling: the `relais` command, dead letters, trace, load replay, demo, local stack.

The top layer: it imports every other package and nothing imports it.
"""
