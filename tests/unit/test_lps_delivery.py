"""The LPS volet (issue 15, point 5): the MDM^T02 to the DPI, its answer, the mail's answer."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from lxml import etree

from domain.document_id import safe_parser
from mss_bridge.lps_context import (
    MailContext,
    header_block,
    mail_text,
    mailboxes,
    mdn_due,
    open_context,
    route_for,
    seal_context,
)
from producers.document_files import cda_patient
from producers.hl7.lps_message import (
    PROFILE,
    LpsDocument,
    LpsMail,
    answer_of,
    build_lps_mdm,
    read_err,
)
from producers.hl7.segments import load_segments
from producers.mllp.ack_routes import parse_routes
from relais.envelope import EnvelopeError
from relais.keyring import Keyring
from tests.mss_records import LETTER_CDA, sample_cda

NOW = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
DPI = "dpi@ch-a.mssante.fr"
#: The segment order of the ANS sample "message_MDM__LPS_MSS_CR_Radio_INIT_N1.er7"
#: (ansforge/hl7V2-exemples, Vague 2/Trans_LPS_CDA_MSSanté, V1.1, Transmission initiale).
SAMPLE_ORDER = ["MSH", "EVN", "PID", "PV1", "ORC", "OBR", "TXA", "OBX", "PRT", "PRT", "PRT"]
SAMPLE_ORDER += ["OBX"] * 5


def document(action: str = "SUBMIT", parent: str | None = None) -> LpsDocument:
    content = sample_cda(LETTER_CDA)
    root = etree.fromstring(content, safe_parser())
    return LpsDocument(
        content=content,
        type_code="11490-0",
        type_label="Lettre de liaison | sortie",  # a delimiter, escaped
        unique_id="1.2.250.1.999.1.42",
        patient=cda_patient(root, None),
        mail=LpsMail(
            sender="dr.durand@medecin.mssante.fr",
            mailbox=DPI,
            reply_to="secretariat@medecin.mssante.fr",
            subject="XDM/1.0/DDM+Lettre de liaison",
            body="Bonjour, ci-joint la lettre.",
        ),
        dpi_facility=DPI,
        action=action,
        parent_unique_id=parent,
    )


def test_the_mdm_t02_follows_the_lps_volet_and_the_ans_sample() -> None:
    raw = build_lps_mdm(document(), control_id="CTL42", now=NOW)
    assert b"\n" not in raw  # segments end with CR
    segments = load_segments(raw.decode("utf-8"))
    by_name = {s.name: s for s in reversed(segments)}  # the first of each
    assert [s.name for s in segments] == SAMPLE_ORDER
    msh = by_name["MSH"]
    assert msh.render(9) == "MDM^T02^MDM_T02"
    assert (msh.get(10), msh.get(11), msh.get(12)) == ("CTL42", "P", "2.6")
    assert msh.render(21) == PROFILE == "1.1^CISIS_CDA_HL7_LPS"
    assert (msh.get(5), msh.get(6), msh.get(18)) == ("DPI", DPI, "UNICODE UTF-8")
    assert by_name["PV1"].get(2) == "N"
    pid = by_name["PID"]
    assert pid.get(3, 5) == "INS"
    assert len(pid.get(3)) == 15
    assert pid.get(5, 7) == "L"
    assert pid.get(5)
    txa = by_name["TXA"]
    assert (txa.get(2), txa.get(3), txa.get(12), txa.get(17)) == (
        "11490-0",
        "TEXT",
        "1.2.250.1.999.1.42",
        "AU",
    )
    obx = by_name["OBX"]
    assert (obx.get(2), obx.get(3, 2), obx.get(5, 3), obx.get(5, 4), obx.get(11)) == (
        "ED",
        "Lettre de liaison | sortie",
        "XML",
        "Base64",
        "F",
    )
    assert base64.b64decode(obx.get(5, 5)) == sample_cda(LETTER_CDA)
    roles = [(s.get(4), s.get(15, 4)) for s in segments if s.name == "PRT"]
    assert roles == [
        ("SB", "dr.durand@medecin.mssante.fr"),
        ("RCT", DPI),
        ("REPLY", "secretariat@medecin.mssante.fr"),
    ]
    mail_obx = [s for s in segments if s.name == "OBX"][1]
    assert base64.b64decode(mail_obx.get(5, 5)).decode() == "Bonjour, ci-joint la lettre."
    meta = [s.get(3) for s in segments if s.name == "OBX" and s.get(3, 3) == "MetaDMPMSS"]
    assert meta == ["MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REP_LEGAUX", "MODIF_CONF_CODE"]


@pytest.mark.parametrize(
    ("action", "trigger", "order", "status"),
    [("REPLACE", "T10", "RO", "C"), ("DELETE", "T04", "CA", "D")],
)
def test_replacements_and_deletions_follow_the_volets_life_cycle(
    action: str, trigger: str, order: str, status: str
) -> None:
    raw = build_lps_mdm(document(action, parent="1.2.250.1.999.1.41"), control_id="C", now=NOW)
    segments = {s.name: s for s in reversed(load_segments(raw.decode()))}
    assert segments["MSH"].render(9) == f"MDM^{trigger}^MDM_T02"
    assert segments["ORC"].get(1) == order
    assert segments["OBX"].get(11) == status
    assert segments["TXA"].get(13) == "1.2.250.1.999.1.41"
    with pytest.raises(ValueError, match="unknown document action"):
        build_lps_mdm(document("ARCHIVE"), control_id="C", now=NOW)


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (b"MSH|^~\\&|DPI|CH-A|RELAIS|RELAIS|20261206||ACK^T02^ACK|1|P|2.6\rMSA|AA|CTL42\r", "done"),
        (b"MSH|^~\\&|DPI|CH-A|RELAIS|RELAIS|20261206||ACK|1|P|2.6\nMSA|CA|CTL42\n", "done"),
        (b"MSH|^~\\&|DPI|CH-A|RELAIS|RELAIS|20261206||ACK|1|P|2.6\rMSA|AR|CTL42\r", "retry"),
        (b"MSH|^~\\&|DPI|CH-A|RELAIS|RELAIS|20261206||ACK|1|P|2.6\rMSA|CR|CTL42\r", "retry"),
        (b"MSH|^~\\&|DPI|CH-A|RELAIS|RELAIS|20261206||ACK|1|P|2.6\rMSA|AE|CTL42\r", "refused"),
        (b"not an ACK", "refused"),
    ],
)
def test_the_dpis_answer_decides_done_retry_or_refused(answer: bytes, verdict: str) -> None:
    assert answer_of(answer).verdict == verdict


def test_a_refusal_carries_the_dpis_codes_never_its_free_text() -> None:
    ae = (
        b"MSH|^~\\&|DPI|CH-A|RELAIS|RELAIS|20261206||ACK|1|P|2.6\r"
        b"MSA|AE|CTL42\r"
        b"ERR||PID^1^3|204^Unknown key identifier^HL70357|E|902^Patient inconnu^L|||"
        b"PAT-TROIS DOMINIQUE inconnu\r"
    )
    answer = answer_of(ae)
    assert (answer.verdict, answer.code, answer.error) == (
        "refused",
        "AE",
        ("902", "Patient inconnu"),
    )
    only_0357 = b"MSA|AE|1\rERR|||207^Application internal error^HL70357|E\r"
    assert read_err(only_0357) == ("207", "Application internal error")
    assert answer_of(b"MSA|AE|1\r").error == ("AE", "refused by the DPI")


def test_a_mailbox_finds_its_dpi_by_address_then_by_domain() -> None:
    routes = parse_routes(f"{DPI}=10.0.0.5:6661,ch-b.mssante.fr=10.0.0.6:6661")
    assert route_for(["nobody@elsewhere.fr", DPI], routes).facility == DPI  # type: ignore[union-attr]
    by_domain = route_for(["urgences@ch-b.mssante.fr"], routes)
    assert by_domain is not None
    assert (by_domain.facility, by_domain.mailbox, by_domain.endpoint.port) == (
        "ch-b.mssante.fr",
        "urgences@ch-b.mssante.fr",
        6661,
    )
    assert route_for(["dpi@ch-c.mssante.fr"], routes) is None


@pytest.mark.parametrize(
    ("refused", "last", "answered", "due"),
    [
        (False, True, False, "processed"),  # the DPI took the mail's last document
        (False, False, False, None),  # more documents to come: not yet
        (True, False, False, "error"),  # a refusal answers at once
        (True, True, False, "error"),
        (False, True, True, None),  # already answered with an error: nothing more
        (True, True, True, None),
    ],
)
def test_the_mail_is_answered_once_after_the_dpi(
    refused: bool, last: bool, answered: bool, due: str | None
) -> None:
    assert mdn_due(refused=refused, last=last, already_answered=answered) == due


def test_the_mail_context_is_sealed_for_its_event() -> None:
    keyring = Keyring.generate()
    raw = b"From: a@b.fr\r\nSubject: XDM/1.0/DDM+CR PAT-TROIS\r\nTo: x@y.fr\r\n\r\nbody\r\n"
    context = MailContext(header_block(raw), "texte", 1, 2)
    sealed = seal_context(keyring, context, event_id="evt-1")
    assert b"PAT-TROIS" not in sealed
    opened = open_context(keyring, sealed, event_id="evt-1")
    assert opened == context
    assert opened.last
    assert opened.original()["Subject"] == "XDM/1.0/DDM+CR PAT-TROIS"
    with pytest.raises(EnvelopeError):
        open_context(keyring, sealed, event_id="evt-2")


def test_the_receiving_mailboxes_and_the_text_of_a_mail() -> None:
    message = EmailMessage()
    message["Delivered-To"] = "DPI@ch-a.mssante.fr"
    message["To"] = "Service <dpi@ch-a.mssante.fr>, autre@ch-a.mssante.fr"
    message["Cc"] = "copie@ch-b.mssante.fr"
    message.set_content("Bonjour")
    message.add_attachment(b"PK", maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    assert mailboxes(message) == (DPI, "autre@ch-a.mssante.fr", "copie@ch-b.mssante.fr")
    assert mail_text(message).strip() == "Bonjour"
    assert header_block(b"A: 1\nB: 2\n\nbody") == b"A: 1\nB: 2"
