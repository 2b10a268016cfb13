"""Why the bus cannot be reached, in one line a person can act on.

aiokafka reports a refused TLS handshake as "Unable to bootstrap" after a screen of
retries; :func:`diagnose` opens one connection to each bootstrap server the way the
clients would (TCP, then TLS with the same context), sends Kafka's ApiVersions request and
names the first thing that fails and the setting that fixes it: an unreachable address, a
broker certificate the CA file does not vouch for, a broker that wants a client
certificate, a broker that does not speak TLS. SASL itself is not tried here: a wrong
password is reported by the broker, through aiokafka, with its own message.
"""

from __future__ import annotations

import socket
import ssl
import struct

from relais.kafka_clients import Target, connection, ssl_context

__all__ = ["KafkaAccessError", "diagnose"]

_API_VERSIONS = struct.pack(">ihhih", 10, 18, 0, 1, -1)  # size, ApiVersions v0, id 1, no client


_NO_CERT = (
    "it requires a client certificate; set RELAIS_KAFKA_CERT_FILE and RELAIS_KAFKA_KEY_FILE to "
    "one its CA trusts"
)
_CERT_REFUSED = (
    "it refused the client certificate of RELAIS_KAFKA_CERT_FILE: use one issued by a CA the "
    "brokers trust"
)


#: the server's alerts when it does not trust the client certificate it was shown
_UNTRUSTED_CLIENT = ("ALERT_UNKNOWN_CA", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN")


class KafkaAccessError(ConnectionError):
    """The bus cannot be reached as configured; the message says what to set."""


def diagnose(target: Target, timeout_s: float = 3.0) -> str | None:
    """None when a bootstrap server answers; else why none did (the first server's reason)."""
    conn = connection(target)
    servers = [s.strip() for s in conn.bootstrap.split(",") if s.strip()]
    reasons = []
    for server in servers:
        reason = _try(server, ssl_context(conn.security), timeout_s)
        if reason is not None and conn.security.cert_file is not None:
            reason = reason.replace(_NO_CERT, _CERT_REFUSED)
        if reason is None:
            return None
        reasons.append(reason)
    return reasons[0] if reasons else "RELAIS_BOOTSTRAP_SERVERS is empty: name host:port"


def _try(server: str, context: ssl.SSLContext | None, timeout_s: float) -> str | None:
    host, _, port = server.rpartition(":")
    host = host.strip("[]")
    try:
        raw = socket.create_connection((host, int(port)), timeout=timeout_s)
    except (OSError, ValueError) as exc:
        return (
            f"cannot reach the Kafka broker at {server} ({_why(exc)}): start it (`relais "
            "broker`) or set RELAIS_BOOTSTRAP_SERVERS"
        )
    with raw:
        if context is None:
            return _exchange(raw, server, tls=False)
        try:
            with context.wrap_socket(raw, server_hostname=host) as sock:
                return _exchange(sock, server, tls=True)
        except ssl.SSLCertVerificationError as exc:
            return (
                f"the Kafka broker at {server} presented a certificate that does not verify "
                f"({exc.verify_message}): RELAIS_KAFKA_CA_FILE must be the CA that signed the "
                "brokers' certificates, and the certificate must name the host in "
                "RELAIS_BOOTSTRAP_SERVERS"
            )
        except (ssl.SSLError, OSError) as exc:
            return _refused(server, exc)


def _exchange(sock: socket.socket, server: str, *, tls: bool) -> str | None:
    try:
        sock.sendall(_API_VERSIONS)
        answer = sock.recv(8)
    except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
        # the handshake succeeded: a TLS 1.3 server that wants another client certificate
        # says so after it, and its alert may be lost in the reset (which one wins is timing)
        answer = b""
    except (ssl.SSLError, OSError) as exc:
        if tls:
            return _refused(server, exc)
        answer = b""
    if len(answer) >= 8 and struct.unpack(">i", answer[4:8])[0] == 1:
        return None
    if tls:
        return _refused(server, ConnectionResetError("closed after the TLS handshake"))
    return (
        f"the Kafka broker at {server} closed the connection without answering: it probably "
        "requires TLS or SASL; set RELAIS_KAFKA_SECURITY_PROTOCOL (SSL, SASL_SSL...)"
    )


def _refused(server: str, exc: BaseException) -> str:
    text = _why(exc)
    if "CERTIFICATE_REQUIRED" in text.upper() or "closed after the TLS handshake" in text:
        return (
            f"the Kafka broker at {server} refused the connection after the TLS handshake "
            f"({text}): {_NO_CERT}"
        )
    if any(alert in text.upper() for alert in _UNTRUSTED_CLIENT):
        return f"the Kafka broker at {server} refused the TLS handshake ({text}): {_CERT_REFUSED}"
    if "WRONG_VERSION_NUMBER" in text.upper() or "record layer failure" in text.lower():
        return (
            f"the Kafka broker at {server} does not speak TLS there ({text}): set "
            "RELAIS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT or use its TLS listener's port"
        )
    return (
        f"the TLS handshake with the Kafka broker at {server} failed ({text}): check "
        "RELAIS_KAFKA_CA_FILE, RELAIS_KAFKA_CERT_FILE and RELAIS_KAFKA_KEY_FILE"
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
