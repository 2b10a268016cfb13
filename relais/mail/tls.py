"""The TLS client context of Relais towards an MSSanté operator (SMTP and IMAP alike)."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(
    ca_file: Path | None, client_cert: Path | None, client_key: Path | None
) -> ssl.SSLContext:
    """Verify the operator's server against ``ca_file`` (the system store when None), TLS 1.2+,
    and present Relais's client certificate when one is given.

    Raises ``OSError`` / ``ssl.SSLError`` when the files cannot be read: the caller says which
    settings to check.
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return context
