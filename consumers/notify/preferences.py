"""How each patient wants to be told (pure parsing, one file read at start).

The preferences file is JSON, keyed by the patient's pseudonym (``patient_key``:
the keyed HMAC of the INS that every record carries, see :func:`preference_key`),
so the file never holds an INS next to an address::

    {"version": 1,
     "patients": {
       "3f9c…": {"channel": "email", "address": "patient@example.org"},
       "a41b…": {"channel": "sms", "phone": "+33612345678"},
       "77d0…": {"channel": "none"},
       "c2e8…": {"channel": "mssante"}}}

A patient who is not listed is told in their Mon espace santé mailbox
(``<INS>@patient.mssante.fr``, the ``mssante`` channel). ``none`` means "no
notifications". Addresses and phone numbers are patient data: they are kept out of
``repr``, logs and error messages (an error names the entry by the first characters
of its key, which is already a pseudonym).

Errors::

    PreferencesError    the file cannot be read or an entry is wrong (says which and why)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from relais.keyring import Keyring, pseudonymise

E164: Final = re.compile(r"\+[1-9][0-9]{7,14}")
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_EMAIL: Final = re.compile(rf"[^@\s<>\"(),;:]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")
_KEY: Final = re.compile(r"[0-9a-f]{64}")


class PreferencesError(ValueError):
    """The preferences file is unreadable or one of its entries is wrong."""


class Channel(StrEnum):
    MSSANTE = "mssante"  # the patient's Mon espace santé mailbox
    EMAIL = "email"
    SMS = "sms"
    NONE = "none"  # the patient asked not to be notified


@dataclass(frozen=True)
class Preference:
    channel: Channel
    address: str | None = field(default=None, repr=False)  # e-mail address or E.164 phone

    def __repr__(self) -> str:
        return f"Preference({self.channel.value})"


DEFAULT: Final = Preference(Channel.MSSANTE)


@dataclass(frozen=True)
class Preferences:
    by_patient: Mapping[str, Preference] = field(default_factory=dict, repr=False)

    def of(self, patient_key: str) -> Preference:
        return self.by_patient.get(patient_key, DEFAULT)

    def __len__(self) -> int:
        return len(self.by_patient)


def preference_key(keyring: Keyring, ins: str, ins_oid: str) -> str:
    """The ``patient_key`` of a patient known by their INS (as the producers compute it)."""
    return pseudonymise(keyring, f"{ins_oid}|{ins}")


def parse_preferences(text: str, *, origin: str = "preferences") -> Preferences:
    """Read the JSON text; :class:`PreferencesError` names the entry and the rule it breaks."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PreferencesError(f"{origin}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("version") != 1:
        raise PreferencesError(f'{origin}: expected an object with "version": 1 and "patients"')
    patients = data.get("patients", {})
    if not isinstance(patients, dict):
        raise PreferencesError(f'{origin}: "patients" must map patient keys to preferences')
    return Preferences({key: _entry(origin, key, raw) for key, raw in patients.items()})


def load_preferences(path: Path | None) -> Preferences:
    """The preferences in ``path``; none (everyone by MSSanté) when ``path`` is None."""
    if path is None:
        return Preferences()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PreferencesError(
            f"cannot read the notification preferences {path} ({exc.strerror}); "
            "fix RELAIS_NOTIFY_PREFERENCES"
        ) from None
    return parse_preferences(text, origin=str(path))


def _entry(origin: str, key: str, raw: object) -> Preference:
    where = f"{origin}: patient {key[:8]}…"
    if not _KEY.fullmatch(key):
        raise PreferencesError(
            f"{where}: a key is the patient_key (64 hex characters, the HMAC of the INS)"
        )
    if not isinstance(raw, dict):
        raise PreferencesError(f'{where}: expected an object such as {{"channel": "mssante"}}')
    try:
        channel = Channel(raw.get("channel", ""))
    except ValueError:
        names = ", ".join(c.value for c in Channel)
        raise PreferencesError(f"{where}: channel must be one of {names}") from None
    if channel is Channel.EMAIL:
        address = raw.get("address")
        if not isinstance(address, str) or not _EMAIL.fullmatch(address.strip()):
            raise PreferencesError(f'{where}: "email" needs "address": a valid e-mail address')
        return Preference(channel, address.strip())
    if channel is Channel.SMS:
        phone = raw.get("phone")
        if not isinstance(phone, str) or not E164.fullmatch(phone.replace(" ", "")):
            raise PreferencesError(
                f'{where}: "sms" needs "phone" in international form, e.g. +33612345678'
            )
        return Preference(channel, phone.replace(" ", ""))
    return Preference(channel)
