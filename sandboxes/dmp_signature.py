"""The signed submission set of a DMP submission, verified by the sandbox (pure).

IHE ITI Document Digital Signature (DSG) profile, "SubmissionSet signature"; the DMP
requires it (ANS PDSM4DMP TD2 "lot de soumission XDS signé (XAdES)", DRIM-M
``publication.xml``; STANDARDS.md §4):

* one more ExtrinsicObject, the signature document: classCode
  ``urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1`` (codingScheme ``URN``), typeCode ``E1762``
  (``ASTM``), formatCode ``http://www.w3.org/2000/09/xmldsig#``, languageCode ``art``,
  mimeType ``text/xml``, and an Association ``urn:ihe:iti:2007:AssociationType:signs``
  from it to the SubmissionSet;
* its document is a W3C XML-DSig ``ds:Signature``, valid against the XML-DSig schema,
  whose SignedInfo references a ``ds:Manifest`` and the XAdES ``SignedProperties``
  (ETSI TS 101 903; the DMP sample uses the v1.1.1 namespace, DSG v1.3.2: both are read),
  verified with signxml;
* its certificate is issued by the trusted CA, and the XAdES ``SigningCertificate``
  digest, when present, is that certificate's;
* the Manifest has one ``ds:Reference`` per submitted document, ``URI="urn:oid:<uniqueId>"``
  (``urn:uuid:`` for a UUID uniqueId), whose digest is the document's; it may name the
  SubmissionSet's uniqueId too, and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from domain.xds.ebrim import Scheme
from sandboxes.dmp_ebrim import Objects, RimObject
from sandboxes.dmp_refusals import SIGNATURE_ERROR, Rejected
from sandboxes.dmp_vihf import trusted_certificate
from sandboxes.dmp_xml import DS, XADES, SchemaInvalid, elements, first, parse, validate

SIGNS: Final = "urn:ihe:iti:2007:AssociationType:signs"
#: (scheme, code, codingScheme) the signature entry must carry (IHE DSG, DMP sample)
SIGNATURE_CODES: Final = (
    (Scheme.DE_CLASS, "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN"),
    (Scheme.DE_TYPE, "E1762", "ASTM"),
    (Scheme.DE_FORMAT, "http://www.w3.org/2000/09/xmldsig#", ""),
)
DIGESTS: Final = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",
    "http://www.w3.org/2001/04/xmldsig-more#sha224": "sha224",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}
EXPECT: Final = SignatureConfiguration(
    expect_references=True,
    signature_methods=frozenset(SignatureMethod),
    digest_algorithms=frozenset(DigestAlgorithm),
)


def check_signed_set(
    signature: RimObject,
    content: bytes,
    *,
    objects: Objects,
    submission_set: RimObject,
    documents: Mapping[str, bytes],
    ca_file: Path,
    now: datetime,
    schema_dir: Path,
) -> None:
    """The signature entry and its XAdES signature over the documents' digests.

    ``documents``: the submitted documents' bytes by their uniqueId.
    """
    check_signature_entry(signature, objects, submission_set)
    manifest = verified_manifest(content, ca_file, now, schema_dir)
    check_manifest(manifest, documents, submission_set.identifier(Scheme.SS_UNIQUE_ID))


def check_signature_entry(
    signature: RimObject, objects: Objects, submission_set: RimObject
) -> None:
    """The signature entry's codes and its ``signs`` association to the SubmissionSet."""
    for scheme, code, coding_scheme in SIGNATURE_CODES:
        found = signature.coded(scheme)
        if len(found) != 1 or found[0].node != code:
            raise Rejected(SIGNATURE_ERROR, f"signature entry: {code} expected")
        if coding_scheme and found[0].coding_scheme != coding_scheme:
            raise Rejected(
                SIGNATURE_ERROR, f"signature entry: {code} needs codingScheme {coding_scheme}"
            )
    if (
        signature.slot("languageCode") != "art"
        or signature.attributes.get("mimeType") != "text/xml"
    ):
        raise Rejected(SIGNATURE_ERROR, "signature entry: languageCode art, mimeType text/xml")
    if signature.identifier(Scheme.DE_PATIENT_ID) != submission_set.identifier(
        Scheme.SS_PATIENT_ID
    ):
        raise Rejected(SIGNATURE_ERROR, "signature entry: patientId is not the SubmissionSet's")
    if not any(
        a.type == SIGNS and a.source == signature.id and a.target == submission_set.id
        for a in objects.associations
    ):
        raise Rejected(SIGNATURE_ERROR, f"no {SIGNS} association signature -> SubmissionSet")


def verified_manifest(
    content: bytes, ca_file: Path, now: datetime, schema_dir: Path
) -> etree._Element:
    """The ``ds:Manifest`` the signature covers, signature and certificate verified."""
    try:
        root = parse(content)
    except etree.XMLSyntaxError:
        raise Rejected(SIGNATURE_ERROR, "the signature document is not XML") from None
    if root.tag != f"{{{DS}}}Signature":
        raise Rejected(SIGNATURE_ERROR, "the signature document is not a ds:Signature")
    try:
        validate(schema_dir, "xmldsig", root)
    except SchemaInvalid as exc:
        raise Rejected(SIGNATURE_ERROR, f"the signature document: {exc}") from None
    certificate = _certificate(root)
    try:
        results = XMLVerifier().verify(content, x509_cert=certificate, expect_config=EXPECT)
    except (InvalidSignature, InvalidInput) as exc:
        raise Rejected(SIGNATURE_ERROR, f"the submission set signature fails: {exc}") from None
    signed = [r.signed_xml for r in (results if isinstance(results, list) else [results])]
    manifests = [s for s in signed if s is not None and s.tag == f"{{{DS}}}Manifest"]
    properties = [
        s for s in signed if s is not None and s.tag in {f"{{{x}}}SignedProperties" for x in XADES}
    ]
    if len(manifests) != 1 or len(properties) != 1:
        raise Rejected(
            SIGNATURE_ERROR, "the signature must sign one ds:Manifest and XAdES SignedProperties"
        )
    reason = trusted_certificate(certificate, ca_file, now) or _signing_certificate(
        properties[0], certificate
    )
    if reason:
        raise Rejected(SIGNATURE_ERROR, f"submission set signature: {reason}")
    return manifests[0]


def _certificate(root: etree._Element) -> x509.Certificate:
    text = first(root, "ds:KeyInfo/ds:X509Data/ds:X509Certificate")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
    except (ValueError, binascii.Error):
        raise Rejected(SIGNATURE_ERROR, "the signature carries no X.509 certificate") from None


def _signing_certificate(properties: etree._Element, certificate: x509.Certificate) -> str:
    """Why the XAdES SigningCertificate is not ``certificate``, or ''."""
    digests = elements(properties, ".//*[local-name()='CertDigest']")
    der = certificate.public_bytes(Encoding.DER)
    for digest in digests:
        algorithm = DIGESTS.get(first(digest, "*[local-name()='DigestMethod']/@Algorithm"))
        value = first(digest, "*[local-name()='DigestValue']")
        if algorithm and value == base64.b64encode(hashlib.new(algorithm, der).digest()).decode():
            return ""
    return "the XAdES SigningCertificate is not the signing certificate" if digests else ""


def check_manifest(
    manifest: etree._Element, documents: Mapping[str, bytes], set_unique_id: str
) -> None:
    """One Reference per document with its digest; the SubmissionSet's may be there too."""
    references = {first(r, "@URI"): r for r in elements(manifest, "ds:Reference")}
    for unique_id, content in documents.items():
        reference = references.pop(f"urn:oid:{unique_id}", None)
        if reference is None:
            reference = references.pop(f"urn:uuid:{unique_id}", None)
        if reference is None:
            raise Rejected(
                SIGNATURE_ERROR, "the signed Manifest does not reference a submitted document"
            )
        algorithm = DIGESTS.get(first(reference, "ds:DigestMethod/@Algorithm"))
        if algorithm is None:
            raise Rejected(SIGNATURE_ERROR, "a Manifest Reference has an unknown DigestMethod")
        digest = base64.b64encode(hashlib.new(algorithm, content).digest()).decode()
        if first(reference, "ds:DigestValue") != digest:
            raise Rejected(SIGNATURE_ERROR, "a signed Manifest digest differs from its document's")
    for uri in references:
        if uri not in {f"urn:oid:{set_unique_id}", f"urn:uuid:{set_unique_id}"}:
            raise Rejected(SIGNATURE_ERROR, "the signed Manifest references what was not submitted")
