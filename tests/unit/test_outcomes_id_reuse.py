"""consumers.dmp.reuse: same document id, other content is refused; the same content is not."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.dmp.business_ack import business_ack
from consumers.dmp.reuse import NON_IDENTICAL, content_key, filed_digest, refusal, reused
from relais.delivery_ledger import DONE, Entry

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
UNIQUE_ID = "1.2.250.1.213.1.1.9.4242.11502000001"


def request(sha: str, action: str = "SUBMIT", event_id: str = "ev-1") -> dict[str, object]:
    return {
        "event_id": event_id,
        "request_id": "rq-1",
        "document": {"unique_id": UNIQUE_ID, "action": action, "content_sha256": sha},
        "source": {"facility": "LABO-X", "application": "SGL", "message_control_id": "M-2"},
        "flags": {"ACK_RECEPTION": True},
    }


def test_the_ledger_keeps_what_was_filed_and_other_content_is_refused() -> None:
    filed = filed_digest(request("a" * 64), now=NOW)
    assert filed is not None
    assert (filed.request_id, filed.state, filed.code) == (content_key("rq-1"), DONE, "a" * 64)
    assert Entry.decode(filed.encode()) == filed  # it travels on the delivery ledger topic
    assert not reused(filed, request("a" * 64))  # the same content: idempotent success
    assert reused(filed, request("b" * 64))  # same id, other content
    assert not reused(None, request("b" * 64))  # ledgers from before the digest: as before
    assert not reused(filed, request("b" * 64, action="DELETE"))
    assert filed_digest(request("a" * 64, action="DELETE"), now=NOW) is None


def test_the_refusal_names_the_id_and_says_what_to_do() -> None:
    failure = refusal(NON_IDENTICAL, UNIQUE_ID)
    assert failure.reason_code == "document-id-reused"
    assert UNIQUE_ID in failure.reason
    assert "replacement" in failure.reason
    assert refusal("DMPClosed", UNIQUE_ID).reason_code == "dmp-rejected"


def test_each_refused_event_gets_its_own_zam_n_with_the_dmp_code() -> None:
    first = business_ack(request("a" * 64), kind="Z01", accepted=True, now=NOW)
    text = refusal(NON_IDENTICAL, UNIQUE_ID).reason
    refused = business_ack(
        request("b" * 64, event_id="ev-2"),
        kind="Z01",
        accepted=False,
        now=NOW,
        code=NON_IDENTICAL,
        text=text,
        ack_key="ev-2",
    )
    assert refused["ack_id"] != first["ack_id"]
    err = refused["message"].decode().strip("\r").split("\r")[-1].split("|")
    assert err[5] == "XDSNonIdenticalHash^Refus du DMP^DMPERRORCODE"
    assert UNIQUE_ID in err[8]
    assert b"ERR" not in first["message"]
