"""How the DMP sandbox says no, and the error codes it says it with.

A request it cannot read as the transaction (transport, SOAP, WS-Addressing, WS-Security)
is :class:`Faulted`: a SOAP 1.2 Fault (W3C SOAP 1.2 Part 1 §5.4) with a Sender code and a
subcode of the WS-Addressing (W3C WS-Addressing 1.0 SOAP Binding §6.4) or WS-Security
(OASIS WSS 1.1 §12) fault set. A request it reads but does not accept is :class:`Rejected`:
an ebRS ``RegistryResponse`` Failure whose ``RegistryError`` carries an XDS error code
(IHE ITI TF-3 §4.2.4, Table 4.2.4.1-2). Messages name what is wrong, never patient data.
"""

from __future__ import annotations

from typing import Final

from sandboxes import Refusal

METADATA_ERROR: Final = "XDSRegistryMetadataError"
REPOSITORY_METADATA_ERROR: Final = "XDSRepositoryMetadataError"
PATIENT_MISMATCH: Final = "XDSPatientIdDoesNotMatch"
UNKNOWN_PATIENT: Final = "XDSUnknownPatientId"
DUPLICATE_UNIQUE_ID: Final = "XDSDuplicateUniqueIdInRegistry"
NON_IDENTICAL_HASH: Final = "XDSNonIdenticalHash"
MISSING_DOCUMENT: Final = "XDSMissingDocument"
MISSING_METADATA: Final = "XDSMissingDocumentMetadata"
UNRESOLVED: Final = "UnresolvedReferenceException"
STORED_QUERY_PARAM: Final = "XDSStoredQueryParamNumber"
UNKNOWN_STORED_QUERY: Final = "XDSUnknownStoredQuery"
#: the submission set's signature (IHE DSG) does not verify
SIGNATURE_ERROR: Final = "XDSRegistryMetadataError"


class Rejected(Refusal):
    """The registry refuses the submission: RegistryResponse Failure with an XDS errorCode."""

    default_status = 200


class Faulted(Refusal):
    """The request is refused before its metadata is read: a SOAP 1.2 Fault (HTTP 400).

    ``code`` is the subcode (``wsa:ActionNotSupported``...); ``value`` the Fault code
    (``Sender``, ``VersionMismatch``, ``MustUnderstand``).
    """

    def __init__(self, code: str, detail: str, value: str = "Sender") -> None:
        super().__init__(code, detail, 400)
        self.value = value
