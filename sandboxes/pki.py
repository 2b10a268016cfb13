"""A throw-away test PKI for the DMP sandbox: a CA, the sandbox's server certificate, a structure's.

The real DMP trusts the IGC-Santé: the structure authenticates (mutual TLS) and signs
its VIHF with its "cachet" certificate. Locally, :func:`write_test_pki` makes a test CA
that plays the IGC-Santé, the sandbox's HTTPS certificate (127.0.0.1, localhost) and a
structure certificate (client authentication and signature) issued by that CA. Nothing
here is fit for anything but tests and the demo: keys are written unencrypted.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = timedelta(days=30)


@dataclass(frozen=True)
class SandboxPki:
    """Where the PEM files of one test PKI lie."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path  # the structure's certificate (mTLS and VIHF signature)
    client_key: Path

    @classmethod
    def under(cls, directory: Path) -> SandboxPki:
        """The paths of the PKI files in ``directory`` (written by :func:`write_test_pki`)."""
        return cls(
            ca_cert=directory / "ca.pem",
            server_cert=directory / "server.pem",
            server_key=directory / "server.key",
            client_cert=directory / "structure.pem",
            client_key=directory / "structure.key",
        )

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context requiring a client certificate issued by the test CA (mTLS)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_cert))
        context.load_cert_chain(self.server_cert, self.server_key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def usable(self, now: datetime, server_names: tuple[str, ...] = ()) -> bool:
        """Every file is there, the CA is valid for at least another day, and the server
        certificate names ``server_names``."""
        if not all(path.exists() for path in vars(self).values()):
            return False
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        server = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
        names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        named = set(names.get_values_for_type(x509.DNSName))
        return ca.not_valid_after_utc > now + timedelta(days=1) and set(server_names) <= named


def write_test_pki(
    directory: Path,
    *,
    structure_id: str,
    ca_name: str = "RELAIS TEST IGC-SANTE",
    server_names: tuple[str, ...] = (),
) -> SandboxPki:
    """Write a fresh CA, server and structure certificate (with keys) under ``directory``.

    The server certificate names 127.0.0.1 and localhost, plus ``server_names`` (the
    sandbox's host name on a compose network, e.g. ``dmp-sandbox``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(minutes=5)  # tolerate small clock skews
    ca, ca_key = _ca(ca_name, now)
    pki = SandboxPki.under(directory)
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_key = _key()
    server = _server(server_key, ca, ca_key, now, server_names)
    _write(pki.server_cert, pki.server_key, server, server_key)
    client_key = _key()
    client = _structure(client_key, structure_id, ca, ca_key, now)
    _write(pki.client_cert, pki.client_key, client, client_key)
    return pki


def _ca(ca_name: str, now: datetime) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """The self-signed test CA (certificate signing only), playing the IGC-Santé."""
    ca_key = _key()
    ca_subject = _name(ca_name, "RELAIS TEST")
    ca = (
        _builder(ca_subject, ca_subject, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca, ca_key


def _server(
    key: rsa.RSAPrivateKey,
    ca: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    now: datetime,
    server_names: tuple[str, ...],
) -> x509.Certificate:
    """The sandbox's HTTPS certificate: 127.0.0.1, localhost and ``server_names``."""
    return (
        _leaf(_name("127.0.0.1", "RELAIS DMP SANDBOX"), key, ca, ca_key, now)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *(x509.DNSName(name) for name in server_names),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _structure(
    key: rsa.RSAPrivateKey,
    structure_id: str,
    ca: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    now: datetime,
) -> x509.Certificate:
    """The structure's certificate (client authentication, and the VIHF's signature)."""
    return (
        _leaf(_name("RELAIS TEST STRUCTURE", structure_id), key, ca, ca_key, now)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RELAIS TEST"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
    )


def _leaf(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    ca: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    now: datetime,
) -> x509.CertificateBuilder:
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        _builder(subject, ca.subject, key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write(cert_path: Path, key_path: Path, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
