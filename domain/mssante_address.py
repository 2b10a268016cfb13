"""MSSanté mail addresses (pure): validate, classify, and build a patient's address.

STANDARDS.md §5: personal ``prenom.nom@<domaine>.mssante.fr``, organisational and
applicative mailboxes under an operator's ``*.mssante.fr`` domain, and the patient's
Mon espace santé mailbox ``<matricule INS, 15 characters>@patient.mssante.fr``.

Validation follows RFC 5321/5322 in the strict subset MSSanté uses: ASCII only, a
dot-atom local part of at most 64 characters, a domain of letter/digit/hyphen labels
of at most 255 characters, under one of the allowed domain suffixes. Error messages
never echo the local part (for a patient it is the INS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from domain.ins import ins_key_valid
from relais.mail.errors import AddressError

PATIENT_DOMAIN: Final = "patient.mssante.fr"
DEFAULT_SUFFIXES: Final = ("mssante.fr",)
_ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL: Final = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MATRICULE: Final = re.compile(r"[1-478][0-9]{2}(?:[0-9]{2})(?:2[AB]|[0-9]{2})[0-9]{8}")


@dataclass(frozen=True)
class MailAddress:
    """A validated address; ``str()`` gives ``local@domain`` (domain in lower case)."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def is_patient(self) -> bool:
        """The patient's Mon espace santé mailbox (``<INS>@patient.mssante.fr``)."""
        return self.domain == PATIENT_DOMAIN

    def __repr__(self) -> str:
        # The local part may be an INS: keep it out of logs and tracebacks.
        return f"MailAddress(<local part>@{self.domain})"


def parse_address(text: str, suffixes: tuple[str, ...] = DEFAULT_SUFFIXES) -> MailAddress:
    """A :class:`MailAddress`, or :class:`AddressError` saying which rule fails.

    ``suffixes`` are the domains Relais may write to (``mssante.fr`` in production);
    an empty tuple allows any domain.
    """
    value = text.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if not value.isascii():
        raise AddressError("mail address has non-ASCII characters; MSSanté addresses are ASCII")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise AddressError("mail address needs the form local@domain")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise AddressError(
            "mail address local part is not an RFC 5321 dot-atom of at most 64 characters"
        )
    domain = domain.lower().rstrip(".")
    labels = domain.split(".")
    if len(domain) > 255 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels):
        raise AddressError(f"mail domain {domain!r} is not a valid host name")
    if suffixes and not any(domain == s or domain.endswith("." + s) for s in suffixes):
        allowed = ", ".join(suffixes)
        raise AddressError(
            f"mail domain {domain!r} is outside the MSSanté space ({allowed}); "
            "check the recipient or RELAIS_MSS_DOMAINS"
        )
    address = MailAddress(local, domain)
    if address.is_patient:
        _check_patient_local(local)
    return address


def _check_patient_local(local: str) -> None:
    if len(local) != 15 or not _MATRICULE.fullmatch(local.upper()):
        raise AddressError(
            f"a {PATIENT_DOMAIN} address must be the 15-character matricule INS of the patient"
        )
    if not ins_key_valid(local.upper()):
        raise AddressError(
            f"the matricule INS of a {PATIENT_DOMAIN} address has a wrong key (last 2 digits)"
        )


def patient_address(matricule: str) -> MailAddress:
    """The patient's Mon espace santé address from the matricule INS."""
    return parse_address(f"{matricule}@{PATIENT_DOMAIN}")


def operator_domain(address: MailAddress) -> str:
    """The operator label used in metrics: the address's domain, never its local part."""
    return address.domain
