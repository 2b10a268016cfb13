"""The signed submission set: an IHE DSG signature document over one ITI-41 submission (pure).

The DMP wants every submission set signed (STANDARDS.md §4): beside the documents, the
submission carries one more document, a ``ds:Signature`` (XML-DSig with XAdES signed
properties) made with the structure's certificate — the "cachet" that also signs the VIHF
(:class:`consumers.ihe.vihf.SigningKey`). Facts, IHE ITI TF-3 §5.5 (Document Digital
Signature, SubmissionSet Signature variant of the detached signature):

* the signature envelops a ``ds:Manifest`` (Id ``IHEManifest``, referenced from SignedInfo
  with ``Type=…#Manifest``) holding one ``ds:Reference`` per document, ``URI`` =
  ``urn:oid:<DocumentEntry.uniqueId>``, digest = SHA-256 of the exact bytes sent, plus one
  for ``urn:oid:<SubmissionSet.uniqueId>`` with the zero hash (the DMP's own sample writes
  it ``AA==``: one zero byte);
* SHA-256 digests, Canonical XML 1.1 with comments;
* XAdES ``QualifyingProperties``: ``SigningTime``, ``SigningCertificateV2``,
  ``SignaturePolicyIdentifier`` (``SignaturePolicyImplied``, as in the DMP's sample request:
  DSG only *allows* naming its policy URN, and XAdES would then need the digest of a policy
  document that does not exist), ``DataObjectFormat`` of the manifest and the
  ``CommitmentTypeIndication`` of the purpose of signature (ASTM E1762 "Source",
  1.2.840.10065.1.12.1.14, the DMP's eventCode for it).

:func:`sign_submission_set` builds the document with signxml's :class:`XAdESSigner`; the
result depends only on its arguments (an RSA signature is deterministic), so it is
unit-testable. :func:`manifest_of` reads the manifest back (URI → digest). The metadata
the signature document carries in the submission (class, type and format codes, ``art``)
are the constants below; :mod:`consumers.ihe.iti41.build` writes them.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.util import SigningSettings
from signxml.xades.xades import XAdESDataObjectFormat, XAdESSigner

from consumers.ihe.vihf import DS, SigningKey
from domain.document_id import safe_parser
from domain.xds.codes import Coded

XADES: Final = "http://uri.etsi.org/01903/v1.3.2#"
MANIFEST_TYPE: Final = f"{DS}Manifest"
MANIFEST_ID: Final = "IHEManifest"
#: the digest DSG gives the submission set's own reference ("0"), as the DMP's sample writes it
ZERO_DIGEST: Final = base64.b64encode(b"\0").decode("ascii")
C14N: Final = CanonicalizationMethod.CANONICAL_XML_1_1_WITH_COMMENTS

#: the signature document's DocumentEntry metadata (DMP publication.xml; DSG §5.5.6)
CLASS_CODE: Final = Coded("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN", "Digital Signature")
TYPE_CODE: Final = Coded("E1762", "ASTM", "Full Document")
FORMAT_CODE: Final = Coded("http://www.w3.org/2000/09/xmldsig#", "URN", "Default Signature Style")
PURPOSE: Final = Coded("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12", "Source")
LANGUAGE: Final = "art"
MIME_TYPE: Final = "text/xml"
TITLE: Final = PURPOSE.display

_OID: Final = re.compile(r"^[0-2](?:\.(?:0|[1-9][0-9]*))+$")
_NAMESPACE: Final = uuid.UUID("9f1d43b2-6a0e-4c71-8c3e-2f5b7d1e0a64")


class DsgError(ValueError):
    """A signature document cannot be built (the message says what to fix)."""


@dataclass(frozen=True)
class Signed:
    """One document the signature covers: its DocumentEntry.uniqueId and the bytes sent."""

    unique_id: str
    content: bytes


@dataclass(frozen=True)
class SignatureDocument:
    """The signature document and what its DocumentEntry says of it."""

    unique_id: str  # its own DocumentEntry.uniqueId (an OID)
    content: bytes
    signed_at: datetime

    @cached_property
    def hash_sha1(self) -> str:
        """The XDS ``hash`` slot (SHA-1, hex) of the bytes sent."""
        return hashlib.sha1(self.content, usedforsecurity=False).hexdigest()

    @property
    def size(self) -> int:
        return len(self.content)


def signature_unique_id(submission_set_id: str) -> str:
    """The uniqueId of the signature document of a submission set (stable, ``2.25.``)."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, f'signature:{submission_set_id}').int}"


def digest(content: bytes) -> str:
    """The manifest digest of a document: SHA-256 of its exact bytes, base64."""
    return base64.b64encode(hashlib.sha256(content).digest()).decode("ascii")


def sign_submission_set(
    documents: Sequence[Signed],
    submission_set_id: str,
    key: SigningKey,
    *,
    now: datetime,
) -> SignatureDocument:
    """The signature document over ``documents`` and the submission set ``submission_set_id``."""
    if not documents:
        raise DsgError("a submission set signature needs at least one document")
    unique_id = signature_unique_id(submission_set_id)
    wrapper = _manifest_object(documents, submission_set_id)
    signer = _DsgSigner(key, now.astimezone(UTC), f"dsg-{unique_id}", wrapper)
    signed: etree._Element = signer.sign(
        wrapper,
        key=key.private_key,
        cert=key.cert_pem.decode("ascii"),
        reference_uri=f"#{MANIFEST_ID}",
        always_add_key_value=False,
    )
    content = bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
    return SignatureDocument(unique_id=unique_id, content=content, signed_at=now)


def manifest_of(signature: bytes) -> dict[str, str]:
    """The manifest of a signature document: reference URI → digest (base64)."""
    try:
        root = etree.fromstring(signature, safe_parser())
    except etree.XMLSyntaxError:
        raise DsgError("the signature document is not well-formed XML") from None
    manifest = root.find(f"{{{DS}}}Object/{{{DS}}}Manifest[@Id='{MANIFEST_ID}']")
    if root.tag != f"{{{DS}}}Signature" or manifest is None:
        raise DsgError(f"not a ds:Signature enveloping a ds:Manifest Id={MANIFEST_ID}")
    return {
        str(r.get("URI", "")): r.findtext(f"{{{DS}}}DigestValue", "").strip()
        for r in manifest.iterfind(f"{{{DS}}}Reference")
    }


def _oid_uri(unique_id: str, what: str) -> str:
    if not _OID.match(unique_id):
        raise DsgError(f"the {what} uniqueId must be an OID to be named urn:oid: in the manifest")
    return f"urn:oid:{unique_id}"


def _manifest_object(documents: Sequence[Signed], submission_set_id: str) -> etree._Element:
    """``ds:Object/ds:Manifest``: the submission set (zero hash), then each document.

    It declares the signature's own prefixes, so that it canonicalises the same alone (when
    signxml digests it) and inside the ``ds:Signature`` (when a verifier does)."""
    wrapper = etree.Element(f"{{{DS}}}Object", nsmap={"ds": DS, "xades": XADES})
    manifest = etree.SubElement(wrapper, f"{{{DS}}}Manifest", Id=MANIFEST_ID)
    entries = [(_oid_uri(submission_set_id, "submission set"), ZERO_DIGEST)]
    entries += [(_oid_uri(d.unique_id, "document"), digest(d.content)) for d in documents]
    for uri, value in entries:
        reference = etree.SubElement(manifest, f"{{{DS}}}Reference", URI=uri)
        etree.SubElement(reference, f"{{{DS}}}DigestMethod", Algorithm=DigestAlgorithm.SHA256.value)
        etree.SubElement(reference, f"{{{DS}}}DigestValue").text = value
    return wrapper


def _x(tag: str) -> str:
    return f"{{{XADES}}}{tag}"


class _DsgSigner(XAdESSigner):
    """signxml's XAdES signer, detached over the manifest, with DSG's signed properties.

    Overrides: the signing time is the one given (signxml would read the clock), the policy
    is implied, the commitment type is DSG's purpose of signature, and the ids are derived
    from the signature's own id (signxml draws random tokens) so the output is reproducible.
    """

    def __init__(
        self, key: SigningKey, signed_at: datetime, signature_id: str, manifest: etree._Element
    ) -> None:
        rsa_key = isinstance(key.private_key, rsa.RSAPrivateKey)
        super().__init__(
            data_object_format=XAdESDataObjectFormat("IHE DSG submission set manifest", MIME_TYPE),
            method=SignatureConstructionMethod.detached,
            signature_algorithm=SignatureMethod.RSA_SHA256
            if rsa_key
            else SignatureMethod.ECDSA_SHA256,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=C14N,
        )
        self.signed_at = signed_at
        self.signature_id = signature_id
        self.manifest = manifest  # the ds:Object holding it, placed in the signature
        self._serial = 0
        self.signature_annotators.insert(1, self._place_manifest)  # after KeyInfo, before XAdES
        self.signed_data_object_properties_annotators.append(self.add_commitment_type)

    def _get_token(self, length: int = 4) -> str:
        """signxml's id suffixes, counted instead of drawn (one signer signs once)."""
        self._serial += 1
        return str(self._serial)

    def _place_manifest(self, sig_root: etree._Element, **_: Any) -> None:
        """Name the signature and its KeyInfo, put the manifest in it, type its reference."""
        sig_root.set("Id", self.signature_id)
        key_info = sig_root.find(f"{{{DS}}}KeyInfo")
        if key_info is not None:
            key_info.set("Id", f"{self.signature_id}-KeyInfo")
        sig_root.append(self.manifest)
        reference = sig_root.find(f"{{{DS}}}SignedInfo/{{{DS}}}Reference[@URI='#{MANIFEST_ID}']")
        if reference is None:  # pragma: no cover - signxml wrote the reference it was given
            raise DsgError("signxml did not reference the manifest")
        reference.set("Id", f"{self.signature_id}-Manifest")
        reference.set("Type", MANIFEST_TYPE)

    def add_signing_time(
        self, signed_signature_properties: Any, sig_root: Any, signing_settings: SigningSettings
    ) -> None:
        element = etree.SubElement(signed_signature_properties, _x("SigningTime"))
        element.text = self.signed_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def add_signature_policy_identifier(
        self, signed_signature_properties: Any, sig_root: Any, signing_settings: SigningSettings
    ) -> None:
        policy = etree.SubElement(signed_signature_properties, _x("SignaturePolicyIdentifier"))
        etree.SubElement(policy, _x("SignaturePolicyImplied"))

    def add_commitment_type(
        self, signed_data_object_properties: Any, sig_root: Any, signing_settings: SigningSettings
    ) -> None:
        """CommitmentTypeIndication: the purpose of signature, over all the signed objects."""
        indication = etree.SubElement(signed_data_object_properties, _x("CommitmentTypeIndication"))
        commitment = etree.SubElement(indication, _x("CommitmentTypeId"))
        identifier = etree.SubElement(commitment, _x("Identifier"), Qualifier="OIDAsURN")
        identifier.text = f"urn:oid:{PURPOSE.code}"
        etree.SubElement(commitment, _x("Description")).text = f"{PURPOSE.display} Signature"
        etree.SubElement(indication, _x("AllSignedDataObjects"))
