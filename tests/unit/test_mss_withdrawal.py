"""A deletion reaches a mailbox as a withdrawal notice: no attachment, the document named."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.mssante_address import parse_address
from mss_bridge.compose import ComposeConfig, compose
from relais.keyring import Keyring
from tests.mss_records import mss_request

KEYRING = Keyring.generate()
CONFIG = ComposeConfig(sender=parse_address("relais@ch-relais.mssante.fr"), product_nil="NIL-TEST")
NOW = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)


def test_a_deletion_is_a_withdrawal_notice_without_the_document() -> None:
    request = mss_request(KEYRING, "dr.martin@medecin.mssante.fr")
    deletion = {
        **request,
        "request_id": "deletion-request",  # the route stage's id differs per action
        "document": {**request["document"], "action": "DELETE"},
    }
    mail = compose(deletion, KEYRING, CONFIG, NOW).message
    assert str(mail["Subject"]).startswith("Annulation : XDM/1.0/DDM+")
    assert list(mail.iter_attachments()) == []
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "annulé par son émetteur" in text
    assert request["document"]["type_label"] in text
    assert mail["X-MSS-NIL"] == "NIL-TEST"
    original = compose(request, KEYRING, CONFIG, NOW).message
    assert mail["Message-ID"] != original["Message-ID"]  # another request: another mail
    assert len(list(original.iter_attachments())) >= 1


def test_a_withdrawal_to_the_patient_forbids_a_reply() -> None:
    request = mss_request(KEYRING, "279035121518989@patient.mssante.fr")
    deletion = {**request, "document": {**request["document"], "action": "DELETE"}}
    assert compose(deletion, KEYRING, CONFIG, NOW).message["X-MSS-MES"] == "FIN"
