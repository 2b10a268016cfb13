"""Why a patient's data key could not be used.

Every error here is also an :class:`~relais.envelope.EnvelopeError` (it stops an envelope or
a body from opening), so a stage or sink turns it into a dead letter like any other record
it cannot open; :class:`MasterKeyUnknownError` is also a
:class:`~relais.document_store.errors.StoreUnavailableError`, so the record is retried
instead (the process's keyring is older than the key store: restarted, it reads the new one).
:class:`PatientKeyMissingError` (the store answers, but has neither the key nor its
tombstone) is a dead letter, ``patient-key-missing``, replayed once the record is restored; a
key store that is not there at all (its folder absent, S3 failing) raises
:class:`~relais.document_store.errors.StoreUnavailableError` instead: retried.

Exception tree::

    EnvelopeError (relais.envelope)
    └── PatientKeyError              a patient's data key (DEK) cannot be used
        ├── ErasedKeyError           the DEK was destroyed (``relais patient erase``): what it
        │                            sealed can never be opened again; dead letter reason
        │                            ``patient-erased``
        ├── MasterKeyRetiredError    the DEK is wrapped under a master key that was retired
        │                            (``relais keys retire``): refused
        ├── MasterKeyUnknownError    the DEK is wrapped under a master key this process does
        │                            not hold; also StoreUnavailableError: retried
        ├── PatientKeyMissingError   the store answers, with no record and no tombstone for
        │                            the key id (lost, or another store: RELAIS_DOCUMENT_STORE,
        │                            RELAIS_DATA_DIR); dead letter ``patient-key-missing``,
        │                            replayable; never "patient-erased"
        └── WrappedKeyTamperedError  the key store's record does not authenticate or parse

A process without a vault (RELAIS_PATIENT_KEYS off) meeting a patient's key id raises
:class:`~relais.envelope.UnknownKeyError`, whose message says so.

Messages name key ids and the data key's store name (a pseudonym), never a patient.
"""

from __future__ import annotations

from relais.document_store.errors import StoreUnavailableError
from relais.envelope import EnvelopeError

__all__ = [
    "ErasedKeyError",
    "MasterKeyRetiredError",
    "MasterKeyUnknownError",
    "PatientKeyError",
    "PatientKeyMissingError",
    "WrappedKeyTamperedError",
]


class PatientKeyError(EnvelopeError):
    """A patient's data key cannot be used (see the module docstring for the tree)."""

    reason_code = "undecryptable-field"


class ErasedKeyError(PatientKeyError):
    """The patient's data key was destroyed by ``relais patient erase`` (its tombstone is in
    the key store: a record merely missing is :class:`PatientKeyMissingError`)."""

    reason_code = "patient-erased"

    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id

    def __str__(self) -> str:
        return (
            f"the patient data key {self.key_id!r} was destroyed (`relais patient erase`): "
            "what it sealed can never be opened again; nothing to fix, the record is kept "
            "only as a trace"
        )


class MasterKeyRetiredError(PatientKeyError):
    """The data key is wrapped under a retired master key."""

    def __init__(self, master_key_id: str, name: str) -> None:
        super().__init__(
            f"patient data key {name} is wrapped under master key {master_key_id!r}, which "
            "was retired (`relais keys retire`) and is refused: run `relais keys rewrap` "
            "before retiring a master key; a data key restored from a backup made before "
            "the rotation stays unreadable (that is what retiring is for)"
        )


class MasterKeyUnknownError(PatientKeyError, StoreUnavailableError):
    """The data key is wrapped under a master key this process's keyring lacks."""

    def __init__(self, master_key_id: str, name: str) -> None:
        super().__init__(
            f"patient data key {name} is wrapped under master key {master_key_id!r}, which "
            "this process's keyring does not hold: give every process the keyring file "
            "`relais keys rotate` wrote (RELAIS_KEYRING_FILE) and restart it"
        )


class WrappedKeyTamperedError(PatientKeyError):
    """The key store's record of a data key does not authenticate or parse."""

    def __init__(self, name: str, what: str) -> None:
        super().__init__(f"patient data key {name}: {what}")


class PatientKeyMissingError(PatientKeyError):
    """A key id whose record is not in this process's key store, which answers, and was
    never erased there (no tombstone): lost, or another store than the one that made it.
    Dead letter ``patient-key-missing``: restore the record, then ``relais dlq replay``."""

    reason_code = "patient-key-missing"

    def __init__(self, key_id: str, store: str) -> None:
        super().__init__(
            f"patient data key {key_id!r} is not in the key store {store} and was never "
            "erased there: the key record was lost, or this process reads another store "
            "than the process that made the key. Give every process the same "
            "RELAIS_DOCUMENT_STORE (the key store is its keys/ folder or prefix; by default "
            "it is <RELAIS_DATA_DIR>/documents/keys, so RELAIS_DATA_DIR too), or restore the "
            "key record from a backup, then `relais dlq replay --reason patient-key-missing`"
        )
