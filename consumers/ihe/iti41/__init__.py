"""IHE XDS.b ITI-41 Provide and Register Document Set-b, as the DMP takes it (pure).

The DMP sink's side of the wire format, in two modules over the SOAP 1.2 pieces they share
(:mod:`.soap`: actions, namespaces, the envelope, :class:`Iti41Error`). The DMP's side —
reading a request, writing the answers — is the DMP sandbox's own code (:mod:`sandboxes.dmp`),
written apart from this one so that it can judge it:

* :mod:`.build` — :func:`request` builds the SOAP 1.2 request — WS-Addressing (Action,
  MessageID, To, ReplyTo), the signed VIHF in ``wsse:Security``, and the body
  ``ProvideAndRegisterDocumentSetRequest``: ebRIM ``SubmitObjectsRequest`` with the
  submission set (RegistryPackage), the document entry (ExtrinsicObject) of
  :class:`~domain.xds.metadata.DocumentEntry`, the HasMember association (and RPLC to the
  replaced document), and the document by ``xop:Include`` — packaged as MTOM/XOP
  (:mod:`consumers.ihe.mtom`); with the structure's key, the signed submission set too
  (the DSG signature document of :mod:`consumers.ihe.dsg` and its ``signs`` association).
* :mod:`.answer` — :func:`read_response` reads an answer: a RegistryResponse, or a SOAP
  Fault raised as :class:`SoapFault`.

Everything public is importable from here (``from consumers.ihe import iti41``).

Facts: STANDARDS.md §4 (classification and external identifier UUIDs, slots, the ANS
mapping) and IHE ITI TF-3 §4.2 (metadata, error codes). The DMP assigns each filed version
its own entryUUID: :func:`entry_uuid` (derived from the document's uniqueId) is only the
submitter's symbolic id within one request, and a replacement's RPLC names the entryUUID
the DMP gave the replaced version, which Relais keeps or looks up with ITI-18
(:mod:`consumers.ihe.iti18`; docs/dmp-feeding.md, "entryUUIDs").
"""

from consumers.ihe.iti41.answer import (
    ALREADY_HELD,
    SEVERITY,
    STATUS,
    RegistryError,
    RegistryResponse,
    SoapFault,
    read_response,
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
    "Iti41Error",
    "RegistryError",
    "RegistryResponse",
    "SoapFault",
    "SubmissionSet",
    "content_id",
    "content_type_of",
    "entry_uuid",
    "provide_and_register",
    "read_response",
    "request",
    "signature_entry",
    "signature_of",
    "submission_set_of",
]
