"""Real mail servers for the mss_bridge tests: Dovecot (IMAPS + LMTP) and Postfix.

One session fixture, :func:`mss_mail_servers`, starts on 127.0.0.1 and free ports:

- a test PKI made with ``cryptography``: a CA, the servers' certificate
  (``127.0.0.1``/``localhost``) and Relais's client certificate;
- Dovecot (master as root, mail processes as ``nobody``; this machine's /dev/null is
  not writable by other users, so the rootless recipe of LOCAL-STACK.md fails here): IMAPS requiring a client certificate signed by
  the CA, LMTP for local delivery, mailboxes from a passwd-file (an unknown user is
  refused, so Postfix bounces with a real DSN);
- Postfix (as root, its children as ``postfix``): a submission port with STARTTLS
  that requires a verified client certificate, an implicit-TLS port, DSN support,
  relaying the test MSSanté domains into Dovecot over LMTP. A recipient listed in
  ``BUSY`` gets a 450 (transient) at RCPT time, a domain outside the relay domains
  a 554 (permanent).

The Debian packages are installed when missing (``apt-get``, as CI runs as root; the
machine's policy-rc.d keeps their default daemons from starting on public ports).
If a server cannot start, the fixture fails and says why (tests are never skipped).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import pwd
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aioimaplib import IMAP4_SSL
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ops.broker import LocalBroker
from relais.contracts import Codec, Record
from relais.topic_admin import ensure_topics

DOMAINS = ("ch-relais.mssante.fr", "medecin.mssante.fr", "patient.mssante.fr")
RELAIS = "relais@ch-relais.mssante.fr"  # Relais's application mailbox (BAL applicative)
DOCTOR = "dr.martin@medecin.mssante.fr"
OUTBOX = "outbox@ch-relais.mssante.fr"  # the sender of the outbound tests (their DSNs land there)
DURAND = "dr.durand@medecin.mssante.fr"  # the inbound tests' doctor, a mailbox of their own
PATIENT = "279035121518989@patient.mssante.fr"
BUSY = "busy.doctor@medecin.mssante.fr"  # 450 at RCPT: transient
PASSWORD = "secret-test-password"
USERS = (
    "relais",
    "outbox",
    "dr.martin",
    "dr.durand",
    "279035121518989",
    "busy.doctor",
    "secretariat",
)
PACKAGES = ("dovecot-imapd", "dovecot-lmtpd", "postfix")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_packages() -> None:
    """Install Dovecot and Postfix from Debian when missing."""
    have = (
        shutil.which("dovecot") or Path("/usr/sbin/dovecot").exists(),
        Path("/usr/lib/dovecot/lmtp").exists(),
        Path("/usr/sbin/postfix").exists(),
    )
    if all(have):
        return
    if os.geteuid() != 0:
        pytest.fail("dovecot-imapd, dovecot-lmtpd and postfix are missing; install them as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr[-800:]!r}")


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verification must fail against it


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _ca(cn: str, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
    now: dt.datetime,
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[1].public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca[1], hashes.SHA256()), key


def make_pki(folder: Path) -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca = _ca("Relais test CA (IGC-Santé stand-in)", now)
    other = _ca("Some other CA", now)
    server = _leaf("localhost", ca, ExtendedKeyUsageOID.SERVER_AUTH, now, server=True)
    client = _leaf(
        "relais.ch-relais.mssante.fr", ca, ExtendedKeyUsageOID.CLIENT_AUTH, now, server=False
    )
    pem = serialization.Encoding.PEM
    pki = Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        other_ca=folder / "other-ca.pem",
    )
    pki.ca.write_bytes(ca[0].public_bytes(pem))
    pki.other_ca.write_bytes(other[0].public_bytes(pem))
    pki.server_cert.write_bytes(server[0].public_bytes(pem))
    _write_key(server[1], pki.server_key)
    pki.client_cert.write_bytes(client[0].public_bytes(pem))
    _write_key(client[1], pki.client_key)
    return pki


@dataclass
class MailServers:
    """Where the servers listen and the material a client needs."""

    root: Path
    pki: Pki
    imaps_port: int
    lmtp_port: int
    smtp_port: int  # STARTTLS, client certificate required
    smtps_port: int  # implicit TLS
    password: str = PASSWORD
    logs: dict[str, Path] = field(default_factory=dict)

    def client_context(self, *, with_cert: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        if with_cert:
            context.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
        return context

    def mailbox_dir(self, user: str) -> Path:
        return self.root / "dovecot" / "mail" / user

    async def imap(self, user: str) -> IMAP4_SSL:
        """A logged-in IMAP client of the test (the recipient's or the operator's own)."""
        client = IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=self.client_context())
        await client.wait_hello_from_server()
        response = await client.login(user, self.password)
        assert response.result == "OK", f"IMAP login of {user} failed: {response.lines}"
        return client

    async def fetch_all(self, user: str, mailbox: str = "INBOX") -> list[bytes]:
        """Every message in ``user``'s mailbox, raw."""
        client = await self.imap(user)
        try:
            await client.select(mailbox)
            found = await client.uid_search("ALL")
            uids = found.lines[0].decode().split() if found.lines and found.lines[0] else []
            messages = []
            for uid in uids:
                response = await client.uid("fetch", uid, "(BODY.PEEK[])")
                messages.append(bytes(response.lines[1]))
            return messages
        finally:
            await client.logout()

    async def wait_for_mail(
        self, user: str, count: int = 1, *, mailbox: str = "INBOX", timeout_s: float = 20
    ) -> list[bytes]:
        deadline = time.monotonic() + timeout_s
        while True:
            messages = await self.fetch_all(user, mailbox)
            if len(messages) >= count or time.monotonic() > deadline:
                return messages
            await asyncio.sleep(0.2)

    def deliver(self, user_address: str, raw: bytes, sender: str = DOCTOR) -> None:
        """Deliver ``raw`` into a mailbox the way the operator's MTA does: over LMTP."""
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            lmtp.sendmail(sender, [user_address], raw)

    def log_tail(self) -> str:
        parts = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            parts.append(f"--- {name} ---\n{text[-3000:]}")
        return "\n".join(parts)


DOVECOT_CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
default_internal_user = dovecot
default_login_user = dovenull
ssl = required
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
ssl_ca = <{d}/ca.pem
ssl_min_protocol = TLSv1.2
ssl_verify_client_cert = yes
ssl_require_crl = no
auth_ssl_require_client_cert = yes
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
  override_fields = uid=nobody gid=nogroup home={d}/mail/%u
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
"""

POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {p}/queue
data_directory = {p}/data
maillog_file = {p}/maillog
maillog_file_prefixes = {p}
syslog_name = postfix-relais-test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mta.localhost
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
relay_domains = {domains}
transport_maps = inline:{{ {transports} }}
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access inline:{{ {{ {busy} = 450 4.2.1 Mailbox busy, try again later }} }}, reject_unauth_destination
smtpd_tls_cert_file = {p}/conf/server.pem
smtpd_tls_key_file = {p}/conf/server.key
smtpd_tls_CAfile = {p}/conf/ca.pem
smtpd_tls_security_level = encrypt
smtpd_tls_loglevel = 1
smtputf8_enable = no
biff = no
bounce_queue_lifetime = 0
maximal_queue_lifetime = 1h
"""

POSTFIX_MASTER = """\
127.0.0.1:{smtp} inet n - n - - smtpd
  -o smtpd_tls_req_ccert=yes
127.0.0.1:{smtps} inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


def _run(command: list[str], what: str, log: Path) -> None:
    """Start a daemon in a session of its own, its output in a file (never a pipe it keeps)."""
    out = log.with_name(log.name + ".start")
    with out.open("wb") as sink:
        code = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=60,
            start_new_session=True,
        ).returncode
    if code != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        output = out.read_text(errors="replace")[-1500:]
        pytest.fail(f"{what} failed ({code}): {output} {tail}")


def _wait_port(port: int, what: str, timeout_s: float = 20, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else "(no log)"
    pytest.fail(f"{what} is not listening on 127.0.0.1:{port} after {timeout_s}s: {tail}")


def start_dovecot(root: Path, pki: Pki, imaps: int, lmtp: int) -> Path:
    d = root / "dovecot"
    for sub in ("run", "state", "mail"):
        (d / sub).mkdir(parents=True)
    for source in (pki.server_cert, pki.server_key, pki.ca):
        shutil.copy(source, d / source.name)
    (d / "users").write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in USERS))
    (d / "dovecot.conf").write_text(DOVECOT_CONF.format(d=d, imaps=imaps, lmtp=lmtp))
    _chown_tree(d / "mail", "nobody")  # mail processes run as the userdb's uid (nobody)
    _run(["dovecot", "-c", str(d / "dovecot.conf")], "dovecot start", d / "dovecot.log")
    _wait_port(imaps, "dovecot IMAPS", log=d / "dovecot.log")
    _wait_port(lmtp, "dovecot LMTP", log=d / "dovecot.log")
    return d


def start_postfix(root: Path, pki: Pki, smtp: int, smtps: int, lmtp: int) -> Path:
    p = root / "postfix"
    conf = p / "conf"
    conf.mkdir(parents=True)
    (p / "data").mkdir()
    (p / "queue").mkdir()
    for source in (pki.server_cert, pki.server_key, pki.ca):
        shutil.copy(source, conf / source.name)
    target = f"lmtp:inet:127.0.0.1:{lmtp}"
    (conf / "main.cf").write_text(
        POSTFIX_MAIN.format(
            p=p,
            domains=", ".join(DOMAINS),
            transports=" ".join(f"{d}={target}" for d in DOMAINS),
            busy=BUSY,
        )
    )
    (conf / "master.cf").write_text(POSTFIX_MASTER.format(smtp=smtp, smtps=smtps))
    postfix = pwd.getpwnam("postfix")
    os.chown(p / "data", postfix.pw_uid, postfix.pw_gid)
    _run(["postfix", "-c", str(conf), "start"], "postfix start", p / "maillog")
    _wait_port(smtp, "postfix submission (STARTTLS)")
    _wait_port(smtps, "postfix submission (implicit TLS)")
    return p


def stop_servers(servers: MailServers) -> None:
    d, p = servers.root / "dovecot", servers.root / "postfix"
    if (p / "conf" / "main.cf").exists():
        subprocess.run(
            ["postfix", "-c", str(p / "conf"), "stop"], capture_output=True, check=False, timeout=60
        )
    if (d / "dovecot.conf").exists():
        subprocess.run(
            ["dovecot", "-c", str(d / "dovecot.conf"), "stop"],
            capture_output=True,
            check=False,
            timeout=60,
        )


@pytest.fixture(scope="session")
def mss_mail_servers() -> Iterator[MailServers]:
    ensure_packages()
    root = Path(tempfile.mkdtemp(prefix="relais-mail-"))
    root.chmod(0o755)  # dovecot runs as nobody and must reach its folder
    pki = make_pki(root)
    servers = MailServers(
        root=root,
        pki=pki,
        imaps_port=free_port(),
        lmtp_port=free_port(),
        smtp_port=free_port(),
        smtps_port=free_port(),
    )
    servers.logs = {
        "dovecot": root / "dovecot" / "dovecot.log",
        "postfix": root / "postfix" / "maillog",
    }
    try:
        start_dovecot(root, pki, servers.imaps_port, servers.lmtp_port)
        start_postfix(root, pki, servers.smtp_port, servers.smtps_port, servers.lmtp_port)
        yield servers
    finally:
        stop_servers(servers)
        shutil.rmtree(root, ignore_errors=True)


# The bus ------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def mss_broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A tansu broker of the mss tests' own (bootstrap address); topics per test prefix."""
    log_path = Path(tmp_path_factory.mktemp("mss-broker")) / "tansu.log"
    async with LocalBroker(listen=f"127.0.0.1:{free_port()}", log_path=log_path) as broker:
        yield broker.bootstrap


async def new_topics(bootstrap: str) -> str:
    """A fresh topic prefix with every topic created."""
    prefix = f"m{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, prefix)
    return prefix


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=16 << 20)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def read_records(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[Record]], bool],
    timeout_s: float = 30.0,
) -> list[Record]:
    """Decode ``topic`` from the start until ``until(records)`` holds (or the timeout)."""
    codec = Codec()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=16 << 20,
    )
    records: list[Record] = []
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(records):
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                records += [codec.decode(m.value)[1] for m in batch]
    finally:
        await consumer.stop()
    return records
