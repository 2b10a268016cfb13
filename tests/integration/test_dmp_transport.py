"""The DMP client and the DMP sandbox over real mutual TLS on 127.0.0.1 (no broker needed)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from consumers.dmp.client import DmpClient, DmpConfig
from consumers.dmp.submission import Answer, DmpRejected, DmpUnavailable, Submission, patient_cx
from domain.xds.metadata import document_entry
from ops.demo.samples import DOMINIQUE, LAB, cda
from relais.settings import Settings, SettingsError
from sandboxes.dmp import DmpSandbox, client_environment, start_sandbox
from sandboxes.pki import SandboxPki, write_test_pki

INS_TEST = "1.2.250.1.213.1.4.10"
DOC_ID = "1.2.250.1.213.1.1.9.4242.115022000077"


def submission(
    unique_id: str = DOC_ID, text: str = "texte", parent: str | None = None
) -> Submission:
    content = cda(LAB, DOMINIQUE, unique_id, text)
    return Submission(
        unique_id=unique_id,
        patient_id=patient_cx(DOMINIQUE.ins, INS_TEST),
        type_code="11502-2",
        content=content,
        metadata=document_entry(content, {}),
        parent_unique_id=parent,
    )


@dataclass
class Dmp:
    sandbox: DmpSandbox
    pki: SandboxPki
    url: str

    def settings(self, **changes: str) -> Settings:
        return Settings.from_env({**client_environment(self.pki, self.url), **changes})


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    """A PKI the sandbox does not trust (and whose CA did not issue the sandbox's cert)."""
    return write_test_pki(tmp_path_factory.mktemp("foreign"), structure_id="1120459876")


@pytest.fixture
async def dmp(tmp_path: Path) -> AsyncIterator[Dmp]:
    pki = write_test_pki(tmp_path / "pki", structure_id="1120459876")
    runner, sandbox, port = await start_sandbox("127.0.0.1", 0, tmp_path / "store", pki=pki)
    try:
        yield Dmp(sandbox, pki, f"https://127.0.0.1:{port}/repository")
    finally:
        await runner.cleanup()


async def test_a_document_filed_twice_is_stored_once(dmp: Dmp) -> None:
    client = DmpClient(DmpConfig.from_settings(dmp.settings()))
    try:
        assert await client.file(submission()) == Answer("success")
        assert await client.file(submission()) == Answer(
            "duplicate", "XDSDuplicateUniqueIdInRegistry"
        )
    finally:
        await client.close()
    assert list(dmp.sandbox.filed) == [DOC_ID]
    assert dmp.sandbox.submissions[DOC_ID] == 2
    assert dmp.sandbox.resent[DOC_ID] == 1
    assert dmp.sandbox.content[DOC_ID] == submission().content
    assert dmp.sandbox.filed[DOC_ID].structure_id == "1120459876"


async def test_a_replacement_and_a_refusal_with_its_xds_code(dmp: Dmp) -> None:
    client = DmpClient(DmpConfig.from_settings(dmp.settings()))
    try:
        await client.file(submission())
        new_id = DOC_ID + "1"
        assert await client.file(submission(new_id, "corrigé", parent=DOC_ID)) == Answer("success")
        changed = replace(submission(), content=submission().content + b"<!-- v2 -->")
        with pytest.raises(DmpRejected) as caught:
            await client.file(replace(changed, metadata=document_entry(changed.content, {})))
    finally:
        await client.close()
    assert dmp.sandbox.filed[new_id].replaces == DOC_ID
    assert dmp.sandbox.filed[DOC_ID].status == "Deprecated"
    assert caught.value.code == "XDSNonIdenticalHash"
    assert caught.value.retriable is False


async def test_a_client_without_a_certificate_is_refused(dmp: Dmp) -> None:
    health = dmp.url.replace("/repository", "/health")
    context = ssl.create_default_context(cafile=str(dmp.pki.ca_cert))  # trusts, shows no cert
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(health) as response:
                await response.read()
    context.load_cert_chain(dmp.pki.client_cert, dmp.pki.client_key)  # the same, with the cert
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(connector=connector) as session, session.get(health) as ok:
        assert ok.status == 200
    assert dmp.sandbox.submissions == {}


async def test_a_client_certificate_from_another_ca_is_refused(
    dmp: Dmp, foreign: SandboxPki
) -> None:
    settings = dmp.settings(
        RELAIS_DMP_CLIENT_CERT=str(foreign.client_cert),
        RELAIS_DMP_CLIENT_KEY=str(foreign.client_key),
    )
    client = DmpClient(DmpConfig.from_settings(settings))
    try:
        with pytest.raises(DmpUnavailable) as caught:
            await client.file(submission())
    finally:
        await client.close()
    assert caught.value.code in {"TLSFailure", "Unreachable"}
    assert not dmp.sandbox.filed


async def test_a_server_the_client_does_not_trust_is_not_sent_anything(
    dmp: Dmp, foreign: SandboxPki
) -> None:
    client = DmpClient(
        DmpConfig.from_settings(dmp.settings(RELAIS_DMP_CA_FILE=str(foreign.ca_cert)))
    )
    try:
        with pytest.raises(DmpUnavailable) as caught:
            await client.file(submission())
    finally:
        await client.close()
    assert caught.value.code == "TLSFailure"
    assert not dmp.sandbox.filed


async def test_a_dmp_that_is_down_is_unavailable(dmp: Dmp, tmp_path: Path) -> None:
    closed = web.AppRunner(web.Application())
    await closed.setup()
    site = web.TCPSite(closed, "127.0.0.1", 0)
    await site.start()
    port = int(closed.addresses[0][1])
    await closed.cleanup()  # nothing listens there any more
    settings = dmp.settings(RELAIS_DMP_URL=f"https://127.0.0.1:{port}/repository")
    client = DmpClient(DmpConfig.from_settings(settings))
    try:
        with pytest.raises(DmpUnavailable) as caught:
            await client.file(submission())
    finally:
        await client.close()
    assert caught.value.retriable


def test_the_sink_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        DmpConfig.from_settings(Settings.from_env({}))
    for name in ("RELAIS_DMP_CLIENT_CERT", "RELAIS_DMP_STRUCTURE_ID", "RELAIS_DMP_SOURCE_ID"):
        assert name in str(caught.value)
    pki = write_test_pki(tmp_path, structure_id="1120459876")
    plain = {**client_environment(pki, "http://127.0.0.1:1/repository")}
    with pytest.raises(SettingsError, match="https://"):
        DmpConfig.from_settings(Settings.from_env(plain))
    missing = {**client_environment(pki, "https://x/r"), "RELAIS_DMP_CLIENT_KEY": "/nonexistent"}
    with pytest.raises(SettingsError, match="RELAIS_DMP_CLIENT_KEY"):
        DmpConfig.from_settings(Settings.from_env(missing))
