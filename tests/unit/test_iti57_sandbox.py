"""The DMP sandbox's ITI-57 endpoint (sandboxes.dmp_update) judging what the client builds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree

from consumers.dmp import visibility
from consumers.dmp.submission import Answer, DmpRejected, read_answer
from consumers.dmp.visibility_lifts import PURPOSE, VisibilityLifts
from consumers.ihe import iti18, iti57
from consumers.ihe.vihf import signed_vihf
from domain.xds.codes import CONFIDENTIALITY_CODES
from domain.xds.ebrim import WSSE
from domain.xds.metadata import document_entry
from ops.demo.samples import DOMINIQUE, LAB, SARAH_LOU, cda
from relais.contracts import Codec
from relais.envelope import seal
from sandboxes.dmp import DmpSandbox
from sandboxes.dmp_registry import REPOSITORY_UNIQUE_ID
from sandboxes.dmp_update import UPDATES, UpdateRefused, Versions, apply_update, read_update
from sandboxes.pki import SandboxPki, write_test_pki
from tests.unit.test_dmp_sandbox import IDENTITY, key_of, package
from tests.unit.test_visibility import KEYRING, Recorder

DOC_ID = "1.2.250.1.213.1.1.9.4242.115022000571"
CONTENT = cda(LAB, DOMINIQUE, DOC_ID, "texte")
FILED = document_entry(CONTENT, {"INVISIBLE_PATIENT": True})
VISIBLE = iti57.without(FILED, "INVISIBLE_PATIENT")
SOAP12 = "application/soap+xml"
Client = TestClient[web.Request, web.Application]
Served = tuple[DmpSandbox, Client, Versions]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=IDENTITY.structure_id)


@pytest.fixture
async def served(pki: SandboxPki) -> AsyncIterator[Served]:
    """A sandbox holding the document, filed invisible to the patient, over HTTP."""
    sandbox = DmpSandbox(pki.ca_cert)
    status, _ = sandbox.file(*package(pki, FILED, CONTENT))
    assert status == 200
    assert DOC_ID in sandbox.filed
    app = sandbox.app()
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield sandbox, client, app[UPDATES]
    finally:
        await client.close()


def body(
    pki: SandboxPki,
    lid: str,
    previous: str,
    patient: str | None = None,
    repository: str = REPOSITORY_UNIQUE_ID,
) -> bytes:
    vihf = signed_vihf(IDENTITY, patient or FILED.patient_id, key_of(pki), now=datetime.now(UTC))
    return iti57.update_document_set(
        iti57.Update(VISIBLE, lid, previous, repository),
        source_id="2.25.1",
        submission_time="20261207090000",
        vihf=vihf,
        to="https://127.0.0.1/registry",
    )


async def post(client: Client, data: bytes) -> Answer:
    """The registry's answer as the DMP client reads it (DmpRejected when refused)."""
    response = await client.post("/registry", data=data, headers={"Content-Type": SOAP12})
    return read_answer(response.status, SOAP12, await response.read())


async def test_the_right_update_makes_a_new_version_visible_to_the_patient(
    pki: SandboxPki, served: Served
) -> None:
    sandbox, client, versions = served
    first = sandbox.filed[DOC_ID].entry_uuid
    assert versions.patient_visible(DOC_ID) is None  # never updated
    assert (await post(client, body(pki, first, "1"))).status == "success"
    current = versions.current(DOC_ID)
    assert current is not None
    assert current.entry_uuid != first
    assert current.lid == first
    assert current.number == 2
    assert current.confidentiality == ("N",)
    assert versions.patient_visible(DOC_ID) is True
    assert versions.by_entry[first].status == "Deprecated"
    # the registry keeps both versions: the new one Approved, the old one Deprecated
    assert sandbox.filed[DOC_ID].entry_uuid == current.entry_uuid
    assert sandbox.deprecated[first].status == "Deprecated"
    answer = await ask(pki, client, "LeafClass")
    assert answer.entry_uuids == (current.entry_uuid,)  # only the Approved one
    assert answer.current == iti18.Found(
        current.entry_uuid, first, "2", "Approved", REPOSITORY_UNIQUE_ID, ("N",)
    )
    old = next(v for v in answer.versions if v.entry_uuid == first)
    assert (old.status, old.lid, old.version) == ("Deprecated", first, "1")
    assert old.confidentiality == ("N", "INVISIBLE_PATIENT")
    refs = await ask(pki, client, "ObjectRef")  # every version, without a status
    assert set(refs.entry_uuids) == {first, current.entry_uuid}


async def ask(pki: SandboxPki, client: Client, return_type: str) -> iti18.Answer:
    """ITI-18 GetDocuments by the document's uniqueId."""
    security = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    security.append(signed_vihf(IDENTITY, FILED.patient_id, key_of(pki), now=datetime.now(UTC)))
    query = iti18.get_documents(
        (DOC_ID,), to="https://127.0.0.1/registry", security=security, return_type=return_type
    )
    response = await client.post("/registry", data=query, headers={"Content-Type": SOAP12})
    return iti18.read_answer(await response.read())


async def test_the_repository_must_be_named_and_be_the_documents(
    pki: SandboxPki, served: Served
) -> None:
    sandbox, client, versions = served
    first = sandbox.filed[DOC_ID].entry_uuid
    with pytest.raises(DmpRejected) as other:
        await post(client, body(pki, first, "1", repository="1.2.3.4.5"))
    assert other.value.code == "XDSMetadataUpdateError"
    missing = read_update(body(pki, first, "1"))
    with pytest.raises(UpdateRefused) as refused:
        apply_update(
            versions, sandbox, replace(missing, repository_unique_id=None), FILED.patient_id
        )
    assert refused.value.code == "XDSRegistryMetadataError"
    assert versions.updates == 0


async def test_the_lid_of_a_later_update_is_the_first_versions(
    pki: SandboxPki, served: Served
) -> None:
    sandbox, client, _ = served
    first = sandbox.filed[DOC_ID].entry_uuid
    assert (await post(client, body(pki, first, "1"))).status == "success"
    second = sandbox.filed[DOC_ID].entry_uuid
    with pytest.raises(DmpRejected) as refused:  # the current entryUUID is not the lid
        await post(client, body(pki, second, "2"))
    assert refused.value.code == "XDSMetadataUpdateError"
    assert (await post(client, body(pki, first, "2"))).status == "success"


async def test_a_stale_previous_version_is_refused(pki: SandboxPki, served: Served) -> None:
    sandbox, client, versions = served
    first = sandbox.filed[DOC_ID].entry_uuid
    with pytest.raises(DmpRejected) as refused:
        await post(client, body(pki, first, "2"))
    assert refused.value.code == "XDSMetadataVersionError"
    assert (await post(client, body(pki, first, "1"))).status == "success"
    with pytest.raises(DmpRejected) as again:  # version 1 is deprecated now
        await post(client, body(pki, first, "1"))
    assert again.value.code == "XDSMetadataVersionError"
    assert (await post(client, body(pki, first, "2"))).status == "success"
    assert versions.current(DOC_ID).number == 3  # type: ignore[union-attr]


async def test_an_unknown_lid_or_another_patient_is_refused(
    pki: SandboxPki, served: Served
) -> None:
    sandbox, client, versions = served
    with pytest.raises(DmpRejected) as unknown:
        await post(client, body(pki, "urn:uuid:00000000-0000-4000-8000-000000000057", "1"))
    assert unknown.value.code == "XDSMetadataUpdateError"
    first = sandbox.filed[DOC_ID].entry_uuid
    other = f"{SARAH_LOU.ins}^^^&1.2.250.1.213.1.4.10&ISO^NH"
    with pytest.raises(DmpRejected) as foreign:
        await post(client, body(pki, first, "1", patient=other))
    assert foreign.value.code == "XDSPatientIdDoesNotMatch"
    assert versions.refusals == 2
    assert versions.patient_visible(DOC_ID) is None


async def test_a_tampered_vihf_is_a_fault_and_an_outage_a_503(
    pki: SandboxPki, served: Served
) -> None:
    sandbox, client, versions = served
    first = sandbox.filed[DOC_ID].entry_uuid
    tampered = body(pki, first, "1").replace(b"DEMO Biologiste", b"DEMO Biologist")
    response = await client.post("/registry", data=tampered, headers={"Content-Type": SOAP12})
    assert response.status == 400
    assert b"Fault" in await response.read()
    sandbox.unavailable = True
    response = await client.post("/registry", data=body(pki, first, "1"))
    assert response.status == 503
    assert versions.updates == 0


def test_a_deleted_document_cannot_be_updated(pki: SandboxPki) -> None:
    sandbox = DmpSandbox(pki.ca_cert)
    sandbox.file(*package(pki, FILED, CONTENT))
    first = sandbox.filed[DOC_ID].entry_uuid
    sandbox.filed[DOC_ID] = replace(sandbox.filed[DOC_ID], status="Deleted")
    with pytest.raises(UpdateRefused) as refused:
        apply_update(Versions(), sandbox, read_update(body(pki, first, "1")), FILED.patient_id)
    assert refused.value.code == "XDSMetadataUpdateError"


async def test_a_body_outside_the_ebrs_schema_is_a_fault(pki: SandboxPki, served: Served) -> None:
    sandbox, client, versions = served
    good = body(pki, sandbox.filed[DOC_ID].entry_uuid, "1")
    assert b"<rim:RegistryObjectList>" in good
    bad = good.replace(b"<rim:RegistryObjectList>", b"<rim:RegistryObjectList><rim:Bogus/>")
    response = await client.post("/registry", data=bad, headers={"Content-Type": SOAP12})
    assert response.status == 400
    assert b"lcm.xsd" in await response.read()
    assert versions.updates == 0


class SandboxDmp:
    """The DMP client as the visibility lifts use it, talking to the sandbox over HTTP."""

    def __init__(self, pki: SandboxPki, client: Client) -> None:
        self.pki, self.client = pki, client

    async def current(self, unique_id: str, *_: Any) -> iti18.Found | None:
        assert unique_id == DOC_ID
        return (await ask(self.pki, self.client, "LeafClass")).current

    async def update(self, update: iti57.Update, patient_id: str, *_: Any) -> Answer:
        vihf = signed_vihf(IDENTITY, patient_id, key_of(self.pki), now=datetime.now(UTC))
        request = iti57.update_document_set(
            update,
            source_id="2.25.1",
            submission_time="20261207090000",
            vihf=vihf,
            to="https://127.0.0.1/registry",
        )
        return await post(self.client, request)


async def test_td33b_keeps_a_code_the_current_version_gained(
    pki: SandboxPki, served: Served
) -> None:
    """Someone masked the document from professionals after the filing (version 2): the
    lift makes version 3 visible to the patient and still masked (codes of version 2)."""
    sandbox, client, versions = served
    first = sandbox.filed[DOC_ID].entry_uuid
    masque = next(c for c in CONFIDENTIALITY_CODES.concepts if c.code == "MASQUE_PS")
    masked = iti57.with_confidentiality(FILED, (*FILED.confidentiality, masque))
    vihf = signed_vihf(IDENTITY, FILED.patient_id, key_of(pki), now=datetime.now(UTC))
    td33a = iti57.update_document_set(
        iti57.Update(masked, first, "1", REPOSITORY_UNIQUE_ID),
        source_id="2.25.2",
        submission_time="20261207090000",
        vihf=vihf,
        to="https://127.0.0.1/registry",
    )
    assert (await post(client, td33a)).status == "success"
    assert versions.current(DOC_ID).confidentiality == ("N", "INVISIBLE_PATIENT", "MASQUE_PS")  # type: ignore[union-attr]
    release = datetime(2026, 12, 22, 9, 0, tzinfo=UTC)
    request = {
        "request_id": "req-1",
        "event_id": "evt-1",
        "submitted_at": release - timedelta(days=15),
        "flags": {},
        "release": {"patient_visible_from": release},
        "document": {"unique_id": DOC_ID, "action": "SUBMIT"},
        "patient": {"patient_key": "a" * 64},
    }
    sealed = seal(
        KEYRING, visibility.payload(FILED.patient_id, FILED), event_id="evt-1", purpose=PURPOSE
    )
    fields = visibility.envelope_fields(sealed)
    lift = visibility.lift_of(request, FILED, fields, key="a" * 64, now=release)
    assert lift is not None
    held = VisibilityLifts(
        bootstrap="localhost:1", prefix="t", keyring=KEYRING, client=SandboxDmp(pki, client),  # type: ignore[arg-type]
        loop=Recorder(), codec=Codec(), input_topic="in", clock=lambda: release,  # type: ignore[arg-type]
    )  # fmt: skip
    held.lifts = {0: {lift.request_id: lift}}
    await held.tick()
    assert next(iter(held.lifts[0].values())).outcome == "DELIVERED"
    current = versions.current(DOC_ID)
    assert current is not None
    assert (current.number, current.lid) == (3, first)
    assert current.confidentiality == ("N", "MASQUE_PS")  # visible, still masked
    assert versions.patient_visible(DOC_ID) is True
