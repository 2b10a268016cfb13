"""IHE XDS.b ITI-41 Provide and Register Document Set-b, as the DMP takes it (pure).

Both sides of the wire format, so that the sink and the sandbox cannot drift apart, in
three modules over the SOAP 1.2 pieces they share (:mod:`.soap`: actions, namespaces, the
envelope, :class:`Iti41Error`):

* :mod:`.build` — :func:`request` builds the SOAP 1.2 request — WS-Addressing (Action,
  MessageID, To, ReplyTo), the signed VIHF in ``wsse:Security``, and the body
  ``ProvideAndRegisterDocumentSetRequest``: ebRIM ``SubmitObjectsRequest`` with the
  submission set (RegistryPackage), the document entry (ExtrinsicObject) of
  :class:`~domain.xds.metadata.DocumentEntry`, the HasMember association (and RPLC to the
  replaced document), and the document by ``xop:Include`` — packaged as MTOM/XOP
  (:mod:`consumers.ihe.mtom`); with the structure's key, the signed submission set too
  (the DSG signature document of :mod:`consumers.ihe.dsg` and its ``signs`` association).
* :mod:`.read` — :func:`read_request` and :func:`read_metadata` read such a request back.
* :mod:`.answer` — :func:`registry_response` and :func:`soap_fault` build the answers;
  :func:`read_response` reads an answer.

Everything public is importable from here (``from consumers.ihe import iti41``).

Facts: STANDARDS.md §4 (classification and external identifier UUIDs, slots, the ANS
mapping) and IHE ITI TF-3 §4.2 (metadata, error codes). Entry UUIDs are derived from the
document's uniqueId (:func:`entry_uuid`) so that a replacement can name the entry it
replaces without querying the registry, as long as Relais filed it.
"""

from consumers.ihe.iti41.answer import (
    ALREADY_HELD,
    SEVERITY,
    STATUS,
    RegistryError,
    RegistryResponse,
    SoapFault,
    read_response,
    registry_response,
    soap_fault,
)
from consumers.ihe.iti41.build import (
    CONTENT_TYPE_OID,
    CONTENT_TYPES,
    EVENT_CODE_LIST,
    RELAIS_UUIDS,
    RPLC,
    SIGNS,
    SubmissionSet,
    content_id,
    content_type_of,
    entry_uuid,
    provide_and_register,
    request,
    signature_entry,
    signature_of,
    submission_set_of,
)
from consumers.ihe.iti41.read import (
    Association,
    Classified,
    Metadata,
    Received,
    RegistryObject,
    read_metadata,
    read_request,
)
from consumers.ihe.iti41.soap import ACTION, ANONYMOUS, NS, RESPONSE_ACTION, Iti41Error

__all__ = [
    "ACTION",
    "ALREADY_HELD",
    "ANONYMOUS",
    "CONTENT_TYPES",
    "CONTENT_TYPE_OID",
    "EVENT_CODE_LIST",
    "NS",
    "RELAIS_UUIDS",
    "RESPONSE_ACTION",
    "RPLC",
    "SEVERITY",
    "SIGNS",
    "STATUS",
    "Association",
    "Classified",
    "Iti41Error",
    "Metadata",
    "Received",
    "RegistryError",
    "RegistryObject",
    "RegistryResponse",
    "SoapFault",
    "SubmissionSet",
    "content_id",
    "content_type_of",
    "entry_uuid",
    "provide_and_register",
    "read_metadata",
    "read_request",
    "read_response",
    "registry_response",
    "request",
    "signature_entry",
    "signature_of",
    "soap_fault",
    "submission_set_of",
]
