"""The VIHF: the SAML 2.0 assertion that authenticates a DMP call, signed by the structure.

Facts (STANDARDS.md §4, ANS IG transmission mapping): the assertion travels in the SOAP
``wsse:Security`` header; it is signed (XML-DSig, enveloped) with the structure's
certificate; its Issuer is that certificate's subject, its Subject/NameID the professional
acting — the document's author when known with their profession (the roles are then
theirs), else the person responsible for the (automated) feeding with their roles
(:class:`Subject`, :meth:`VihfIdentity.acting_as`) — and its attributes say who
acts (structure, activity sector, subject id and role), how (``Authentification_Mode``
INDIRECTE, the structure authenticates), on whom (``resource-id``: the patient's INS as a
CX ``^NH``), on what (``Ressource_URN`` ``urn:dmp``) and why (purpose of use ``normal``),
and which software (``LPS_*``). :func:`signed_vihf` builds and signs one. Checking one is the
DMP's business: the DMP sandbox does it with its own code (:mod:`sandboxes.dmp_vihf`), the
oracle the tests judge this module's assertions with.

The module is pure: keys and certificates come in as PEM bytes, nothing is read from
the environment, and it logs nothing (the assertion names a patient).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

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


class VihfError(ValueError):
    """An assertion cannot be built (``reason`` says why)."""

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
        return Subject(self.subject_id, self.subject_name, self.roles)

    def acting_as(self, subject: Subject | None) -> VihfIdentity:
        """The same structure and software, with ``subject`` acting: their NameID,
        ``subject-id`` *and* roles. A subject whose roles are unknown does not act: the VIHF
        would give them the responsible person's profession (the DMP decides access by the
        role), so the responsible person stays the subject (None: as is too)."""
        if subject is None or not subject.roles or subject == self.subject:
            return self
        return replace(self, subject_id=subject.id, subject_name=subject.name, roles=subject.roles)


@dataclass(frozen=True)
class Subject:
    """The person a VIHF names (NameID, ``subject-id``, ``subject:role``): the document's
    author, when known with their profession."""

    id: str  # IdNat_PS
    name: str
    roles: tuple[Role, ...] = ()  # their profession / specialty (JDV_J65); () unknown


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


def _xs(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
