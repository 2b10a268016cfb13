"""The mss_bridge exception tree: every message says what went wrong and what to fix.

Foreign errors (aiosmtplib, aioimaplib, zipfile, lxml, email) are translated at the
edge; nothing above an adapter sees a third-party exception. ``retriable`` says
whether trying the same thing again later can succeed; ``reason_code`` is the
stable code written into dead letters and metrics. Messages never quote a
patient identity, an address's local part or document content.

::

    MssError
     ├── AddressError          a mail address is not a valid MSSanté address
     ├── PackageError          an IHE XDM package cannot be built or read
     ├── MailFormatError       a received mail cannot be taken in (no document, ...)
     ├── VerificationError     a received document fails a check (INS, CDA, hash)
     ├── AcknowledgementError  a DSN or MDN cannot be read
     ├── SmtpError             the operator's SMTP server did not take a message
     │    ├── SmtpTransient    4xx, timeout, connection lost: retried with backoff
     │    └── SmtpPermanent    5xx: reported as a REJECTED delivery
     ├── ImapError             the mailbox cannot be read now (retriable)
     └── ConfigError           a RELAIS_MSS_* value cannot be used (names the variable)
"""

from __future__ import annotations


class MssError(Exception):
    """Base of mss_bridge errors."""

    retriable = False
    reason_code = "mss-error"

    def __init__(self, message: str, *, reason_code: str | None = None) -> None:
        super().__init__(message)
        self.reason = message
        if reason_code is not None:
            self.reason_code = reason_code


class AddressError(MssError):
    """The address is not a mail address Relais may send to (or read from)."""

    reason_code = "mss-bad-address"


class PackageError(MssError):
    """An IHE_XDM.ZIP package cannot be built or unpacked."""

    reason_code = "xdm-invalid"


class MailFormatError(MssError):
    """A received mail is malformed for the MSSanté LPS volet."""

    reason_code = "mail-malformed"


class VerificationError(MssError):
    """A received document fails a check: INS missing or malformed, CDA, hash, size."""

    reason_code = "document-unverified"


class AcknowledgementError(MssError):
    """A delivery status notification (RFC 3464) or MDN (RFC 8098) cannot be read."""

    reason_code = "ack-unreadable"


class SmtpError(MssError):
    """The SMTP server refused or failed a message; ``code`` is its reply code (or None)."""

    reason_code = "smtp-error"

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        enhanced: str | None = None,
        reason_code: str | None = None,
    ) -> None:
        super().__init__(message, reason_code=reason_code)
        self.code = code
        self.enhanced = enhanced

    @property
    def reply(self) -> str:
        """The reply as a short code for status records: ``550 5.1.1`` or ``connection``."""
        parts = [str(self.code) if self.code else "", self.enhanced or ""]
        return " ".join(p for p in parts if p) or "no-reply"


class SmtpTransient(SmtpError):
    """4xx reply, timeout or lost connection: the same message may pass later."""

    retriable = True
    reason_code = "smtp-transient"


class SmtpPermanent(SmtpError):
    """5xx reply: sending the same message again fails again."""

    reason_code = "smtp-rejected"


class ImapError(MssError):
    """The IMAP server cannot be reached, refused the login or a command failed."""

    retriable = True
    reason_code = "imap-error"


class ConfigError(MssError):
    """A RELAIS_MSS_* value cannot be used; the message names the variable."""

    reason_code = "mss-config"
