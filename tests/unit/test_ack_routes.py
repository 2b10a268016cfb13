"""RELAIS_ACK_ROUTES (and the TLS of its /tls routes) and the producer's answer to a ZAM."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from producers.mllp.ack_routes import (
    AckRouteError,
    Endpoint,
    accepted,
    parse_routes,
    routes_from,
)
from relais.settings import AckSettings, SettingsError


def test_routes_map_each_facility_to_its_listener() -> None:
    routes = parse_routes(" CHU-X=10.0.0.5:6661, LABO-Y = lab.example:2575 ,")
    assert dict(routes) == {
        "CHU-X": Endpoint("10.0.0.5", 6661),
        "LABO-Y": Endpoint("lab.example", 2575),
    }
    assert dict(parse_routes("")) == {}


@pytest.mark.parametrize("bad", ["CHU-X", "CHU-X=host", "=h:1", "CHU-X=h:port", "CHU-X=h:70000"])
def test_a_bad_route_names_itself(bad: str) -> None:
    with pytest.raises(AckRouteError, match="RELAIS_ACK_ROUTES"):
        parse_routes(bad)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"MSH|^~\\&|A|B|C|D|20261122||ACK|1|P|2.6\rMSA|AA|ZAM1\r", (True, "AA")),
        (b"MSH|^~\\&|A|B|C|D|20261122||ACK|1|P|2.6\rMSA|CA|ZAM1\r", (True, "CA")),
        (b"MSH|^~\\&|A|B|C|D|20261122||ACK|1|P|2.6\nMSA|AE|ZAM1\n", (False, "AE")),
        (b"MSH|^~\\&|A|B|C|D|20261122||ACK|1|P|2.6\rMSA|AR|ZAM1\r", (False, "AR")),
        (b"garbage", (False, "no MSA")),
    ],
)
def test_the_producer_takes_the_zam_with_aa_or_ca(
    answer: bytes, expected: tuple[bool, str]
) -> None:
    assert accepted(answer) == expected


def test_a_route_ending_in_tls_is_mllp_over_tls() -> None:
    routes = parse_routes("CHU-X=10.0.0.5:6661/tls,LAB=lab.example:2575")
    assert routes["CHU-X"] == Endpoint("10.0.0.5", 6661, tls=True)
    assert str(routes["CHU-X"]) == "10.0.0.5:6661/tls"
    assert routes["LAB"].ssl_context() is None
    context = routes["CHU-X"].ssl_context()  # no settings: the system's trust store
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    with pytest.raises(AckRouteError, match="the only suffix is /tls"):
        parse_routes("CHU-X=10.0.0.5:6661/ssl")


def test_tls_routes_get_the_ack_tls_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(ssl.DER_cert_to_PEM_cert(_self_signed()).encode())
    routes = routes_from(AckSettings(routes="A=h:1/tls,B=h:2", ca_file=ca))
    context = routes["A"].context
    assert context is not None
    assert context.get_ca_certs()  # the CA of RELAIS_ACK_CA_FILE
    assert routes["B"].context is None
    assert routes_from(AckSettings(routes="B=h:2")) == {"B": Endpoint("h", 2)}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            AckSettings(client_cert=Path("c.pem")),
            "RELAIS_ACK_CLIENT_CERT and RELAIS_ACK_CLIENT_KEY",
        ),
        (AckSettings(routes="A=h:1/tls", ca_file=Path("/nowhere.pem")), "RELAIS_ACK_CA_FILE="),
        (
            AckSettings(routes="A=h:1/tls", client_cert=Path("/no.pem"), client_key=Path("k")),
            "RELAIS_ACK_CLIENT_CERT=/no.pem: no such file",
        ),
    ],
)
def test_a_tls_setting_to_fix_is_named(settings: AckSettings, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        routes_from(settings)


def test_unusable_pem_material_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(SettingsError, match=r"RELAIS_ACK_CA_FILE=.*no usable CA certificate"):
        routes_from(AckSettings(routes="A=h:1/tls", ca_file=junk))
    with pytest.raises(SettingsError, match=r"RELAIS_ACK_CLIENT_CERT=.*RELAIS_ACK_CLIENT_KEY="):
        routes_from(AckSettings(routes="A=h:1/tls", client_cert=junk, client_key=junk))


def _self_signed() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)
