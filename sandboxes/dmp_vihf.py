"""The VIHF of a DMP request, judged by the sandbox (pure).

The VIHF is a SAML 2.0 assertion in ``wsse:Security`` (OASIS WSS SAML Token Profile 1.1),
signed (XML-DSig, enveloped, SAML 2.0 Core §5) by the structure's certificate. In order:

1. valid against the SAML 2.0 assertion schema (with the W3C XML-DSig schema it imports);
2. its signature verifies (signxml) with the certificate of its ``ds:KeyInfo``, and the
   signed element is the assertion itself (its ``ID``);
3. that certificate is issued by the trusted CA (the IGC-Santé's stand-in), is valid now,
   and is the certificate that authenticated the TLS session (mutual TLS);
4. ``Conditions`` hold now; ``Subject/NameID`` is there;
5. the attributes the DMP requires (ANS, CI-SIS "Volet Transmission"/VIHF mapping,
   ../shared/STANDARDS.md §4) are there and well formed: ``resource-id`` an INS CX ``^NH``,
   ``Ressource_URN`` ``urn:dmp``, the roles and purpose of use as HL7 coded values...

Signature and trust failures are ``wsse:FailedAuthentication``; a missing or malformed
assertion is ``wsse:InvalidSecurity``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature as BadCertificateSignature
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from domain.ins import INS_OIDS, ins_key_valid
from sandboxes.dmp_refusals import Faulted
from sandboxes.dmp_xml import SAML, SchemaInvalid, elements, first, validate

RESOURCE_ID: Final = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
SUBJECT_ID: Final = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
ROLE: Final = "urn:oasis:names:tc:xacml:2.0:subject:role"
PURPOSE: Final = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
REQUIRED: Final = (
    "VIHF_Version",
    "Identifiant_Structure",
    "Secteur_Activite",
    SUBJECT_ID,
    ROLE,
    "Authentification_Mode",
    RESOURCE_ID,
    "Ressource_URN",
    PURPOSE,
    "LPS_ID",
    "LPS_Nom",
    "LPS_Version",
    "LPS_ID_HOMOLOGATION_DMP",
)
VERSIONS: Final = frozenset({"3.0", "4.0"})
AUTHENTICATION_MODES: Final = frozenset({"DIRECTE", "INDIRECTE"})
ACTIVITY_SECTOR: Final = re.compile(r"^SA\d{2}\^1\.2\.250\.1\.71\.4\.2\.4$")
#: a patient CX (HL7 v2.5 CX: id, assigning authority OID, type); an INS when
#: :func:`patient_of` says so (the metadata check: XDSUnknownPatientId)
PATIENT_CX: Final = re.compile(r"^(?P<id>[^\^&]+)\^\^\^&(?P<oid>[0-9.]+)&ISO\^(?P<type>[A-Z]+)$")
INS: Final = re.compile(r"^[0-9AB]{15}$")
SKEW: Final = timedelta(minutes=5)
XSI_TYPE: Final = "{http://www.w3.org/2001/XMLSchema-instance}type"
#: the DMP's own samples sign with RSA-SHA1 (DRIM-M publication.xml): accepted with SHA-2
EXPECT: Final = SignatureConfiguration(
    expect_references=1,
    signature_methods=frozenset(SignatureMethod),
    digest_algorithms=frozenset(DigestAlgorithm),
)


@dataclass(frozen=True)
class Vihf:
    """A verified VIHF: its attributes (string values) and its signing certificate."""

    attributes: Mapping[str, tuple[str, ...]]
    certificate: x509.Certificate
    subject: str  # Subject/NameID: the person, or the one responsible for the processing

    def value(self, name: str) -> str:
        values = self.attributes.get(name, ())
        return values[0] if values else ""


def verified(
    assertion: etree._Element | None,
    *,
    ca_file: Path,
    schema_dir: Path,
    now: datetime,
    client_cert: x509.Certificate | None,
) -> Vihf:
    """The VIHF of a request, every check passed; :class:`Faulted` otherwise."""
    if assertion is None:
        raise Faulted("wsse:InvalidSecurity", "no VIHF (saml:Assertion) in wsse:Security")
    try:
        validate(schema_dir, "saml", _without_foreign_types(assertion))
    except SchemaInvalid as exc:
        raise Faulted("wsse:InvalidSecurity", f"VIHF: {exc}") from None
    certificate = _key_info_certificate(assertion)
    signed = _signed_assertion(assertion, certificate)
    _trusted(certificate, ca_file, now)
    if client_cert is not None and certificate != client_cert:
        raise Faulted(
            "wsse:FailedAuthentication",
            "the VIHF is not signed by the certificate that authenticated the TLS session",
        )
    _in_time(signed, now)
    vihf = Vihf(_attributes(signed), certificate, first(signed, "saml:Subject/saml:NameID"))
    _required(vihf)
    return vihf


def _without_foreign_types(assertion: etree._Element) -> etree._Element:
    """A copy whose HL7 values (``xsi:type="hl7:CE"``) lose their type: their schema is not
    SAML's; :func:`_required` checks their code and codeSystem by hand."""
    copy = etree.fromstring(etree.tostring(assertion))
    for value in elements(copy, ".//saml:AttributeValue//*[@xsi:type]"):
        del value.attrib[XSI_TYPE]
    return copy


def _key_info_certificate(assertion: etree._Element) -> x509.Certificate:
    text = first(assertion, "ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
    except (ValueError, binascii.Error):
        raise Faulted("wsse:InvalidSecurity", "the VIHF carries no X.509 certificate") from None


def _signed_assertion(assertion: etree._Element, certificate: x509.Certificate) -> etree._Element:
    document = etree.tostring(assertion)
    try:
        result = XMLVerifier().verify(
            document, x509_cert=certificate, id_attribute="ID", expect_config=EXPECT
        )
    except (InvalidSignature, InvalidInput) as exc:
        raise Faulted("wsse:FailedAuthentication", f"the VIHF signature fails: {exc}") from None
    signed = result[0].signed_xml if isinstance(result, list) else result.signed_xml
    if (
        signed is None
        or signed.tag != f"{{{SAML}}}Assertion"
        or (signed.get("ID") != assertion.get("ID"))
    ):
        raise Faulted("wsse:FailedAuthentication", "the VIHF signature is not over the assertion")
    return signed


def trusted_certificate(certificate: x509.Certificate, ca_file: Path, now: datetime) -> str:
    """Why ``certificate`` is not trusted (issued by a CA of ``ca_file``, valid now), or ''."""
    cas = x509.load_pem_x509_certificates(ca_file.read_bytes())
    issuers = [ca for ca in cas if ca.subject == certificate.issuer]
    for ca in issuers:
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, BadCertificateSignature):
            continue
        if not certificate.not_valid_before_utc - SKEW <= now <= certificate.not_valid_after_utc:
            return "the certificate is not valid now"
        return ""
    return "the certificate is not issued by the trusted CA"


def _trusted(certificate: x509.Certificate, ca_file: Path, now: datetime) -> None:
    reason = trusted_certificate(certificate, ca_file, now)
    if reason:
        raise Faulted("wsse:FailedAuthentication", f"VIHF: {reason}")


def _in_time(signed: etree._Element, now: datetime) -> None:
    not_before = first(signed, "saml:Conditions/@NotBefore")
    not_after = first(signed, "saml:Conditions/@NotOnOrAfter")
    try:
        if not_before and now + SKEW < datetime.fromisoformat(not_before):
            raise Faulted("wsse:FailedAuthentication", "the VIHF is not valid yet")
        if not_after and now - SKEW >= datetime.fromisoformat(not_after):
            raise Faulted("wsse:FailedAuthentication", "the VIHF has expired")
    except ValueError:
        raise Faulted("wsse:InvalidSecurity", "VIHF Conditions are not xs:dateTime") from None


def _attributes(signed: etree._Element) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for attribute in elements(signed, "saml:AttributeStatement/saml:Attribute"):
        name = attribute.get("Name", "")
        values = []
        for value in elements(attribute, "saml:AttributeValue"):
            coded = elements(value, "*")
            values.append(coded_value(coded[0]) if coded else first(value, "string(.)"))
        found[name] = found.get(name, ()) + tuple(values)
    return found


def coded_value(element: etree._Element) -> str:
    """An HL7 coded value (``Role``, ``PurposeOfUse``) as ``code^codeSystem``."""
    return f"{element.get('code', '')}^{element.get('codeSystem', '')}"


def _required(vihf: Vihf) -> None:
    for name in REQUIRED:
        if not any(vihf.attributes.get(name, ())):
            raise Faulted("wsse:InvalidSecurity", f"the VIHF lacks the attribute {name}")
    if not vihf.subject:
        raise Faulted("wsse:InvalidSecurity", "the VIHF lacks Subject/NameID")
    problems = [
        (vihf.value("VIHF_Version") not in VERSIONS, "VIHF_Version must be 3.0 or 4.0"),
        (vihf.value("Ressource_URN") != "urn:dmp", "Ressource_URN must be urn:dmp"),
        (
            vihf.value("Authentification_Mode") not in AUTHENTICATION_MODES,
            "Authentification_Mode must be DIRECTE or INDIRECTE",
        ),
        (not ACTIVITY_SECTOR.match(vihf.value("Secteur_Activite")), "Secteur_Activite: SAnn^OID"),
        (
            not PATIENT_CX.match(vihf.value(RESOURCE_ID)),
            "resource-id must be a patient CX <id>^^^&<OID>&ISO^<type>",
        ),
        (
            any(v.startswith("^") or v.endswith("^") for v in vihf.attributes[ROLE]),
            "each role is an HL7 Role with code and codeSystem",
        ),
        (vihf.value(PURPOSE).startswith("^"), "purposeofuse is an HL7 PurposeOfUse with a code"),
        (
            vihf.value("Identifiant_Structure") not in _units(vihf.certificate),
            "Identifiant_Structure is not the structure of the signing certificate",
        ),
    ]
    for wrong, reason in problems:
        if wrong:
            raise Faulted("wsse:InvalidSecurity", f"VIHF: {reason}")


def _units(certificate: x509.Certificate) -> list[str]:
    names = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return [str(n.value) for n in names]


def patient_of(cx: str) -> tuple[str, str] | None:
    """(INS, OID) of an INS CX ``<INS>^^^&<OID>&ISO^NH`` whose key checks, else None."""
    match = PATIENT_CX.match(cx)
    if not match or match["type"] != "NH" or match["oid"] not in INS_OIDS:
        return None
    if not INS.match(match["id"]) or not ins_key_valid(match["id"]):
        return None
    return match["id"], match["oid"]
