"""The VIHF: the SAML 2.0 assertion that authenticates a DMP call, signed by the structure.

Facts (STANDARDS.md §4, ANS IG transmission mapping): the assertion travels in the SOAP
``wsse:Security`` header; it is signed (XML-DSig, enveloped) with the structure's
certificate; its Issuer is that certificate's subject, its Subject/NameID the professional
acting — the document's author when known, else the person responsible for the (automated)
feeding (:class:`Subject`, :meth:`VihfIdentity.acting_as`) — and its attributes say who
acts (structure, activity sector, subject id and role), how (``Authentification_Mode``
INDIRECTE, the structure authenticates), on whom (``resource-id``: the patient's INS as a
CX ``^NH``), on what (``Ressource_URN`` ``urn:dmp``) and why (purpose of use ``normal``),
and which software (``LPS_*``). :func:`signed_vihf` builds and signs one; :func:`verify_vihf` is
what the DMP (here its sandbox) does with it: the signature, the certificate chain up to
the trusted CA, the validity window, and only then the attributes, read from the signed
element alone (no signature wrapping).

The module is pure: keys and certificates come in as PEM bytes, nothing is read from
the environment, and it logs nothing (the assertion names a patient).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.signer import XMLSigner
from signxml.verifier import XMLVerifier

from domain.document_id import safe_parser

SAML: Final = "urn:oasis:names:tc:SAML:2.0:assertion"
DS: Final = "http://www.w3.org/2000/09/xmldsig#"
XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
HL7V3: Final = "urn:hl7-org:v3"
X509_SUBJECT: Final = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
UNSPECIFIED: Final = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
AUTHN_CONTEXT: Final = "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient"  # the structure's TLS
VIHF_VERSION: Final = "3.0"  # the IG example and the DRIM sample (its mapping table says 4.0)
PURPOSE_OF_USE_OID: Final = "1.2.250.1.213.1.1.4.248"  # mode d'accès VIHF
LIFETIME: Final = timedelta(minutes=5)

SUBJECT_ID: Final = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
SUBJECT_ROLE: Final = "urn:oasis:names:tc:xacml:2.0:subject:role"
RESOURCE_ID: Final = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
PURPOSE_OF_USE: Final = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
#: the attributes a DMP refuses an assertion without
REQUIRED: Final = (
    "VIHF_Version",
    "Identifiant_Structure",
    "Secteur_Activite",
    SUBJECT_ID,
    SUBJECT_ROLE,
    "Authentification_Mode",
    RESOURCE_ID,
    "Ressource_URN",
    PURPOSE_OF_USE,
    "LPS_ID",
    "LPS_Nom",
    "LPS_Version",
    "LPS_ID_HOMOLOGATION_DMP",
)


class VihfError(ValueError):
    """An assertion cannot be built, or a received one is not acceptable (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Role:
    """One ``subject:role`` value (JDV_J65): a profession or a specialty."""

    code: str
    scheme: str  # OID
    display: str = ""


@dataclass(frozen=True)
class VihfIdentity:
    """Who files: the structure (its certificate signs), the person responsible, the software."""

    structure_id: str  # Identifiant_Structure (IdNat_Struct)
    subject_id: str  # IdNat_PS of the person responsible for the automated feeding
    subject_name: str  # their name, as the DMP shows who filed
    roles: tuple[Role, ...]
    activity_sector: str  # Secteur_Activite, ``code^OID`` (e.g. SA25^1.2.250.1.71.4.2.4)
    lps_id: str  # the software's identifier (its instance)
    lps_name: str
    lps_version: str
    lps_homologation: str  # LPS_ID_HOMOLOGATION_DMP given by the DMP's homologation

    @property
    def subject(self) -> Subject:
        return Subject(self.subject_id, self.subject_name)

    def acting_as(self, subject: Subject | None) -> VihfIdentity:
        """The same structure and software, with ``subject`` as the acting person (None: as is)."""
        if subject is None or subject == self.subject:
            return self
        return replace(self, subject_id=subject.id, subject_name=subject.name)


@dataclass(frozen=True)
class Subject:
    """The person a VIHF names (NameID, ``subject-id``): the document's author, when known."""

    id: str  # IdNat_PS
    name: str


@dataclass(frozen=True)
class SigningKey:
    """The structure's certificate and private key (PEM), as the DMP's IGC-Santé issued them."""

    cert_pem: bytes
    key_pem: bytes = b""

    def __repr__(self) -> str:  # never print the key
        return "SigningKey(<PEM>)"

    @cached_property
    def certificate(self) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self.cert_pem)
        except ValueError:
            raise VihfError("the structure certificate is not a PEM X.509 certificate") from None

    @cached_property
    def private_key(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        """The key, loaded once: loading (and checking) an RSA key costs ~34 ms, signing ~1 ms."""
        try:
            loaded = serialization.load_pem_private_key(self.key_pem, password=None)
        except (ValueError, TypeError):
            raise VihfError("the structure key is not an unencrypted PEM private key") from None
        if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise VihfError("the structure key must be an RSA or EC key (IGC-Santé)")
        return loaded


@dataclass(frozen=True)
class VerifiedVihf:
    """What a verified assertion says: its attributes (first value, roles as ``code^OID``)."""

    name_id: str
    attributes: Mapping[str, tuple[str, ...]]
    certificate: x509.Certificate
    not_on_or_after: datetime

    def value(self, name: str) -> str:
        return self.attributes[name][0]


def signed_vihf(
    identity: VihfIdentity,
    patient_id: str,
    key: SigningKey,
    *,
    now: datetime,
    assertion_id: str | None = None,
) -> etree._Element:
    """The signed ``saml:Assertion`` for filing into the DMP of ``patient_id`` (INS CX ^NH)."""
    issuer = key.certificate.subject.rfc4514_string()
    assertion = assertion_of(identity, patient_id, issuer, now, assertion_id)
    signer = XMLSigner(
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signer.namespaces = {"ds": DS}
    signed: etree._Element = signer.sign(
        assertion, key=key.private_key, cert=key.cert_pem.decode("ascii"), reference_uri=None
    )
    return signed


def assertion_of(
    identity: VihfIdentity,
    patient_id: str,
    issuer: str,
    now: datetime,
    assertion_id: str | None = None,
) -> etree._Element:
    """The unsigned assertion, with the placeholder where SAML wants the signature."""
    missing = [name for name, value in vars(identity).items() if value in ("", ())]
    if missing:
        raise VihfError("the VIHF identity lacks " + ", ".join(missing))
    instant = _xs(now)
    assertion = etree.Element(
        f"{{{SAML}}}Assertion",
        nsmap={"saml": SAML, "xsi": XSI},
        ID=assertion_id or f"_{uuid.uuid4()}",
        IssueInstant=instant,
        Version="2.0",
    )
    _sub(assertion, "Issuer", issuer, Format=X509_SUBJECT)
    etree.SubElement(assertion, f"{{{DS}}}Signature", Id="placeholder", nsmap={"ds": DS})
    subject = _sub(assertion, "Subject")
    _sub(subject, "NameID", identity.subject_id, Format=UNSPECIFIED)
    conditions = _sub(assertion, "Conditions", NotBefore=instant)
    conditions.set("NotOnOrAfter", _xs(now + LIFETIME))
    authn = _sub(assertion, "AuthnStatement", AuthnInstant=instant)
    _sub(_sub(authn, "AuthnContext"), "AuthnContextClassRef", AUTHN_CONTEXT)
    _attribute_statement(_sub(assertion, "AttributeStatement"), identity, patient_id)
    return assertion


def _attribute_statement(
    statement: etree._Element, identity: VihfIdentity, patient_id: str
) -> None:
    """Who acts, how, on whom, on what, why and with which software (the VIHF attributes)."""
    plain = {
        "VIHF_Version": VIHF_VERSION,
        "Identifiant_Structure": identity.structure_id,
        "Secteur_Activite": identity.activity_sector,
        SUBJECT_ID: identity.subject_name,
        "Authentification_Mode": "INDIRECTE",
        RESOURCE_ID: patient_id,
        "Ressource_URN": "urn:dmp",
        "LPS_ID": identity.lps_id,
        "LPS_Nom": identity.lps_name,
        "LPS_Version": identity.lps_version,
        "LPS_ID_HOMOLOGATION_DMP": identity.lps_homologation,
    }
    for name, text in plain.items():
        _sub(_sub(statement, "Attribute", Name=name), "AttributeValue", text)
    roles = _sub(statement, "Attribute", Name=SUBJECT_ROLE)
    for role in identity.roles:
        _coded(_sub(roles, "AttributeValue"), "Role", role.code, role.scheme, role.display)
    purpose = _sub(_sub(statement, "Attribute", Name=PURPOSE_OF_USE), "AttributeValue")
    _coded(purpose, "PurposeOfUse", "normal", PURPOSE_OF_USE_OID, "Accès normal")


def verify_vihf(assertion: etree._Element | bytes, ca_file: Path, *, now: datetime) -> VerifiedVihf:
    """Check a received assertion as the DMP does; :class:`VihfError` says what is wrong."""
    data = assertion if isinstance(assertion, bytes) else etree.tostring(assertion)
    try:
        result = XMLVerifier().verify(data, ca_pem_file=str(ca_file), parser=safe_parser())
    except (InvalidSignature, InvalidInput) as exc:
        reason = f"the VIHF signature does not verify with a certificate of the trusted CA: {exc}"
        raise VihfError(reason) from None
    except (x509.verification.VerificationError, ValueError) as exc:
        raise VihfError(f"the VIHF certificate is not trusted: {exc}") from None
    if isinstance(result, list):
        raise VihfError("the VIHF carries more than one signature")
    signed = result.signed_xml
    if signed is None or signed.tag != f"{{{SAML}}}Assertion":
        raise VihfError("the signature does not cover a saml:Assertion")
    not_before = _when(signed, "saml:Conditions/@NotBefore")
    not_after = _when(signed, "saml:Conditions/@NotOnOrAfter")
    if not not_before - timedelta(minutes=1) <= now < not_after:
        raise VihfError("the VIHF is outside its validity window (Conditions)")
    attributes = {
        str(a.get("Name")): tuple(_value(v) for v in a.iterfind("saml:AttributeValue", _NS))
        for a in signed.iterfind("saml:AttributeStatement/saml:Attribute", _NS)
    }
    if missing := [name for name in REQUIRED if not any(attributes.get(name, ()))]:
        raise VihfError("the VIHF lacks the attributes " + ", ".join(missing))
    name_id = signed.findtext("saml:Subject/saml:NameID", "", _NS).strip()
    if not name_id:
        raise VihfError("the VIHF has no Subject/NameID")
    return VerifiedVihf(
        name_id, attributes, _signer(result.signature_xml, result.signature_key), not_after
    )


_NS: Final = {"saml": SAML, "hl7": HL7V3}


def _signer(signature: etree._Element, public_key_pem: bytes) -> x509.Certificate:
    """The certificate of KeyInfo whose key made the signature (signxml checked its chain)."""
    for element in signature.iter(f"{{{DS}}}X509Certificate"):
        der = base64.b64decode("".join((element.text or "").split()))
        certificate = x509.load_der_x509_certificate(der)
        key = certificate.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if key == public_key_pem:
            return certificate
    raise VihfError("the VIHF signature names no certificate of its key")


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{SAML}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def _coded(parent: etree._Element, tag: str, code: str, scheme: str, display: str) -> None:
    element = etree.SubElement(parent, f"{{{HL7V3}}}{tag}", nsmap={"hl7": HL7V3})
    element.set(f"{{{XSI}}}type", "hl7:CE")
    element.set("code", code)
    element.set("codeSystem", scheme)
    if display:
        element.set("displayName", display)


def _value(element: etree._Element) -> str:
    """Text of an AttributeValue, or ``code^codeSystem`` of the coded value it holds."""
    coded = next(iter(element), None)
    if coded is not None:
        return f"{coded.get('code', '')}^{coded.get('codeSystem', '')}"
    return (element.text or "").strip()


def _xs(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(element: etree._Element, path: str) -> datetime:
    found = element.xpath(path, namespaces=_NS)
    text = str(found[0]) if isinstance(found, list) and found else ""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise VihfError(f"the VIHF {path} is not an xs:dateTime") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
