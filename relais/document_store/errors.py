"""The document store's exceptions (the tree is drawn in :mod:`relais.document_store`)."""

from __future__ import annotations

from relais.deadletter import StageFailure


class StoreError(Exception):
    """A body could not be written, read or erased."""

    retry = False


class StoreUnavailableError(StoreError):
    """The store did not answer or refused the request: try the record again later."""

    retry = True


class BodyMissingError(StoreError, StageFailure):
    """No object under the key: the document was erased, expired, or never written."""

    reason_code = "body-missing"

    def __init__(self, key: str, where: str) -> None:
        StageFailure.__init__(
            self,
            f"document body {key} is not in the store ({where}): it was erased (document "
            "deleted), expired (RELAIS_DOCUMENT_RETENTION_DAYS) or the store is not the one "
            "the gateway wrote to (RELAIS_DOCUMENT_STORE)",
        )
        self.key = key


class BodyTamperedError(StoreError, StageFailure):
    """The stored object or the record's reference does not authenticate."""

    reason_code = "body-tampered"

    def __init__(self, key: str, what: str) -> None:
        StageFailure.__init__(self, f"document body {key}: {what}")
        self.key = key
