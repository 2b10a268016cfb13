"""TD0.2 before feeding: the query, each answer of the sandbox's DMP, what it becomes, the cache.

The client's TD0.2 (consumers.dmp.td02) and the sandbox's (sandboxes.dmp_services) are
written apart; here the one's query goes through the other's service and back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from cryptography import x509
from lxml import etree

from consumers.dmp import td02
from consumers.dmp.business_ack import business_ack
from consumers.dmp.client import DmpClient, DmpConfig
from consumers.dmp.error_codes import decide
from consumers.dmp.status import StatusCache, verdict
from consumers.dmp.submission import DmpRejected, DmpUnavailable, ins_of, patient_cx
from consumers.ihe.vihf import Role, SigningKey, VihfIdentity, signed_vihf
from domain.xds import ebrim
from relais.settings import Settings
from sandboxes.dmp import DmpSandbox, client_environment, start_sandbox
from sandboxes.dmp_services import Authenticate, DmpState, PatientStatuses, serve
from sandboxes.dmp_xml import NS
from sandboxes.pki import SandboxPki, write_test_pki
from tests.unit.test_dmp_oracle_kit import DATA, resign

INS, OID = "279035121518989", "1.2.250.1.213.1.4.10"
PATIENT = patient_cx(INS, OID)
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
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


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=IDENTITY.structure_id)


@pytest.fixture(scope="module")
def checks(pki: SandboxPki) -> Authenticate:
    """The sandbox's own VIHF checks (those of ITI-41 and ITI-57)."""
    return DmpSandbox(pki.ca_cert, data_dir=DATA)._authenticated


def vihf(pki: SandboxPki, patient: str = PATIENT) -> etree._Element:
    key = SigningKey(pki.client_cert.read_bytes(), pki.client_key.read_bytes())
    return signed_vihf(IDENTITY, patient, key, now=datetime.now(UTC))


def query(
    pki: SandboxPki, patient: str = PATIENT, assertion: etree._Element | None = None
) -> bytes:
    security = etree.Element(f"{{{ebrim.WSSE}}}Security", nsmap={"wsse": ebrim.WSSE})
    security.append(vihf(pki, patient) if assertion is None else assertion)
    ins, oid = ins_of(PATIENT)
    return td02.request(
        ins, oid, to="https://dmp/patients", source_id="2.25.42", now=NOW, security=security
    )


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (DmpState.OPEN, None),
        (DmpState.NOT_FOUND, "DMPNotFound"),
        (DmpState.CLOSED, "DMPClosed"),
        (DmpState.OBJECTION, "DMPPatientOpposition"),
        (DmpState.NO_RIGHT, "DMPAccessDenied"),
    ],
)
def test_each_answer_of_the_dmp_reads_as_its_code(
    pki: SandboxPki, checks: Authenticate, state: DmpState, code: str | None
) -> None:
    statuses = PatientStatuses()
    statuses.set(INS, state)
    status, answer = serve(statuses, query(pki), checks)
    assert status == 200
    assert td02.read_status(answer) == code
    assert statuses.asked[INS] == 1


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("DMPNotFound", "DMP inexistant"),
        ("DMPClosed", "DMP fermé"),
        ("DMPPatientOpposition", "Opposition du patient"),
        ("DMPAccessDenied", "Alimentation non autorisée"),
    ],
)
def test_each_refusing_answer_is_a_refusal_with_a_zam_n_naming_the_dmp_code(
    code: str, label: str
) -> None:
    with pytest.raises(DmpRejected) as refused:
        verdict(code)
    assert refused.value.code == code
    assert refused.value.retriable is False
    request = {
        "event_id": "ev-1",
        "request_id": "rq-1",
        "source": {"facility": "LABO-X", "application": "SGL", "message_control_id": "M-2"},
    }
    row = decide(code)
    ack = business_ack(
        request, kind="Z01", accepted=False, now=NOW, code=code, text=row.text, label=row.label
    )
    segments = ack["message"].decode().strip("\r").split("\r")
    assert segments[2].split("|")[5] == "N^^expandedYes-NoIndicator"
    err = segments[-1].split("|")
    assert err[3].startswith("207^")
    assert err[5] == f"{code}^{label}^DMPERRORCODE"
    assert "replay" in err[8]


def test_an_open_dmp_lets_the_filing_go_and_an_unknown_answer_is_retried_only_if_listed() -> None:
    verdict(None)  # nothing raised: file it
    with pytest.raises(DmpUnavailable):
        verdict("XDSRegistryBusy")
    with pytest.raises(DmpRejected) as unknown:
        verdict("DMPSomethingElse")
    assert unknown.value.code == "DMPSomethingElse"


def test_the_sandbox_refuses_a_vihf_for_another_patient_and_a_foreign_action(
    pki: SandboxPki, checks: Authenticate
) -> None:
    other = patient_cx("248098765432112", OID)
    status, answer = serve(PatientStatuses(), query(pki, patient=other), checks)
    assert status == 400
    assert b"FailedAuthentication" in answer
    foreign = query(pki).replace(b"PRPA_IN201307UV02", b"X")
    status, answer = serve(PatientStatuses(), foreign, checks)
    assert status == 400


def _unsigned(assertion: etree._Element) -> etree._Element:
    signature = assertion.find("ds:Signature", NS)
    assert signature is not None
    assertion.remove(signature)
    return assertion


def _tampered(assertion: etree._Element) -> etree._Element:
    """Another professional named, the right patient kept: only the signature can tell."""
    name_id = assertion.find("saml:Subject/saml:NameID", NS)
    assert name_id is not None
    name_id.text = "899999999999"
    return assertion


@pytest.mark.parametrize(
    ("wrong", "refusal"),
    [
        (_unsigned, b"wsse:InvalidSecurity"),  # without its signature, not a valid SAML one
        (_tampered, b"the VIHF signature fails"),
    ],
)
def test_td02_verifies_the_vihf_as_iti41_does(
    pki: SandboxPki,
    checks: Authenticate,
    wrong: Callable[[etree._Element], etree._Element],
    refusal: bytes,
) -> None:
    """Reading resource-id from an unverified assertion would tell anyone a DMP's state."""
    statuses = PatientStatuses()
    status, answer = serve(statuses, query(pki, assertion=wrong(vihf(pki))), checks)
    assert status == 400
    assert refusal in answer
    assert not statuses.asked  # nothing answered about the patient
    assert serve(statuses, query(pki), checks)[0] == 200  # the right one is answered


def test_td02_wants_the_vihf_signed_by_the_tls_certificate_of_a_trusted_ca(
    pki: SandboxPki, checks: Authenticate, tmp_path_factory: pytest.TempPathFactory
) -> None:
    foreign = write_test_pki(tmp_path_factory.mktemp("foreign"), structure_id="1120459876")
    status, answer = serve(PatientStatuses(), query(foreign), checks)
    assert (status, b"not issued by the trusted CA" in answer) == (400, True)
    other_tls = x509.load_pem_x509_certificate(foreign.client_cert.read_bytes())
    status, answer = serve(PatientStatuses(), query(pki), checks, other_tls)
    assert (status, b"TLS session" in answer) == (400, True)
    ours = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    assert serve(PatientStatuses(), query(pki), checks, ours)[0] == 200

    def expired(assertion: etree._Element) -> None:
        conditions = assertion.find("saml:Conditions", NS)
        assert conditions is not None
        conditions.set("NotOnOrAfter", "2020-01-01T00:00:00Z")

    late = resign(vihf(pki), pki, expired)
    status, answer = serve(PatientStatuses(), query(pki, assertion=late), checks)
    assert (status, b"expired" in answer) == (400, True)


def test_an_answer_that_is_not_td02_is_an_error() -> None:
    with pytest.raises(td02.Td02Error):
        td02.read_status(b"<not-xml")
    with pytest.raises(td02.Td02Error):
        td02.read_status(etree.tostring(etree.Element("{urn:x}Envelope")))


@pytest.fixture
async def garbled(pki: SandboxPki) -> AsyncIterator[DmpClient]:
    """A DMP over mutual TLS whose patients service answers HTTP 200 with no TD0.2."""

    async def patients(request: web.Request) -> web.Response:
        return web.Response(body=b"<html>maintenance page</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/patients", patients)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context())
    await site.start()
    port = runner.addresses[0][1]
    environment = client_environment(pki, f"https://127.0.0.1:{port}/repository")
    client = DmpClient(DmpConfig.from_settings(Settings.from_env(environment)))
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()


async def test_an_unreadable_td02_answer_is_refused_not_retried(garbled: DmpClient) -> None:
    """Retried, it would stall the patient's partition forever: refused, named, replayable."""
    with pytest.raises(DmpRejected) as refused:
        await garbled.status(PATIENT)
    assert refused.value.code == td02.UNREADABLE == "TD02Unreadable"
    assert refused.value.retriable is False
    row = decide(td02.UNREADABLE)
    assert row.source.startswith("Relais")
    assert "not retried" in row.source


async def test_the_sandbox_over_tls_answers_a_verified_td02(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    pki = write_test_pki(tmp_path_factory.mktemp("tls"), structure_id="1120459876")
    runner, sandbox, port = await start_sandbox("127.0.0.1", 0, pki=pki, data_dir=DATA)
    environment = client_environment(pki, f"https://127.0.0.1:{port}/repository")
    client = DmpClient(DmpConfig.from_settings(Settings.from_env(environment)))
    try:
        sandbox.statuses.set(INS, DmpState.CLOSED)
        assert await client.status(PATIENT) == "DMPClosed"
        assert sandbox.statuses.asked[INS] == 1
    finally:
        await client.close()
        await runner.cleanup()


def test_an_open_dmp_is_trusted_for_the_lifetime_and_a_refusal_is_never_remembered() -> None:
    cache = StatusCache(timedelta(hours=24))
    assert not cache.fresh(PATIENT, NOW)
    cache.answered(PATIENT, None, NOW)
    assert cache.fresh(PATIENT, NOW + timedelta(hours=23))
    assert not cache.fresh(PATIENT, NOW + timedelta(hours=24))  # asked again
    assert not cache.fresh("other^^^&1.2&ISO^NH", NOW)
    cache.answered(PATIENT, "DMPClosed", NOW + timedelta(hours=1))
    assert not cache.fresh(PATIENT, NOW + timedelta(hours=2))  # closed since: forgotten
    assert cache.asked == 2
    small = StatusCache(timedelta(hours=1), size=2)
    for n in range(3):
        small.answered(f"p{n}", None, NOW)
    assert [small.fresh(f"p{n}", NOW) for n in range(3)] == [False, True, True]
    zero = StatusCache(timedelta(0))  # a lifetime of 0: every filing asks
    zero.answered(PATIENT, None, NOW)
    assert not zero.fresh(PATIENT, NOW)
