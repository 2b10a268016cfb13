"""A patient's objection to DMP feeding stops the DMP only: MSSanté still gets the document.

Real broker, DMP sandbox, Postfix + Dovecot with mutual TLS, the MSSanté sender.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ops.demo.samples import DOMINIQUE, LAB, sample
from ops.localstack import Landing, LocalStack, read_landing
from producers.publisher import Publisher
from tests.builders import adt_message
from tests.integration.mail_servers import DOCTOR, DOMAINS, OUTBOX, MailServers
from tests.shared_data import shared

TO_DOCTOR = (
    "PRT||UC||RCT^^participation|801234567890^MARTIN^Jean^^^^^^"
    "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS" + "|" * 10 + f"^^X.400^{DOCTOR}\r"
    "OBX|20|CE|DESTMSSANTEPS^DESTMSSANTEPS^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
    # to the professionals only: the volet wants the document hidden from the patient
    "OBX|21|CE|INVISIBLE_PATIENT^INVISIBLE_PATIENT^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"
)
FINAL = {"DELIVERED", "DUPLICATE", "REJECTED"}


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, mss_mail_servers: MailServers
) -> AsyncIterator[LocalStack]:
    pki = mss_mail_servers.pki
    mail = {
        "RELAIS_MSS_SMTP": f"127.0.0.1:{mss_mail_servers.smtp_port}",
        "RELAIS_MSS_SMTP_TLS": "starttls",
        "RELAIS_MSS_CA_FILE": str(pki.ca),
        "RELAIS_MSS_CLIENT_CERT": str(pki.client_cert),
        "RELAIS_MSS_CLIENT_KEY": str(pki.client_key),
        "RELAIS_MSS_SENDER": OUTBOX,
        "RELAIS_MSS_DOMAINS": ",".join(DOMAINS),
        "RELAIS_MSS_READ_RECEIPT": "no",
    }
    local = LocalStack(
        Path(tmp_path_factory.mktemp("consent-mss")),
        prefix=f"m{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        workers=(
            ("worker", "identity", "transcode", "route"),
            ("sink", "dmp"),
            ("mss", "send-worker"),
        ),
        extra_environment=mail,
    )
    async with local as started:
        yield started


def final(landing: Landing, event_id: str, destination: str) -> list[dict[str, Any]]:
    found = landing.statuses.get((event_id, destination), [])
    return [s for s in found if s["outcome"] in FINAL]


async def test_the_objection_refuses_the_dmp_and_mssante_still_delivers(
    stack: LocalStack, mss_mail_servers: MailServers
) -> None:
    s = stack.settings
    adt = adt_message(DOMINIQUE, "A08", "QUAL", control_id="ZFAMSS")
    adt += b"ZFA|ACTIF|20261122|||||||IO|20261122|IC|20261122\r"
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        await publisher.submit_identity(adt)
        await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            until=lambda lan: any(a["action"] == "CONSENT_CHANGED" for a in lan.audits),
            timeout_s=60,
        )
        [event] = await publisher.submit_lab_result(sample(LAB, DOMINIQUE, 7) + TO_DOCTOR.encode())
        landing = await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            until=lambda lan: final(lan, event, "DMP") and final(lan, event, "MSSANTE"),
            timeout_s=120,
        )
    [dmp] = final(landing, event, "DMP")
    assert (dmp["outcome"], dmp["code"]) == ("REJECTED", "DMPPatientOpposition")
    [mss] = final(landing, event, "MSSANTE")
    assert mss["outcome"] == "DELIVERED"
    assert await mss_mail_servers.wait_for_mail(DOCTOR, 1, timeout_s=30)
    assert not [u for u in stack.sandbox.submissions if u.endswith(".115022000007")]
