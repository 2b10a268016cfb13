"""The messages the DMP oracle tests judge: right ones, and the means to make them wrong.

No test here. The right ITI-41 request is built by the client's builder (a test may use
it: the sandbox may not), then taken apart into its SOAP root and its MIME parts with the
standard library, so that a test can change one thing (drop a slot, change a scheme,
re-sign a VIHF without an attribute...) and put it back together.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message

from lxml import etree
from signxml.algorithms import CanonicalizationMethod, SignatureMethod
from signxml.signer import XMLSigner

from consumers.ihe import iti41
from consumers.ihe.vihf import Role, SigningKey, VihfIdentity, signed_vihf
from domain.xds.metadata import DocumentEntry, document_entry
from ops.demo.samples import DOMINIQUE, LAB, cda
from sandboxes.dmp import DmpSandbox
from sandboxes.dmp_xml import NS
from sandboxes.pki import SandboxPki
from tests.shared_data import SHARED_DATA

DATA = SHARED_DATA  # the IHE schemas and the ANS value sets: a missing folder fails the tests
DOC_ID = "1.2.250.1.213.1.1.9.4242.115022000101"
CONTENT = cda(LAB, DOMINIQUE, DOC_ID, "texte")
ENTRY = document_entry(CONTENT, {})
IDENTITY = VihfIdentity(
    structure_id="1120459876",
    subject_id="801234567866",
    subject_name="DEMO Biologiste",
    roles=(Role("10", "1.2.250.1.71.1.2.7"),),
    activity_sector="SA25^1.2.250.1.71.4.2.4",
    lps_id="relais-test",
    lps_name="Relais",
    lps_version="0.1.0",
    lps_homologation="SANDBOX",
)
BOUNDARY = "MIMEBoundary_oracle"


def key_of(pki: SandboxPki) -> SigningKey:
    return SigningKey(pki.client_cert.read_bytes(), pki.client_key.read_bytes())


def sandbox_of(pki: SandboxPki, **options: bool) -> DmpSandbox:
    return DmpSandbox(pki.ca_cert, data_dir=DATA, **options)


def client_request(
    pki: SandboxPki,
    entry: DocumentEntry = ENTRY,
    content: bytes = CONTENT,
    *,
    signing: SandboxPki | None = None,
    signed: bool = True,
    replaces: str | None = None,
) -> tuple[str, bytes]:
    """The ITI-41 request the client builds (VIHF by ``pki``, set signed by ``signing``)."""
    now = datetime.now(UTC)
    vihf = signed_vihf(IDENTITY, entry.patient_id, key_of(pki), now=now)
    submission_set = iti41.submission_set_of(entry, source_id="2.25.1", now=now)
    return iti41.request(
        entry,
        submission_set,
        content,
        vihf=vihf,
        endpoint="https://127.0.0.1/repository",
        message_id=f"urn:uuid:{uuid.uuid4()}",
        replaces=replaces,
        signing=key_of(signing or pki) if signed else None,
    )


@dataclass
class Package:
    """An MTOM package taken apart: the SOAP root (parsed) and the other parts by cid."""

    root: etree._Element
    parts: dict[str, bytes]
    root_type: str = 'application/xop+xml; charset=UTF-8; type="application/soap+xml"'
    extra_headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, content_type: str, body: bytes) -> Package:
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
        parts = [p for p in message.get_payload() if isinstance(p, Message)]
        data = {_cid(p): p.get_payload(decode=True) for p in parts}
        root = etree.fromstring(data.pop(_cid(parts[0])))
        return cls(root, {k: v for k, v in data.items() if isinstance(v, bytes)})

    def one(self, path: str) -> etree._Element:
        [found] = self.root.xpath(path, namespaces=NS)
        assert isinstance(found, etree._Element)
        return found

    def drop(self, path: str) -> Package:
        for found in self.root.xpath(path, namespaces=NS):
            found.getparent().remove(found)
        return self

    def document_of(self, entry_id: str) -> str:
        """The cid of the part attached to the ExtrinsicObject ``entry_id``."""
        href = self.one(f"//xdsb:Document[@id='{entry_id}']/xop:Include").get("href")
        return str(href).removeprefix("cid:")

    def wire(self) -> tuple[str, bytes]:
        soap = etree.tostring(self.root, xml_declaration=True, encoding="UTF-8")
        chunks = [_part(self.root_type, "root@oracle", soap)]
        chunks += [_part("text/xml", cid, data) for cid, data in self.parts.items()]
        body = b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()
        content_type = (
            f'multipart/related; boundary="{BOUNDARY}"; type="application/xop+xml"; '
            f'start="<root@oracle>"; start-info="application/soap+xml"'
        )
        return content_type, body


def _cid(part: Message) -> str:
    return str(part.get("Content-ID", "")).strip().removeprefix("<").removesuffix(">")


def _part(content_type: str, cid: str, data: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n"
        f"Content-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n"
    )
    return head.encode() + data + b"\r\n"


def package(pki: SandboxPki, **options: object) -> Package:
    return Package.of(*client_request(pki, **options))  # type: ignore[arg-type]


def entry_path(path: str = "") -> str:
    """XPath of the clinical DocumentEntry (not the signature entry), then ``path``."""
    return f"//rim:ExtrinsicObject[rim:ExternalIdentifier/@value='{DOC_ID}']{path}"


SET = "//rim:RegistryPackage"


def resign(
    assertion: etree._Element, pki: SandboxPki, edit: Callable[[etree._Element], None]
) -> etree._Element:
    """The VIHF ``assertion`` changed by ``edit`` and signed again with ``pki``'s key."""
    copy = etree.fromstring(etree.tostring(assertion))
    signature = copy.find("ds:Signature", NS)
    assert signature is not None
    placeholder = etree.Element(
        f"{{{NS['ds']}}}Signature", Id="placeholder", nsmap={"ds": NS["ds"]}
    )
    signature.addprevious(placeholder)
    copy.remove(signature)
    edit(copy)
    signer = XMLSigner(
        signature_algorithm=SignatureMethod.RSA_SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    return signer.sign(
        copy,
        key=pki.client_key.read_bytes(),
        cert=pki.client_cert.read_bytes().decode(),
        reference_uri=f"#{copy.get('ID')}",
        id_attribute="ID",
    )


def replace_vihf(pack: Package, assertion: etree._Element) -> Package:
    old = pack.one("//wsse:Security/saml:Assertion")
    old.getparent().replace(old, assertion)
    return pack


def set_document(pack: Package, entry_id: str, data: bytes) -> Package:
    """Attach ``data`` to ``entry_id``, its hash and size slots following."""
    pack.parts[pack.document_of(entry_id)] = data
    entry = f"//rim:ExtrinsicObject[@id='{entry_id}']"
    pack.one(f"{entry}/rim:Slot[@name='hash']/rim:ValueList/rim:Value").text = hashlib.sha1(
        data, usedforsecurity=False
    ).hexdigest()
    pack.one(f"{entry}/rim:Slot[@name='size']/rim:ValueList/rim:Value").text = str(len(data))
    return pack


def refusal(answer: tuple[int, bytes]) -> tuple[str, str]:
    """(errorCode, codeContext) of a RegistryResponse Failure with one error."""
    status, body = answer
    assert status == 200
    response = etree.fromstring(body).find(".//rs:RegistryResponse", NS)
    assert response is not None
    assert response.get("status", "").endswith(":Failure")
    [error] = response.iterfind("rs:RegistryErrorList/rs:RegistryError", NS)
    return str(error.get("errorCode")), str(error.get("codeContext"))


def success(answer: tuple[int, bytes]) -> bool:
    status, body = answer
    response = etree.fromstring(body).find(".//rs:RegistryResponse", NS)
    return (
        status == 200 and response is not None and response.get("status", "").endswith(":Success")
    )


def fault(answer: tuple[int, bytes]) -> tuple[str, str, str]:
    """(Code value, Subcode value, Reason) of a SOAP 1.2 Fault answered HTTP 400."""
    status, body = answer
    assert status == 400
    root = etree.fromstring(body)
    return (
        root.findtext(".//s:Fault/s:Code/s:Value", "", NS),
        root.findtext(".//s:Fault/s:Code/s:Subcode/s:Value", "", NS),
        root.findtext(".//s:Fault/s:Reason/s:Text", "", NS),
    )
