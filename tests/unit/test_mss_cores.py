"""mss_bridge's pure cores: addresses, XDM package, mail, tracking, DSN/MDN, ZAM, inbound checks."""

from __future__ import annotations

import email
import io
import zipfile
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.mssante_address import parse_address, patient_address
from mss_bridge.acknowledgements import (
    MdnRequest,
    build_error_mail,
    build_mdn,
    read_acknowledgement,
)
from mss_bridge.compose import ComposeConfig, compose, pdf_copy
from mss_bridge.inbound import read_mail, submissions
from mss_bridge.tracking import MailRef, mail_signer, message_id, read_message_id
from mss_bridge.xdm_package import unpack_package
from producers.hl7.business_ack import BusinessAck, build_business_ack
from relais.keyring import Keyring
from relais.mail.config import smtp_routes
from relais.mail.errors import (
    AcknowledgementError,
    AddressError,
    ConfigError,
    MailFormatError,
    PackageError,
    VerificationError,
)
from relais.mail.smtp import SmtpConfig, SmtpServer, _xtext
from tests.mss_records import LETTER_CDA, NOW, mss_request, sample_cda
from tests.shared_data import shared

KEYRING = Keyring.generate()
SIGN = mail_signer(KEYRING)
RELAIS = "relais@ch-relais.mssante.fr"
DOCTOR = "dr.martin@medecin.mssante.fr"
PATIENT = "279035121518989@patient.mssante.fr"
CONFIG = ComposeConfig(sender=parse_address(RELAIS), product_nil="NIL-TEST")


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def composed(recipient: str = PATIENT, **kwargs: object) -> EmailMessage:
    return compose(mss_request(KEYRING, recipient, **kwargs), KEYRING, CONFIG, NOW).message  # type: ignore[arg-type]


def package_of(message: EmailMessage) -> bytes:
    return next(
        p.get_content() for p in message.iter_attachments() if p.get_filename() == "IHE_XDM.ZIP"
    )


# Addresses -------------------------------------------------------------------


def test_addresses_are_validated_without_echoing_the_local_part() -> None:
    assert str(parse_address(" <Dr.Martin@Medecin.MSSante.fr> ")) == "Dr.Martin@medecin.mssante.fr"
    assert parse_address(PATIENT).is_patient
    assert patient_address("279035121518989").is_patient
    for bad, why in [
        ("no-at-sign", "local@domain"),
        ("a..b@medecin.mssante.fr", "dot-atom"),
        ("x@gmail.com", "outside the MSSanté space"),
        ("élodie@medecin.mssante.fr", "non-ASCII"),
        ("279035121518988@patient.mssante.fr", "wrong key"),
        ("dupont@patient.mssante.fr", "15-character matricule"),
    ]:
        with pytest.raises(AddressError, match=why) as caught:
            parse_address(bad)
        assert "279035121518988" not in str(caught.value)
    assert "279" not in repr(parse_address(PATIENT))


# Tracking -------------------------------------------------------------------


@given(
    st.text(min_size=1, max_size=40),
    st.text(min_size=1, max_size=40),
    st.text(min_size=1, max_size=64),
    st.integers(min_value=0, max_value=2**53),
    st.text(max_size=20),
    st.text(max_size=20),
    st.text(max_size=30),
)
def test_a_message_id_names_its_delivery(
    event: str, request: str, uid: str, at: int, facility: str, app: str, control: str
) -> None:
    ref = MailRef(event, request, uid, at, facility, app, control)
    value = message_id(ref, "ch-relais.mssante.fr", "0123456789ab", SIGN)
    assert value.isascii()
    assert " " not in value
    assert read_message_id(value, SIGN) == ref
    # a forged or altered Message-ID is nobody's: another key, or a changed token
    assert read_message_id(value, mail_signer(Keyring.generate("other"))) is None
    local, _, domain = value.strip("<>").partition("@")
    tag, token, mac = local.removeprefix("relais.").split(".")
    forged = f"<relais.{tag}.{token[:-2]}AA.{mac}@{domain}>"
    assert read_message_id(forged, SIGN) is None


def test_foreign_message_ids_name_nothing() -> None:
    assert read_message_id("<20261122.ABC@mta.localhost>", SIGN) is None
    assert read_message_id("<relais.tag.not-base64!@x>", SIGN) is None
    assert read_message_id(None, SIGN) is None


# The outbound mail and its XDM package ---------------------------------------------


def test_the_patient_mail_follows_the_mssante_rules() -> None:
    mail = composed()
    assert mail["Subject"] == "XDM/1.0/DDM+CR d'examens biologiques PAT-TROIS DOMINIQUE 28/03/1979"
    assert (mail["X-MSS-CODECDA"], mail["X-MSS-INS"], mail["X-MSS-NIL"]) == (
        "11502-2",
        "O",
        "NIL-TEST",
    )
    assert mail["X-MSS-MES"] == "FIN"
    assert mail["Disposition-Notification-To"] == RELAIS
    assert [p.get_filename() for p in mail.iter_attachments()] == ["IHE_XDM.ZIP", "DOCUMENT.PDF"]
    # The same request to the same recipient: the same Message-ID (a re-send is recognisable).
    assert composed()["Message-ID"] != composed(DOCTOR)["Message-ID"]


def test_the_producer_flags_decide_the_read_receipt() -> None:
    assert composed(flags={"ACK_LECTURE_MSS": False})["Disposition-Notification-To"] is None
    assert composed(DOCTOR)["X-MSS-MES"] is None


def test_the_xdm_package_holds_the_cda_and_its_metadata() -> None:
    lab = sample_cda()
    data = package_of(composed())
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == [
        "INDEX.HTM",
        "README.TXT",
        "IHE_XDM/SUBSET01/METADATA.XML",
        "IHE_XDM/SUBSET01/DOC0001.XML",
    ]
    [document] = unpack_package(data)
    assert document.content == lab
    assert document.metadata.unique_id == "1.2.250.1.213.1.1.1.55.2024.9.1"
    metadata = zipfile.ZipFile(io.BytesIO(data)).read("IHE_XDM/SUBSET01/METADATA.XML")
    for scheme in (
        b"urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427",  # DocumentEntry.patientId
        b"urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446",  # SubmissionSet.patientId
        b"urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",  # typeCode
    ):
        assert scheme in metadata
    assert pdf_copy(lab) is not None
    assert pdf_copy(sample_cda(LETTER_CDA)) is None


def _rezip(data: bytes, change: dict[str, bytes | None]) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename in change:
                if change[info.filename] is not None:
                    target.writestr(info.filename, change[info.filename] or b"")
            else:
                target.writestr(info, source.read(info))
        for name, value in change.items():
            if name not in source.namelist() and value is not None:
                target.writestr(name, value)
    return out.getvalue()


def test_a_damaged_package_is_refused_with_the_reason() -> None:
    data = package_of(composed())
    doc = "IHE_XDM/SUBSET01/DOC0001.XML"
    cda = zipfile.ZipFile(io.BytesIO(data)).read(doc)
    with pytest.raises(PackageError, match="SHA-1") as caught:
        unpack_package(_rezip(data, {doc: cda.replace(b"PAT-TROIS", b"PAT-TROIX", 1)}))
    assert caught.value.reason_code == "xdm-hash-mismatch"
    with pytest.raises(PackageError, match=r"METADATA\.XML says"):
        unpack_package(_rezip(data, {doc: cda + b" "}))
    with pytest.raises(PackageError, match=r"not in IHE_XDM\.ZIP"):
        unpack_package(_rezip(data, {doc: None}))
    with pytest.raises(PackageError, match="outside the package"):
        unpack_package(_rezip(data, {"../../etc/evil": b"x"}))
    with pytest.raises(PackageError, match="not a ZIP"):
        unpack_package(b"PK not really")


# Acknowledgements -------------------------------------------------------------


def _dsn(original: EmailMessage, action: str, status: str, diagnostic: str) -> bytes:
    headers = "".join(f"{k}: {v}\r\n" for k, v in original.items())
    return (
        "From: MAILER-DAEMON@mta.localhost\r\nTo: " + RELAIS + "\r\nSubject: Undelivered Mail\r\n"
        "MIME-Version: 1.0\r\nAuto-Submitted: auto-replied\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThis is the mail system.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mta.localhost\r\nOriginal-Envelope-Id: abc\r\n\r\n"
        f"Final-Recipient: rfc822; {PATIENT}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n" + headers + "\r\n--B--\r\n"
    ).encode()


def test_a_dsn_is_linked_to_its_delivery_and_quotes_no_address() -> None:
    original = composed()
    failed = read_mail(
        _dsn(original, "failed", "5.1.1", f"550 5.1.1 <{PATIENT}>: User unknown"), SIGN
    )
    [ack] = failed.acknowledgements
    assert (ack.kind, ack.outcome, ack.code, ack.receipt, ack.error_code) == (
        "DSN",
        "REJECTED",
        "DSN 5.1.1",
        "Z02",
        "5.1.1",
    )
    assert ack.ref == read_message_id(original["Message-ID"], SIGN)
    assert "279035121518989" not in ack.detail
    assert "bad destination mailbox address" in ack.detail
    [delayed] = read_mail(
        _dsn(original, "delayed", "4.4.1", "451 4.4.1 later"), SIGN
    ).acknowledgements
    assert delayed.outcome == "RETRYING"
    assert delayed.receipt is None
    foreign = EmailMessage()
    foreign["Message-ID"] = "<someone.else@example>"
    with pytest.raises(AcknowledgementError, match="Message-ID Relais wrote"):
        read_mail(_dsn(foreign, "failed", "5.1.1", "550"), SIGN)


def test_an_mdn_round_trips_and_an_error_mdn_says_why() -> None:
    original = composed(DOCTOR)
    request = MdnRequest(original, parse_address(DOCTOR), "cabinet; LGC", NOW)
    processed = build_mdn(request, message_id="<m1@medecin.mssante.fr>")
    assert processed["To"] == RELAIS
    [ack] = read_acknowledgement(parse(processed.as_bytes()), SIGN)
    assert (ack.kind, ack.outcome, ack.code, ack.receipt) == (
        "MDN",
        "DELIVERED",
        "MDN processed",
        "Z03",
    )
    assert ack.recipient == DOCTOR
    error = build_mdn(request, message_id="<m2@x>", error=("xdm-hash-mismatch", "hash differs"))
    assert str(error["Subject"]).startswith(
        "[KO Intégration système !][xdm-hash-mismatch] XDM/1.0/DDM+"
    )
    [bad] = read_acknowledgement(parse(error.as_bytes()), SIGN)
    assert (bad.outcome, bad.code, bad.error_code) == (
        "REJECTED",
        "MDN processed/error",
        "xdm-hash-mismatch",
    )
    del original["Disposition-Notification-To"]
    with pytest.raises(AcknowledgementError, match="asks for no MDN"):
        build_mdn(MdnRequest(original, parse_address(DOCTOR), "ua", NOW), message_id="<m3@x>")
    plain = build_error_mail(
        MdnRequest(original, parse_address(DOCTOR), "ua", NOW),
        message_id="<m4@x>",
        error=("c", "l"),
    )
    assert plain["To"] == RELAIS
    assert plain.get_content_type() == "text/plain"


# HL7 business acks ------------------------------------------------------------------


def test_zam_z02_has_the_shape_of_the_volet_sample() -> None:
    sample = shared("hl7v2", "ZAM_Z02_ack_reception_MSS.hl7").read_text().splitlines()
    ours = (
        build_business_ack(
            BusinessAck("Z02", True, "015", "SIL-Y", "labo", "PFI-X", "Organisation-X", DOCTOR),
            control_id="018",
            now=datetime(2021, 6, 6, 9, 34, tzinfo=UTC),
        )
        .decode()
        .split("\r")
    )
    assert ours[0] == sample[0].replace("202106060934", "20210606093400")
    assert ours[2] == sample[2]
    assert (
        ours[3]
        == f"OBX|2|XTN|DESTINATAIRE_MSS^Destinataire MSSanté^AckMetierZAM||^^X.400^{DOCTOR}||||||F|"
    )
    refused = build_business_ack(
        BusinessAck("Z02", False, "015", "SIL-Y", "labo", error=("5.1.1", "bad mailbox")),
        control_id="019",
        now=NOW,
    ).decode()
    assert "|N^^expandedYes-NoIndicator|" in refused
    assert (
        "ERR|||207^Application internal error^messageErrorCondition|E|5.1.1^bad mailbox^SMTPERRORCODE"
        in refused
    )
    with pytest.raises(ValueError, match="unknown business ack kind"):
        build_business_ack(BusinessAck("Z09", True, "1", "a", "b"), control_id="1", now=NOW)


# Inbound checks ---------------------------------------------------------------------------


def _mail_with(*attachments: tuple[bytes, str, str, str]) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"], mail["Message-ID"] = (
        DOCTOR,
        RELAIS,
        "doc",
        "<in-1@medecin.mssante.fr>",
    )
    mail.set_content("ci-joint")
    for data, maintype, subtype, name in attachments:
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return mail.as_bytes()


def test_a_document_mail_gives_verified_documents_with_stable_event_ids() -> None:
    raw = composed(RELAIS).as_bytes()
    mail = read_mail(raw, SIGN)
    [document] = mail.documents
    assert document.patient.ins == "279035121518989"
    first = submissions(mail, KEYRING, NOW)
    again = submissions(read_mail(raw, SIGN), KEYRING, NOW)
    assert [r["event_id"] for r in first] == [r["event_id"] for r in again]
    assert first[0]["sector"] == "MSSANTE"
    plain = read_mail(_mail_with((sample_cda(LETTER_CDA), "text", "xml", "lettre.xml")), SIGN)
    assert plain.documents[0].type_code == "11490-0"


def test_bad_mail_is_refused_with_the_reason() -> None:
    pdf = pdf_copy(sample_cda()) or b""
    with pytest.raises(MailFormatError, match="PDF without its CDA"):
        read_mail(_mail_with((pdf, "application", "pdf", "cr.pdf")), SIGN)
    with pytest.raises(MailFormatError, match="no document"):
        read_mail(_mail_with(), SIGN)
    with pytest.raises(VerificationError, match="not well-formed"):
        read_mail(_mail_with((b"<ClinicalDocument", "text", "xml", "x.xml")), SIGN)
    no_ins = sample_cda(LETTER_CDA).replace(b"1.2.250.1.213.1.4.10", b"1.2.250.1.999.9")
    with pytest.raises(VerificationError, match="INS") as caught:
        read_mail(_mail_with((no_ins, "text", "xml", "x.xml")), SIGN)
    assert caught.value.reason_code in {"ins-missing", "ins-malformed"}


# Configuration ------------------------------------------------------------------------


def test_smtp_routes_and_envelope_ids() -> None:
    routes = smtp_routes(
        "patient.mssante.fr=mes.example:465/implicit, medecin.mssante.fr=mx.example:587"
    )
    config = SmtpConfig(server=SmtpServer("default.example", 587), routes=routes)
    assert config.server_for("patient.mssante.fr") == SmtpServer("mes.example", 465, "implicit")
    assert config.server_for("cardio.medecin.mssante.fr").host == "mx.example"
    assert config.server_for("ch-x.mssante.fr").host == "default.example"
    with pytest.raises(ConfigError, match="RELAIS_MSS_SMTP_ROUTES"):
        smtp_routes("nonsense")
    assert _xtext("a+b=c d") == "a+2Bb+3Dc+20d"
