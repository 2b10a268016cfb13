"""A throw-away PKI for the MLLP TLS tests: a CA, a server certificate for 127.0.0.1 and
localhost, client certificates by common name (EC keys: fast to make)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class TestCa:
    """A CA whose certificate is ``<folder>/<name>-ca.crt``; it issues into ``folder``."""

    __test__ = False  # not a pytest class

    def __init__(self, folder: Path, name: str = "relais-test") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.name = folder, name
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._subject = _name(f"{name} CA")
        self._cert = self._sign(
            self._subject,
            self._key,
            [(x509.BasicConstraints(ca=True, path_length=0), True)],
        )
        self.cert = folder / f"{name}-ca.crt"
        self.cert.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def server(self, common_name: str = "127.0.0.1") -> Issued:
        """A server certificate naming 127.0.0.1 and localhost."""
        names = x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        )
        usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        return self._leaf(common_name, "server", [(names, False), (usage, False)])

    def client(self, common_name: str) -> Issued:
        """A client certificate whose subject is CN=``common_name``."""
        usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
        return self._leaf(common_name, f"client-{common_name}", [(usage, False)])

    def _leaf(
        self, common_name: str, stem: str, extensions: list[tuple[x509.ExtensionType, bool]]
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = [(x509.BasicConstraints(ca=False, path_length=None), True), *extensions]
        cert = self._sign(_name(common_name), key, leaf)
        issued = Issued(
            self.folder / f"{self.name}-{stem}.crt", self.folder / f"{self.name}-{stem}.key"
        )
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued

    def _sign(
        self,
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        issuer = getattr(self, "_subject", subject)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self._key, hashes.SHA256())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RELAIS TEST"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
