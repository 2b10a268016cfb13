"""The door: what Relais checks before it answers a producer (docs/door.md).

``admit`` (pure, run in a process pool by the gateway) and ``content`` (CDA and PDF
rules) refuse what can be refused before the ACK; ``known_documents`` remembers the
ids already accepted, so a reused id with other content is refused by name.
"""
