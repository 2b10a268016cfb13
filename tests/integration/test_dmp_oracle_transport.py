"""The DMP client files into the spec-written DMP sandbox over real mutual TLS.

The sandbox judges the client's request with its own code (envelope, VIHF, ebRS schema,
ANS value sets, the signed submission set) and issues its own entryUUID; the client finds
it back with ITI-18 to replace and delete. And the import contract that keeps the sandbox
independent of the client refuses a sandbox module importing the client.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from consumers.dmp.client import DmpClient, DmpConfig
from consumers.dmp.submission import Answer, Submission, patient_cx
from consumers.ihe import iti41
from domain.xds.metadata import document_entry
from ops.demo.samples import DOMINIQUE, LAB, cda
from relais.settings import Settings
from sandboxes.dmp import DmpSandbox, client_environment, start_sandbox
from sandboxes.pki import SandboxPki, write_test_pki
from tests.integration.test_import_contracts import PACKAGES, REPO, lint_imports, with_import
from tests.shared_data import SHARED_DATA as DATA

INS_TEST = "1.2.250.1.213.1.4.10"
DOC_ID = "1.2.250.1.213.1.1.9.4242.115022000301"


def submission(unique_id: str = DOC_ID, parent: str | None = None) -> Submission:
    content = cda(LAB, DOMINIQUE, unique_id, "texte")
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

    def client(self) -> DmpClient:
        settings = Settings.from_env(client_environment(self.pki, self.url))
        return DmpClient(DmpConfig.from_settings(settings))


@pytest.fixture
async def dmp(tmp_path: Path) -> AsyncIterator[Dmp]:
    pki = write_test_pki(tmp_path / "pki", structure_id="1120459876")
    runner, sandbox, port = await start_sandbox("127.0.0.1", 0, pki=pki, data_dir=DATA)
    try:
        yield Dmp(sandbox, pki, f"https://127.0.0.1:{port}/repository")
    finally:
        await runner.cleanup()


async def test_the_client_files_and_the_oracle_accepts(dmp: Dmp) -> None:
    assert dmp.sandbox.oracle.require_signed_submission  # the DMP's rule, not relaxed
    client = dmp.client()
    try:
        assert await client.file(submission()) == Answer("success")
    finally:
        await client.close()
    filed = dmp.sandbox.filed[DOC_ID]
    assert dmp.sandbox.rejections == 0
    assert filed.entry_uuid != iti41.entry_uuid(DOC_ID)  # the sandbox's own
    assert filed.structure_id == "1120459876"
    assert dmp.sandbox.content[DOC_ID] == submission().content


async def test_the_client_replaces_by_the_entry_uuid_it_finds(dmp: Dmp) -> None:
    client = dmp.client()
    try:
        await client.file(submission())
        new_id = DOC_ID + "1"
        assert await client.file(submission(new_id, parent=DOC_ID)) == Answer("success")
    finally:
        await client.close()
    assert dmp.sandbox.queries >= 1  # it asked the registry (ITI-18) for the entryUUID
    assert dmp.sandbox.filed[new_id].replaces == DOC_ID
    assert dmp.sandbox.filed[DOC_ID].status == "Deprecated"


def test_a_sandbox_importing_the_client_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    bad = with_import(root, "sandboxes/dmp_checks.py", "import consumers.ihe.iti41")
    result = lint_imports(bad)
    assert result.returncode != 0
    assert "sandboxes is not allowed to import consumers" in result.stdout
