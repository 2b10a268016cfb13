"""The document index: every document, its journey and its dead letters, searchable (derived
from the audit, status, dead-letter and acknowledgement topics; rebuildable)."""
