"""The DMP sandbox's checks, and how the DMP sink reads its answers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.dmp_submission import (
    Answer,
    DmpError,
    DmpRejected,
    DmpUnavailable,
    Submission,
    http_request,
    patient_cx,
    read_answer,
)
from consumers.xds_metadata import document_entry
from relais.demo.samples import DOMINIQUE, LAB, SARAH_LOU, cda
from sandboxes.dmp import DmpSandbox, Filed, Rejected, check

INS_TEST = "1.2.250.1.213.1.4.10"
DOC_ID = "1.2.250.1.213.1.1.9.4242.115022000001"
CONTENT = cda(LAB, DOMINIQUE, DOC_ID, "texte")
GOOD = Submission(
    unique_id=DOC_ID,
    patient_id=patient_cx(DOMINIQUE.ins, INS_TEST),
    type_code="11502-2",
    content=CONTENT,
    metadata=document_entry(CONTENT, {}),
)


def described(submission: Submission) -> Submission:
    """The submission with the DocumentEntry of its (changed) content."""
    return replace(submission, metadata=document_entry(submission.content, {}))


def rejection(headers: dict[str, str], body: bytes) -> Rejected:
    with pytest.raises(Rejected) as caught:
        check(headers, body)
    return caught.value


def code_of(submission: Submission) -> str:
    return rejection(*http_request(submission)).code


# check -----------------------------------------------------------------------


def test_accepts_a_good_submission() -> None:
    headers, body = http_request(GOOD)
    filed = check(headers, body)
    assert isinstance(filed, Filed)
    assert filed.unique_id == DOC_ID
    assert filed.patient_id == f"{DOMINIQUE.ins}^^^&{INS_TEST}&ISO^NH"
    assert filed.type_code == "11502-2"
    assert filed.sha256 == GOOD.sha256
    assert filed.size_bytes == len(CONTENT)
    assert filed.received_at


def test_accepts_an_upper_case_hash() -> None:
    headers, body = http_request(GOOD)
    check({**headers, "X-Content-SHA256": GOOD.sha256.upper()}, body)


@pytest.mark.parametrize("value", [None, ""])
def test_missing_unique_id(value: str | None) -> None:
    headers, body = http_request(GOOD)
    if value is None:
        del headers["X-Document-UniqueId"]
    else:
        headers["X-Document-UniqueId"] = value
    assert rejection(headers, body).code == "MissingUniqueId"


@pytest.mark.parametrize(
    "patient_id",
    [
        "",
        DOMINIQUE.ins,
        f"{DOMINIQUE.ins}^^^&{INS_TEST}&ISO^PI",  # not NH
        f"{DOMINIQUE.ins}^^^&{INS_TEST}",
        f"{DOMINIQUE.ins[:14]}^^^&{INS_TEST}&ISO^NH",  # 14 characters
        f"{DOMINIQUE.ins}9^^^&{INS_TEST}&ISO^NH",  # 16 characters
        f"x{DOMINIQUE.ins}^^^&{INS_TEST}&ISO^NH",
        f"{DOMINIQUE.ins}^^^&{INS_TEST}&ISO^NH\nX-Evil: 1",
        f"{DOMINIQUE.ins}^^^&urn:oid:{INS_TEST}&ISO^NH",
    ],
)
def test_bad_patient_id_format(patient_id: str) -> None:
    assert code_of(replace(GOOD, patient_id=patient_id)) == "InvalidPatientId"


@pytest.mark.parametrize("oid", ["1.2.250.1.213.1.4.2", "1.2.250.1.71.4.2.1", "1.2.3"])
def test_non_ins_oid(oid: str) -> None:
    assert (
        code_of(replace(GOOD, patient_id=patient_cx(DOMINIQUE.ins, oid)))
        == "UnknownPatientIdDomain"
    )


@pytest.mark.parametrize("ins", ["279035121518988", "279035121518990", "379035121518989"])
def test_bad_ins_key(ins: str) -> None:
    exc = rejection(*http_request(replace(GOOD, patient_id=patient_cx(ins, INS_TEST))))
    assert exc.code == "InvalidPatientId"
    assert "key" in exc.detail
    assert ins not in exc.detail


def test_hash_mismatch() -> None:
    headers, body = http_request(GOOD)
    assert rejection(headers, body + b" ").code == "HashMismatch"
    headers["X-Content-SHA256"] = ""
    assert rejection(headers, body).code == "HashMismatch"
    del headers["X-Content-SHA256"]
    assert rejection(headers, body).code == "HashMismatch"


@pytest.mark.parametrize("content", [b"not xml", b"", b"<ClinicalDocument", b"%PDF-1.7"])
def test_not_xml(content: bytes) -> None:
    assert code_of(replace(GOOD, content=content)) == "InvalidDocument"


@pytest.mark.parametrize(
    "content",
    [
        b"<ClinicalDocument/>",
        b'<ClinicalDocument xmlns="urn:other"/>',
        b'<x xmlns="urn:hl7-org:v3"/>',
    ],
)
def test_not_a_clinical_document(content: bytes) -> None:
    exc = rejection(*http_request(replace(GOOD, content=content)))
    assert exc.code == "InvalidDocument"
    assert "ClinicalDocument" in exc.detail


def test_unique_id_mismatch() -> None:
    assert code_of(replace(GOOD, unique_id=DOC_ID + "9")) == "UniqueIdMismatch"
    other = cda(LAB, DOMINIQUE, DOC_ID + "9", "texte")
    assert code_of(replace(GOOD, content=other)) == "UniqueIdMismatch"


def test_record_target_mismatch() -> None:
    assert (
        code_of(replace(GOOD, patient_id=patient_cx(SARAH_LOU.ins, INS_TEST))) == "PatientMismatch"
    )


def test_record_target_must_carry_the_ins_under_the_same_oid() -> None:
    # The CDA carries the INS under the test OID: under the NIR OID it is another identifier.
    nir = patient_cx(DOMINIQUE.ins, "1.2.250.1.213.1.4.8")
    assert code_of(replace(GOOD, patient_id=nir)) == "PatientMismatch"


def test_corsica_ins_is_accepted_by_the_format() -> None:
    number = 1800519004123  # 1 80 05 2A 004 123, 2A read as 19
    ins = f"180052A004123{97 - number % 97:02d}"
    content = CONTENT.replace(DOMINIQUE.ins.encode(), ins.encode())
    submission = described(replace(GOOD, patient_id=patient_cx(ins, INS_TEST), content=content))
    assert check(*http_request(submission)).unique_id == DOC_ID


def test_xxe_is_not_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(DOMINIQUE.ins)  # were it expanded, the recordTarget would match
    content = CONTENT.replace(
        b'<?xml version="1.0" encoding="UTF-8"?>',
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'.encode(),
    ).replace(f'extension="{DOMINIQUE.ins}"'.encode(), b'extension="&xxe;"')
    with pytest.raises(Rejected):
        check(*http_request(replace(GOOD, content=content)))


# read_answer ---------------------------------------------------------------------


def test_success() -> None:
    assert read_answer(200, {"status": "success"}) == Answer("success", None)


def test_duplicate() -> None:
    assert read_answer(200, {"status": "duplicate", "code": "AlreadyFiled"}) == Answer(
        "duplicate", "AlreadyFiled"
    )


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_server_errors_are_retriable(status: int) -> None:
    with pytest.raises(DmpUnavailable) as caught:
        read_answer(status, {})
    assert caught.value.retriable is True
    assert caught.value.code == f"HTTP{status}"
    assert isinstance(caught.value, DmpError)


def test_server_error_keeps_its_code() -> None:
    with pytest.raises(DmpUnavailable) as caught:
        read_answer(503, {"status": "failure", "code": "Maintenance", "detail": "back soon"})
    assert caught.value.code == "Maintenance"
    assert "back soon" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "HashMismatch"), (400, "PatientMismatch"), (409, "DuplicateUniqueId")],
)
def test_refusals_are_not_retriable(status: int, code: str) -> None:
    with pytest.raises(DmpRejected) as caught:
        read_answer(status, {"status": "failure", "code": code, "detail": "why"})
    assert caught.value.code == code
    assert caught.value.retriable is False
    assert "why" in str(caught.value)


def test_a_refusal_without_a_code_is_named_by_its_status() -> None:
    with pytest.raises(DmpRejected) as caught:
        read_answer(400, {})
    assert caught.value.code == "HTTP400"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"status": "failure"}),
        (200, {}),
        (302, {"status": "success"}),
        (201, {"status": "odd"}),
    ],
)
def test_anything_else_is_a_refusal(status: int, body: dict[str, object]) -> None:
    with pytest.raises(DmpRejected):
        read_answer(status, body)


# the sandbox over HTTP (loopback only) ----------------------------------------------


async def test_sandbox_files_lists_and_deduplicates() -> None:
    sandbox = DmpSandbox()
    async with TestClient(TestServer(sandbox.app())) as client:
        headers, body = http_request(GOOD)
        response = await client.post("/documents", data=body, headers=headers)
        assert response.status == 200
        assert await response.json() == {"status": "success"}

        again = await client.post("/documents", data=body, headers=headers)
        assert (await again.json())["status"] == "duplicate"
        assert read_answer(again.status, await again.json()) == Answer("duplicate", "AlreadyFiled")

        other = described(replace(GOOD, content=CONTENT + b"<!-- another version -->"))
        clash = await client.post("/documents", data=other.content, headers=http_request(other)[0])
        assert clash.status == 409
        assert (await clash.json())["code"] == "DuplicateUniqueId"

        bad = await client.post("/documents", data=body + b" ", headers=headers)
        assert bad.status == 400
        assert (await bad.json())["code"] == "HashMismatch"

        listing = await (await client.get("/documents")).json()
        assert [d["unique_id"] for d in listing["documents"]] == [DOC_ID]
        assert listing["rejected"] == 2

        stored = await client.get(f"/documents/{DOC_ID}")
        assert await stored.read() == CONTENT
        assert (await client.get("/documents/1.2.3")).status == 404
        assert (await (await client.get("/health")).json()) == {"status": "ok"}


async def test_sandbox_reads_header_names_case_insensitively() -> None:
    """HTTP header names are case-insensitive (RFC 9110 5.1); proxies and HTTP/2 lower them."""
    async with TestClient(TestServer(DmpSandbox().app())) as client:
        headers, body = http_request(GOOD)
        lowered = {name.lower(): value for name, value in headers.items()}
        response = await client.post("/documents", data=body, headers=lowered)
        assert await response.json() == {"status": "success"}
        assert response.status == 200


def test_metadata_must_describe_this_document() -> None:
    headers, body = http_request(GOOD)
    del headers["X-XDS-Metadata"]
    assert rejection(headers, body).code == "MissingMetadata"
    other = described(replace(GOOD, content=CONTENT + b"<!-- v2 -->"))
    headers, _ = http_request(other)
    assert rejection(headers, body).code in {"HashMismatch", "MetadataMismatch"}
    headers, body = http_request(GOOD)
    wrong = headers["X-XDS-Metadata"].replace('"code": "10"', '"code": "99"')
    assert rejection({**headers, "X-XDS-Metadata": wrong}, body).code == "UnknownCode"
