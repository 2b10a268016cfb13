"""The binding of MLLP client certificates to MSH-4 (pure rule, settings, the AR it gives)."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.mllp.peers import (
    BoundHandler,
    PeerBinding,
    certificate_subject,
    first_line,
    parse_peer_facilities,
)
from producers.mllp.service import gateway_config, peer_binding
from relais.settings import MllpSettings, SettingsError

MESSAGE = (
    b"MSH|^~\\&|GAM|CHU-Y|RELAIS|RELAIS|20240306111154||ADT^A01^ADT_A01|CTRL-7|P|2.5\r"
    b"PID|1||279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||PAT^DOM\r"
)


def test_the_mapping_lists_facilities_per_certificate_cn() -> None:
    mapping = parse_peer_facilities(
        " interface.chu-x.fr = CHU-X | CHU-X-LAB , CN=hub.region.fr=*,lab=LAB-Z,"
    )
    assert dict(mapping) == {
        "interface.chu-x.fr": frozenset({"CHU-X", "CHU-X-LAB"}),
        "hub.region.fr": frozenset({"*"}),
        "lab": frozenset({"LAB-Z"}),
    }
    assert dict(parse_peer_facilities("")) == {}


@pytest.mark.parametrize("bad", ["CHU-X", "=CHU-X", "cn.example=", "cn.example=|", "CN==X"])
def test_a_bad_mapping_entry_names_the_variable(bad: str) -> None:
    with pytest.raises(SettingsError, match=r"RELAIS_MLLP_PEER_FACILITIES: .* is not CN=FACILITY"):
        parse_peer_facilities(bad)


def test_a_certificate_listed_twice_is_refused() -> None:
    with pytest.raises(SettingsError, match="listed twice"):
        parse_peer_facilities("a.example=X,CN=a.example=Y")


def test_by_default_a_certificate_sends_for_its_cn() -> None:
    binding = PeerBinding()
    assert binding.allows("CHU-X", "CHU-X")
    assert binding.allows("CHU-X", "CHU-X^1.2.250.1.71.4.2.2^ISO")  # HD.1 is bound
    assert not binding.allows("CHU-X", "CHU-Y")
    assert not binding.allows("CHU-X", "chu-x")  # exact
    assert not binding.allows("CHU-X", "")  # no MSH-4
    assert not binding.allows(None, "CHU-X")  # no certificate subject: nothing


def test_a_mapping_replaces_the_cn_of_the_certificates_it_names() -> None:
    binding = PeerBinding(
        parse_peer_facilities("interface.chu-x.fr=CHU-X|CHU-X-LAB,hub=*,oid=CHU-Z^1.2.3^ISO")
    )
    assert binding.allows("interface.chu-x.fr", "CHU-X-LAB")
    assert binding.allows("interface.chu-x.fr", "CHU-X")
    assert not binding.allows("interface.chu-x.fr", "interface.chu-x.fr")
    assert not binding.allows("interface.chu-x.fr", "CHU-Y")
    assert binding.allows("hub", "ANYONE")
    assert binding.allows("oid", "CHU-Z^1.2.3^ISO")  # a whole HD can be listed
    assert not binding.allows("oid", "CHU-Z")
    assert binding.allows("CHU-Y", "CHU-Y")  # not listed: its CN


def test_the_subject_is_the_last_cn_of_the_certificate() -> None:
    cert = {
        "subject": (
            (("countryName", "FR"),),
            (("organizationName", "CHU X"),),
            (("commonName", "ignored"),),
            (("commonName", "CHU-X"),),
        )
    }
    assert certificate_subject(cert) == "CHU-X"
    assert certificate_subject({"subject": ((("organizationName", "CHU X"),),)}) is None
    assert certificate_subject(None) is None
    assert certificate_subject({}) is None


def test_only_the_msh_segment_is_read() -> None:
    assert first_line(MESSAGE).startswith(b"MSH|")
    assert b"PID" not in first_line(MESSAGE)
    assert first_line(MESSAGE.replace(b"\r", b"\n")) == first_line(MESSAGE)
    assert len(first_line(b"MSH|" + b"x" * (1 << 20))) == 64 * 1024


class Rejections:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def frame_rejected(self, reason: str) -> None:
        self.reasons.append(reason)


async def test_a_message_for_another_facility_gets_ar_and_never_reaches_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[bytes] = []

    async def handler(payload: bytes) -> bytes:
        handled.append(payload)
        return b"MSA|AA|CTRL-7\r"

    rejections = Rejections()
    bound = BoundHandler(handler, PeerBinding(), "CHU-X", "10.0.0.5:40000", rejections)
    ack = (await bound(MESSAGE)).decode()
    assert handled == []
    assert rejections.reasons == ["peer-not-bound"]
    msh, msa, err = ack.rstrip("\r").split("\r")
    assert msh.startswith("MSH|^~\\&|RELAIS|RELAIS|GAM|CHU-Y|")
    assert msa == "MSA|AR|CTRL-7"
    fields = err.split("|")
    assert fields[2] == "MSH^1^4"
    assert fields[3] == "207^Application internal error^HL70357"
    assert fields[5] == "906^Autre erreur^applicationErrorCode"
    assert "the client certificate CN=CHU-X may send for MSH-4 CHU-X only, not CHU-Y" in fields[8]
    assert "RELAIS_MLLP_PEER_FACILITIES" in fields[8]
    # the log names the message by MSH-10 only: no patient data
    assert "CTRL-7" in caplog.text
    assert "279035121518989" not in caplog.text
    assert "PAT" not in caplog.text
    assert await BoundHandler(handler, PeerBinding(), "CHU-Y", "p", rejections)(MESSAGE)
    assert handled == [MESSAGE]


async def test_without_a_certificate_subject_every_message_is_refused() -> None:
    async def handler(payload: bytes) -> bytes:
        raise AssertionError("handed over")

    bound = BoundHandler(handler, PeerBinding(), None, "p", Rejections())
    ack = (await bound(MESSAGE)).decode()
    assert "MSA|AR|CTRL-7" in ack
    assert "no client certificate with a subject CN" in ack
    assert "\rMSA|AR|\r" in (await bound(b"not hl7")).decode()


def test_the_binding_applies_with_client_certificates_only(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / name for name in ("s.pem", "s.key", "ca.pem"))
    assert peer_binding(MllpSettings()) is None  # plain TCP
    assert peer_binding(MllpSettings(tls_cert=cert, tls_key=key)) is None  # server-only TLS
    mutual = MllpSettings(tls_cert=cert, tls_key=key, client_ca=ca, peer_facilities="a=B|C")
    assert peer_binding(mutual) == PeerBinding({"a": frozenset({"B", "C"})})
    assert peer_binding(MllpSettings(tls_cert=cert, tls_key=key, client_ca=ca)) == PeerBinding()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            MllpSettings(peer_facilities="a=B"),
            "RELAIS_MLLP_PEER_FACILITIES .* RELAIS_MLLP_CLIENT_CA",
        ),
        (
            MllpSettings(client_ca=Path("ca.pem")),
            "RELAIS_MLLP_CLIENT_CA needs RELAIS_MLLP_TLS_CERT",
        ),
    ],
)
def test_a_binding_that_cannot_apply_is_a_settings_error(
    settings: MllpSettings, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        gateway_config(settings)


def test_unusable_tls_files_are_named_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not PEM")
    settings = MllpSettings(tls_cert=junk, tls_key=junk, client_ca=junk)
    with pytest.raises(SettingsError, match=r"RELAIS_MLLP_TLS_CERT=.* not usable PEM material"):
        gateway_config(settings)


def test_a_certificate_named_star_is_no_hub() -> None:
    binding = PeerBinding()
    assert not binding.allows("*", "CHU-X")
    mapped = PeerBinding(parse_peer_facilities("hub.region.fr=*"))
    assert mapped.allows("hub.region.fr", "CHU-X")


@pytest.mark.parametrize("prefix", [b"\r\n", b"\n", b"\xef\xbb\xbf", b"\r\n\xef\xbb\xbf"])
def test_the_header_is_found_after_leading_line_ends_and_a_bom(prefix: bytes) -> None:
    msh = b"MSH|^~\\&|APP|CHU-X|RELAIS|RELAIS|20250101||ORU^R01|1|P|2.5"
    assert first_line(prefix + msh + b"\rPID|1") == msh
