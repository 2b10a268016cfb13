"""The store a process uses, from its settings (RELAIS_DOCUMENT_STORE)."""

from __future__ import annotations

from relais.document_store.stores import DocumentStore, FileStore
from relais.settings import Settings


def open_store(settings: Settings) -> DocumentStore:
    """A folder (default ``<RELAIS_DATA_DIR>/documents``) or an S3 bucket."""
    part = settings.store
    folder = part.folder(settings.process.data_dir)
    if folder is not None:
        return FileStore(folder)
    from relais.document_store.s3 import S3Store  # noqa: PLC0415 - boto3 only for S3

    bucket, _, prefix = part.location[len("s3://") :].partition("/")
    return S3Store(bucket, prefix, endpoint=part.endpoint, region=part.region)
