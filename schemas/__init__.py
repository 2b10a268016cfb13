"""Avro schemas of every record on the bus.

``types/`` holds the named types shared by records, ``records/`` one schema per
record type, ``released/`` the frozen, fully expanded schemas of every version
that has shipped: readers must keep decoding them (backward compatibility),
which ``tests/unit/test_schema_compat.py`` enforces.
"""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
