"""TD0.2 before feeding: the query, each answer of the sandbox's DMP, what it becomes, the cache.

The client's TD0.2 (consumers.dmp.td02) and the sandbox's (sandboxes.dmp_services) are
written apart; here the one's query goes through the other's service and back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from consumers.dmp import td02
from consumers.dmp.business_ack import business_ack
from consumers.dmp.error_codes import decide
from consumers.dmp.status import StatusCache, verdict
from consumers.dmp.submission import DmpRejected, DmpUnavailable, ins_of, patient_cx
from consumers.ihe.vihf import Role, SigningKey, VihfIdentity, signed_vihf
from domain.xds import ebrim
from sandboxes.dmp_services import DmpState, PatientStatuses, serve
from sandboxes.pki import SandboxPki, write_test_pki

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


def query(pki: SandboxPki, patient: str = PATIENT) -> bytes:
    key = SigningKey(pki.client_cert.read_bytes(), pki.client_key.read_bytes())
    security = etree.Element(f"{{{ebrim.WSSE}}}Security", nsmap={"wsse": ebrim.WSSE})
    security.append(signed_vihf(IDENTITY, patient, key, now=datetime.now(UTC)))
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
    pki: SandboxPki, state: DmpState, code: str | None
) -> None:
    statuses = PatientStatuses()
    statuses.set(INS, state)
    status, answer = serve(statuses, query(pki))
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
    pki: SandboxPki,
) -> None:
    other = patient_cx("248098765432112", OID)
    status, answer = serve(PatientStatuses(), query(pki, patient=other))
    assert status == 400
    assert b"FailedAuthentication" in answer
    status, answer = serve(PatientStatuses(), query(pki).replace(b"PRPA_IN201307UV02", b"X"))
    assert status == 400


def test_an_answer_that_is_not_td02_is_an_error_the_client_retries() -> None:
    with pytest.raises(td02.Td02Error):
        td02.read_status(b"<not-xml")
    with pytest.raises(td02.Td02Error):
        td02.read_status(etree.tostring(etree.Element("{urn:x}Envelope")))


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
