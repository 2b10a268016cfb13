"""The document store: each document body is written once; the topics carry a reference.

Relais moves events, not documents (the *claim check* pattern). At intake the gateway seals
a document's bytes (AES-256-GCM, :mod:`relais.document_store.bodies`) and writes them once to
a store; every record on the bus then carries a :class:`~relais.document_store.bodies.BodyRef`
(object key, SHA-256, size, key id) in the ``Document.content`` field, where an inline
envelope travelled before. Readers accept both (older records on the topics stay readable).
Stages that do not need the bytes (identity, route) never fetch them.

Object keys are pseudonyms, never ids: ``<document>/<body>.<key id>``, where ``<document>``
is a keyed pseudonym of the document's unique id (all its bodies share it: a deleted
document's bodies are erased together) and ``<body>`` one of the content's SHA-256 (the same
bytes of the same document are written once, whoever retries).

Stores (:func:`relais.document_store.open.open_store`): a folder, fsync'd before the write
returns (the default, under ``RELAIS_DATA_DIR``), or an S3-compatible bucket (boto3).

Exception tree::

    StoreError                     a body could not be written, read or erased
    ├── StoreUnavailableError      the store did not answer or refused the request; retried
    │                              (a sink retries the record later; a stage's worker crashes
    │                              and the record is handled again after its restart)
    ├── BodyMissingError           no object under the key: erased, expired, never written;
    │                              also a StageFailure: the record is dead-lettered
    └── BodyTamperedError          the object or the reference does not authenticate;
                                   also a StageFailure: dead-lettered
"""

from relais.document_store.errors import (
    BodyMissingError,
    BodyTamperedError,
    StoreError,
    StoreUnavailableError,
)
from relais.document_store.stores import DocumentStore, FileStore, MemoryStore

__all__ = [
    "BodyMissingError",
    "BodyTamperedError",
    "DocumentStore",
    "FileStore",
    "MemoryStore",
    "StoreError",
    "StoreUnavailableError",
]
