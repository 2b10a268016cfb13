"""One lab result fans out to the DMP, the doctor's and the patient's MSSanté mailboxes; its
correction reaches every destination of the original. Real broker, DMP sandbox over mTLS,
Postfix + Dovecot with mutual TLS, worker and sink processes."""

from __future__ import annotations

import asyncio
import email
import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from lxml import etree

from ops.demo.samples import DOMINIQUE, lab_report_sample
from ops.localstack import Landing, LocalStack, read_landing
from producers.publisher import Publisher
from relais.document_store.open import open_store
from tests.integration.mail_servers import DOCTOR, DOMAINS, OUTBOX, MailServers
from tests.shared_data import shared

V3 = {"v3": "urn:hl7-org:v3"}
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "catalogues"
FLAGS = "".join(
    f"OBX|{20 + i}|CE|{flag}^{flag}^MetaDMPMSS||{value}^^expandedYes-NoIndicator||||||F\r"
    for i, (flag, value) in enumerate(
        [("DESTDMP", "Y"), ("DESTMSSANTEPS", "Y"), ("DESTMSSANTEPAT", "Y"), ("ACK_RECEPTION", "Y")]
    )
)
RECIPIENT = (
    "PRT||UC||RCT^^participation|801234567890^MARTIN^Jean^^^^^^"
    "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS" + "|" * 10 + f"^^X.400^{DOCTOR}\r"
)


def message(n: int, status: str = "F") -> bytes:
    """A lab ORU for DOMINIQUE (INS 279035121518989, a mailbox of the test operator)."""
    raw = lab_report_sample(DOMINIQUE, n, status=status)
    raw = raw.replace(
        b"OBX|2|CE|DESTDMP^Destinataire DMP^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r", b""
    )
    return raw + RECIPIENT.encode() + FLAGS.encode()


@pytest.fixture(scope="module")
async def fanout(
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
    stack = LocalStack(
        Path(tmp_path_factory.mktemp("fanout")),
        prefix=f"f{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        catalogue_dir=FIXTURES,
        loinc_table=shared("loinc", "loinc_fr_labels_from_ans_crbio_examples.csv"),
        ucum_units=shared("jdv", "UCUM_2.16.840.1.113883.6.8.xml"),
        workers=(
            ("worker", "identity"),
            ("worker", "transcode"),
            ("worker", "route"),
            ("sink", "dmp"),
            ("mss", "send-worker"),
            ("sink", "notify"),
        ),
        extra_environment=mail,
    )
    async with stack as local:
        yield local


def statuses(landing: Landing, event_id: str, destination: str) -> list[dict[str, object]]:
    final = {"DELIVERED", "DUPLICATE", "REJECTED"}
    return [s for s in landing.statuses.get((event_id, destination), []) if s["outcome"] in final]


def arrived(event_id: str, mails: int) -> object:
    def check(landing: Landing) -> bool:
        everywhere = (
            len(statuses(landing, event_id, "DMP")) == 1
            and len(statuses(landing, event_id, "MSSANTE")) == mails
            and len(statuses(landing, event_id, "NOTIFY")) == 1
        )
        return everywhere or bool(landing.dead)

    return check


async def notifications(servers: MailServers, user: str, count: int) -> list[EmailMessage]:
    """The patient's notifications: plain mails, no attachment, announcing a document."""
    found: list[EmailMessage] = []
    for _ in range(100):
        found = []
        for raw in await servers.fetch_all(user):
            parsed = email.message_from_bytes(raw, policy=default)
            assert isinstance(parsed, EmailMessage)
            body = parsed.get_body(("plain",))
            text = str(body.get_content()) if body is not None else ""
            if not list(parsed.iter_attachments()) and "Mon espace santé" in text:
                found.append(parsed)
        if len(found) >= count:
            break
        await asyncio.sleep(0.2)
    return found


async def mails_for(servers: MailServers, user: str, document_id: str) -> list[EmailMessage]:
    """The mails in ``user``'s inbox whose XDM carries ``document_id``."""
    found = []
    for raw in await servers.wait_for_mail(user, 1, timeout_s=30):
        parsed = email.message_from_bytes(raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        for part in parsed.iter_attachments():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and document_id.encode() in _unzipped(payload):
                found.append(parsed)
    return found


def _unzipped(payload: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            return b"".join(archive.read(name) for name in archive.namelist())
    except zipfile.BadZipFile:
        return b""


async def test_a_lab_result_reaches_dmp_doctor_and_patient_and_its_correction_follows(
    fanout: LocalStack, mss_mail_servers: MailServers
) -> None:
    s = fanout.settings
    store = open_store(s)  # the stack's document store (a folder every process shares)
    async with Publisher(
        bootstrap=s.kafka.bootstrap,
        keyring=fanout.keyring,
        topic_prefix=s.kafka.prefix,
        store=store,
    ) as publisher:
        [original] = await publisher.submit_lab_result(message(61))
        landing = await read_landing(
            s.kafka.bootstrap, s.kafka.prefix, timeout_s=120, until=arrived(original, 2)
        )
        assert landing.dead == [], [d["reason"] for d in landing.dead]
        [dmp] = statuses(landing, original, "DMP")
        assert dmp["outcome"] == "DELIVERED"
        document_id = str(dmp["document_unique_id"])
        assert document_id in fanout.sandbox.filed
        mssante = statuses(landing, original, "MSSANTE")
        assert {m["outcome"] for m in mssante} == {"DELIVERED"}
        to_doctor = await mails_for(mss_mail_servers, "dr.martin", document_id)
        to_patient = await mails_for(mss_mail_servers, DOMINIQUE.ins, document_id)
        assert len(to_doctor) == 1
        assert len(to_patient) == 1
        assert to_patient[0]["X-MSS-MES"] == "FIN"  # the patient may not answer
        assert to_doctor[0]["X-MSS-INS"] == "O"
        [notified] = statuses(landing, original, "NOTIFY")
        assert notified["outcome"] == "DELIVERED"
        # every sink writes its delivery into the audit trail (relais trace shows them)
        delivered_by = {
            a["component"]
            for a in landing.audits
            if a["event_id"] == original and a["action"] == "DELIVERED"
        }
        assert delivered_by >= {"dmp-sink", "mss-sender", "notify-sink"}
        [notice] = await notifications(mss_mail_servers, DOMINIQUE.ins, 1)
        text = str(notice.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        assert "nouveau document" in text
        for private in (DOMINIQUE.family, DOMINIQUE.ins, "biolog", "Hémoglobine"):
            assert private not in text  # no health data, no identity in a notification

        # the correction only repeats the flags: it goes where the original went
        [corrected] = await publisher.submit_lab_result(message(61, status="C"))
        landing = await read_landing(
            s.kafka.bootstrap, s.kafka.prefix, timeout_s=120, until=arrived(corrected, 2)
        )
    [dmp2] = statuses(landing, corrected, "DMP")
    new_id = str(dmp2["document_unique_id"])
    assert new_id != document_id
    filed = etree.fromstring(fanout.sandbox.content[new_id])
    parent = "v3:relatedDocument[@typeCode='RPLC']/v3:parentDocument/v3:id/@root"
    assert filed.xpath(parent, namespaces=V3) == [document_id]
    assert fanout.sandbox.filed[document_id].status == "Deprecated"
    assert len(await mails_for(mss_mail_servers, "dr.martin", new_id)) == 1
    assert len(await mails_for(mss_mail_servers, DOMINIQUE.ins, new_id)) == 1
    assert landing.doubled() == []
    # each body was written once: the two lab reports at intake, the two CDAs transcode built
    assert (await store.usage()).objects == 4
