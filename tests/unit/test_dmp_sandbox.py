"""The DMP sandbox's checks of ITI-41 requests, and how the DMP sink reads its answers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from consumers.dmp.submission import (
    Answer,
    DmpError,
    DmpRejected,
    DmpUnavailable,
    read_answer,
)
from consumers.ihe import iti41
from consumers.ihe.iti41 import NS, RegistryError, SoapFault
from consumers.ihe.vihf import Role, SigningKey, VihfIdentity, signed_vihf
from domain.xds.ebrim import SUBMISSION_SET_NODE, Scheme
from domain.xds.metadata import DocumentEntry, document_entry
from ops.demo.samples import DOMINIQUE, LAB, SARAH_LOU, cda
from sandboxes import dmp_answers
from sandboxes.dmp import DmpSandbox
from sandboxes.pki import SandboxPki, write_test_pki

INS_TEST = "1.2.250.1.213.1.4.10"
DOC_ID = "1.2.250.1.213.1.1.9.4242.115022000001"
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
SOAP12 = "application/soap+xml"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=IDENTITY.structure_id)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    """Another CA's structure certificate: the sandbox does not trust it."""
    return write_test_pki(tmp_path_factory.mktemp("foreign"), structure_id="1999999999")


def key_of(pki: SandboxPki) -> SigningKey:
    return SigningKey(pki.client_cert.read_bytes(), pki.client_key.read_bytes())


def package(
    pki: SandboxPki,
    entry: DocumentEntry = ENTRY,
    content: bytes = CONTENT,
    *,
    replaces: str | None = None,
    vihf_patient: str | None = None,
    edit: Callable[[bytes], bytes] | None = None,
) -> tuple[str, bytes]:
    """An ITI-41 request as the DMP client builds it (``edit`` changes the envelope)."""
    now = datetime.now(UTC)
    vihf = signed_vihf(IDENTITY, vihf_patient or entry.patient_id, key_of(pki), now=now)
    submission_set = iti41.submission_set_of(entry, source_id="2.25.1", now=now)
    content_type, body = iti41.request(
        entry,
        submission_set,
        content,
        vihf=vihf,
        endpoint="https://127.0.0.1/repository",
        message_id="urn:uuid:0f6b1e1c-7d36-4c43-8a6e-2b5a8d0f4b11",
        replaces=replaces,
        signing=key_of(pki),  # the DMP wants the submission set signed (IHE DSG)
    )
    if edit is not None:
        head, sep, rest = body.partition(b"<?xml")
        envelope, marker, tail = rest.partition(b"\r\n--MIMEBoundary_")
        body = head + edit(sep + envelope) + marker + tail
    return content_type, body


def answer(sandbox: DmpSandbox, content_type: str, body: bytes) -> iti41.RegistryResponse:
    status, reply = sandbox.file(content_type, body)
    assert status == 200
    return iti41.read_response(SOAP12, reply)


def error_of(sandbox: DmpSandbox, content_type: str, body: bytes) -> RegistryError:
    response = answer(sandbox, content_type, body)
    assert response.status == "Failure"
    [error] = response.errors
    return error


def fault_of(sandbox: DmpSandbox, content_type: str, body: bytes) -> SoapFault:
    status, reply = sandbox.file(content_type, body)
    assert status == 400
    with pytest.raises(SoapFault) as caught:
        iti41.read_response(SOAP12, reply)
    assert caught.value.code == "Sender"
    return caught.value


def described(content: bytes) -> tuple[DocumentEntry, bytes]:
    return document_entry(content, {}), content


# filing --------------------------------------------------------------------------------


def test_files_a_good_submission(pki: SandboxPki, tmp_path: Path) -> None:
    sandbox = DmpSandbox(pki.ca_cert, tmp_path)
    assert answer(sandbox, *package(pki)) == iti41.RegistryResponse("Success")
    filed = sandbox.filed[DOC_ID]
    assert filed.patient_id == f"{DOMINIQUE.ins}^^^&{INS_TEST}&ISO^NH"
    assert filed.type_code == "11502-2"
    assert filed.entry_uuid.startswith("urn:uuid:")  # the DMP's own, not the proposed one
    assert filed.entry_uuid != iti41.entry_uuid(DOC_ID)
    assert filed.structure_id == IDENTITY.structure_id
    assert (filed.size_bytes, filed.sha1) == (len(CONTENT), ENTRY.hash_sha1)
    assert sandbox.content[DOC_ID] == CONTENT
    assert sandbox.submissions[DOC_ID] == 1
    stored = sorted(p.name.split(".", 1)[1] for p in tmp_path.iterdir())
    assert stored == ["json", "metadata.xml", "xml"]


def test_a_resend_is_answered_success_and_stored_once(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    answer(sandbox, *package(pki))
    again = answer(sandbox, *package(pki))
    assert again.status == "Success"
    assert [e.code for e in again.errors] == ["XDSDuplicateUniqueIdInRegistry"]
    assert again.errors[0].severity == "Warning"
    assert (len(sandbox.filed), sandbox.submissions[DOC_ID], sandbox.resent[DOC_ID]) == (1, 2, 1)


def test_another_document_under_a_held_unique_id_is_refused(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    answer(sandbox, *package(pki))
    entry, content = described(CONTENT + b"<!-- another version -->")
    assert error_of(sandbox, *package(pki, entry, content)).code == "XDSNonIdenticalHash"
    assert sandbox.content[DOC_ID] == CONTENT
    assert sandbox.rejections == 1


def test_a_replacement_deprecates_the_document_it_replaces(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    answer(sandbox, *package(pki))
    new_id = DOC_ID + "2"
    entry, content = described(cda(LAB, DOMINIQUE, new_id, "texte corrigé"))
    orphan = package(pki, entry, content, replaces=DOC_ID + "9")
    assert error_of(sandbox, *orphan).code == "UnresolvedReferenceException"
    parent = sandbox.filed[DOC_ID].entry_uuid  # the entryUUID the DMP assigned
    assert answer(sandbox, *package(pki, entry, content, replaces=parent)).status == "Success"
    assert sandbox.filed[new_id].replaces == DOC_ID
    assert sandbox.filed[DOC_ID].status == "Deprecated"
    third = document_entry(cda(LAB, DOMINIQUE, DOC_ID + "3", "x"), {})
    content3 = cda(LAB, DOMINIQUE, DOC_ID + "3", "x")
    refused = error_of(sandbox, *package(pki, third, content3, replaces=parent))
    assert "deprecated" in refused.context


def test_a_replacement_for_another_patient_is_refused(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    answer(sandbox, *package(pki))
    entry, content = described(cda(LAB, SARAH_LOU, DOC_ID + "2", "texte"))
    parent = sandbox.filed[DOC_ID].entry_uuid
    error = error_of(sandbox, *package(pki, entry, content, replaces=parent))
    assert error.code == "XDSPatientIdDoesNotMatch"


# the envelope and the VIHF --------------------------------------------------------------


def test_not_mtom_is_a_fault(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    _, body = package(pki)
    assert fault_of(sandbox, "application/soap+xml", body).subcode == "rim:InvalidRequestException"
    assert fault_of(sandbox, "multipart/related; boundary=x", body).subcode.startswith("rim:")


def test_a_document_without_its_part_is_a_fault(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    content_type, body = package(pki, edit=lambda e: e.replace(b'href="cid:', b'href="cid:x'))
    fault = fault_of(sandbox, content_type, body)
    assert "no MIME part" in fault.reason


def test_a_wrong_action_is_a_fault(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    wrong = package(pki, edit=lambda e: e.replace(b"ProvideAndRegisterDocumentSet-b</", b"x</"))
    assert fault_of(sandbox, *wrong).subcode == "wsa:ActionNotSupported"


def test_a_missing_vihf_is_a_fault(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)

    def strip(envelope: bytes) -> bytes:
        root = etree.fromstring(envelope)
        security = root.find("soap:Header/wsse:Security", NS)
        assert security is not None
        security.getparent().remove(security)  # type: ignore[union-attr]
        return bytes(etree.tostring(root))

    assert fault_of(sandbox, *package(pki, edit=strip)).subcode == "wsse:InvalidSecurity"


def test_a_tampered_vihf_is_a_fault(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    tampered = package(pki, edit=lambda e: e.replace(b">1120459876<", b">1999999999<"))
    fault = fault_of(sandbox, *tampered)
    assert fault.subcode == "wsse:FailedAuthentication"
    assert "signature" in fault.reason


def test_a_vihf_signed_by_another_ca_is_a_fault(pki: SandboxPki, foreign: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    fault = fault_of(sandbox, *package(foreign))
    assert fault.subcode == "wsse:FailedAuthentication"
    assert not sandbox.filed


def test_the_vihf_must_name_the_patient(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    other = f"{SARAH_LOU.ins}^^^&{INS_TEST}&ISO^NH"
    assert error_of(sandbox, *package(pki, vihf_patient=other)).code == "XDSPatientIdDoesNotMatch"


# the metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"patient_id": f"{DOMINIQUE.ins}^^^&1.2.250.1.213.1.4.2&ISO^NH"}, "XDSUnknownPatientId"),
        ({"patient_id": f"{DOMINIQUE.ins}^^^&1.2.3&ISO^NH"}, "XDSUnknownPatientId"),
        ({"patient_id": f"279035121518988^^^&{INS_TEST}&ISO^NH"}, "XDSUnknownPatientId"),
        ({"patient_id": f"{DOMINIQUE.ins}^^^&{INS_TEST}&ISO^PI"}, "XDSUnknownPatientId"),
        ({"hash_sha1": "0" * 40}, "XDSRepositoryMetadataError"),
        ({"size": len(CONTENT) + 1}, "XDSRepositoryMetadataError"),
        ({"unique_id": DOC_ID + "9"}, "XDSRegistryMetadataError"),
        ({"title": ""}, "XDSRegistryMetadataError"),
        ({"author_person": ""}, "XDSRegistryMetadataError"),
        ({"confidentiality": ()}, "XDSRegistryMetadataError"),
    ],
)
def test_metadata_refusals(pki: SandboxPki, change: dict[str, object], code: str) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    entry = replace(ENTRY, **change)  # type: ignore[arg-type]
    error = error_of(sandbox, *package(pki, entry))
    assert error.code == code
    assert DOMINIQUE.ins not in error.context  # contexts never quote patient data
    assert not sandbox.filed


def test_a_code_outside_its_value_set_is_refused(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    entry = replace(ENTRY, class_code=replace(ENTRY.class_code, code="99"))
    error = error_of(sandbox, *package(pki, entry))
    assert error.code == "XDSRegistryMetadataError"
    assert error.context.startswith("DocumentEntry.classCode 99 is not in JDV_J57")


def test_the_cda_must_be_the_described_document(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    other = cda(LAB, SARAH_LOU, DOC_ID, "texte")  # same id, another patient's recordTarget
    entry = replace(document_entry(other, {}), patient_id=ENTRY.patient_id)
    assert error_of(sandbox, *package(pki, entry, other)).code == "XDSPatientIdDoesNotMatch"
    not_cda = b"<x/>"
    entry = replace(ENTRY, hash_sha1=iti41_sha1(not_cda), size=len(not_cda))
    assert "ClinicalDocument" in error_of(sandbox, *package(pki, entry, not_cda)).context


def test_the_submission_set_must_be_there(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)

    def unclassify(envelope: bytes) -> bytes:
        node = SUBMISSION_SET_NODE.encode()
        return envelope.replace(node, b"urn:uuid:00000000-0000-0000-0000-000000000000")

    assert "SubmissionSet" in error_of(sandbox, *package(pki, edit=unclassify)).context

    def drop_source(envelope: bytes) -> bytes:
        return envelope.replace(Scheme.SS_SOURCE_ID.encode(), b"urn:uuid:x")

    assert "sourceId" in error_of(sandbox, *package(pki, edit=drop_source)).context


def test_xxe_is_not_expanded(pki: SandboxPki, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(DOMINIQUE.ins)  # were it expanded, the recordTarget would match
    content = CONTENT.replace(
        b'<?xml version="1.0" encoding="UTF-8"?>',
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'.encode(),
    ).replace(f'extension="{DOMINIQUE.ins}"'.encode(), b'extension="&xxe;"')
    entry = replace(ENTRY, hash_sha1=iti41_sha1(content), size=len(content))
    sandbox = DmpSandbox(pki.ca_cert)
    assert answer(sandbox, *package(pki, entry, content)).status == "Failure"


def iti41_sha1(content: bytes) -> str:
    return hashlib.sha1(content, usedforsecurity=False).hexdigest()


# read_answer ------------------------------------------------------------------------------


def response(*errors: dmp_answers.Error) -> bytes:
    """A RegistryResponse as the DMP sandbox writes it."""
    return dmp_answers.registry_response(errors, relates_to="urn:uuid:1")


#: a Receiver fault with a subcode, as a DMP in maintenance may answer (W3C SOAP 1.2 §5.4)
RECEIVER_FAULT = b"""<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">
  <env:Body><env:Fault>
    <env:Code><env:Value>env:Receiver</env:Value>
      <env:Subcode><env:Value>Maintenance</env:Value></env:Subcode></env:Code>
    <env:Reason><env:Text xml:lang="en">back soon</env:Text></env:Reason>
  </env:Fault></env:Body>
</env:Envelope>"""


def test_success() -> None:
    assert read_answer(200, SOAP12, response()) == Answer("success", None)


def test_an_idempotent_resend_reads_as_duplicate() -> None:
    warning = dmp_answers.Error("XDSDuplicateUniqueIdInRegistry", "held", "Warning")
    assert read_answer(200, SOAP12, response(warning)) == Answer(
        "duplicate", "XDSDuplicateUniqueIdInRegistry"
    )


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_server_errors_are_retriable(status: int) -> None:
    with pytest.raises(DmpUnavailable) as caught:
        read_answer(status, "text/html", b"<html>Bad gateway</html>")
    assert caught.value.retriable is True
    assert caught.value.code == f"HTTP{status}"
    assert isinstance(caught.value, DmpError)


def test_a_receiver_fault_is_retriable_and_keeps_its_subcode() -> None:
    fault = RECEIVER_FAULT
    with pytest.raises(DmpUnavailable) as caught:
        read_answer(500, SOAP12, fault)
    assert caught.value.code == "Maintenance"
    assert "back soon" in str(caught.value)


@pytest.mark.parametrize("code", ["XDSRegistryBusy", "XDSRepositoryOutOfResources"])
def test_busy_registries_are_retriable(code: str) -> None:
    with pytest.raises(DmpUnavailable) as caught:
        read_answer(200, SOAP12, response(dmp_answers.Error(code, "later")))
    assert caught.value.code == code


@pytest.mark.parametrize(
    "code", ["XDSRepositoryMetadataError", "XDSUnknownPatientId", "XDSNonIdenticalHash"]
)
def test_refusals_are_not_retriable(code: str) -> None:
    with pytest.raises(DmpRejected) as caught:
        read_answer(200, SOAP12, response(dmp_answers.Error(code, "why")))
    assert caught.value.code == code
    assert caught.value.retriable is False
    assert "why" in str(caught.value)


def test_a_sender_fault_is_a_refusal_with_its_subcode() -> None:
    fault = dmp_answers.fault("Sender", "wsse:FailedAuthentication", "bad VIHF", relates_to="")
    with pytest.raises(DmpRejected) as caught:
        read_answer(400, SOAP12, fault)
    assert caught.value.code == "wsse:FailedAuthentication"


@pytest.mark.parametrize(
    ("status", "body"), [(200, b""), (200, b"{}"), (200, b"<soap/>"), (302, b"")]
)
def test_an_unreadable_answer_is_retriable(status: int, body: bytes) -> None:
    """The document may or may not be filed: a re-send is harmless, a dead letter is not."""
    with pytest.raises(DmpUnavailable):
        read_answer(status, SOAP12, body)


def test_success_with_a_redirect_status_is_not_success() -> None:
    with pytest.raises(DmpRejected) as caught:
        read_answer(302, SOAP12, response())
    assert caught.value.code == "HTTP302"


# the sandbox over HTTP (the TLS layer is tested in tests/integration) -----------------------


async def test_sandbox_files_lists_and_serves(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    async with TestClient(TestServer(sandbox.app())) as client:
        content_type, body = package(pki)
        reply = await client.post("/repository", data=body, headers={"Content-Type": content_type})
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith(SOAP12)
        assert read_answer(reply.status, SOAP12, await reply.read()) == Answer("success")

        bad = await client.post("/repository", data=body, headers={"Content-Type": "text/xml"})
        assert bad.status == 400
        with pytest.raises(DmpRejected):
            read_answer(bad.status, bad.headers["Content-Type"], await bad.read())

        listing = await (await client.get("/documents")).json()
        assert [d["unique_id"] for d in listing["documents"]] == [DOC_ID]
        assert listing["rejected"] == 1
        stored = await client.get(f"/documents/{DOC_ID}")
        assert await stored.read() == CONTENT
        assert (await client.get("/documents/1.2.3")).status == 404
        assert (await (await client.get("/health")).json()) == {"status": "ok"}
