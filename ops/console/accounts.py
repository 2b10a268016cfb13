"""The console's local operator accounts, and who may sign in (pure but for the file).

An account is a name, roles and a scrypt hash of its password (with its own random salt
and the cost parameters it was hashed with), kept in a JSON file readable by its owner
only (0600): RELAIS_CONSOLE_ACCOUNTS, by default ``console-accounts.json`` under
RELAIS_DATA_DIR. ``relais console account add|list|remove`` edits it.

:class:`Authenticator` is what the server asks to sign someone in; :class:`LocalAuthenticator`
checks the accounts file. An OpenID Connect provider (Pro Santé Connect) would be another
implementation of the same protocol (RELAIS_CONSOLE_AUTH names which).
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ops.console.errors import AccountError

#: what an operator may do beyond reading: replay and reveal dead letters; identity decisions
ROLES = ("operator", "identitovigilance")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_N, _R, _P, _LENGTH = 2**14, 8, 1, 32
MIN_PASSWORD = 12


@dataclass(frozen=True)
class Operator:
    """Who is signed in: the name the audit trail writes, and what they may do."""

    name: str
    roles: tuple[str, ...]

    def may(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Account:
    """One local account as the file keeps it (salt and hash in base64)."""

    name: str
    roles: tuple[str, ...]
    salt: str
    hash: str
    n: int = _N
    r: int = _R
    p: int = _P

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "roles": list(self.roles)}


def _scrypt(salt: bytes, n: int, r: int, p: int) -> Scrypt:
    return Scrypt(salt=salt, length=_LENGTH, n=n, r=r, p=p)


def new_account(name: str, password: str, roles: Sequence[str]) -> Account:
    """An account with a fresh salt; refuses a bad name, a short password, an unknown role."""
    if not _NAME.match(name):
        raise AccountError(
            f"{name!r}: an account name is 1 to 64 letters, digits, '.', '_', '@' or '-'"
        )
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have {MIN_PASSWORD} characters at least")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise AccountError(f"unknown role {unknown[0]!r}: choose from {', '.join(ROLES)}")
    salt = secrets.token_bytes(16)
    digest = _scrypt(salt, _N, _R, _P).derive(password.encode())
    return Account(
        name=name,
        roles=tuple(dict.fromkeys(roles)),
        salt=base64.b64encode(salt).decode(),
        hash=base64.b64encode(digest).decode(),
    )


def password_matches(account: Account, password: str) -> bool:
    """Whether ``password`` is the account's (scrypt's verify compares in constant time)."""
    kdf = _scrypt(base64.b64decode(account.salt), account.n, account.r, account.p)
    try:
        kdf.verify(password.encode(), base64.b64decode(account.hash))
    except InvalidKey:
        return False
    return True


_DUMMY = new_account("nobody", secrets.token_urlsafe(16), ())


def load_accounts(path: Path) -> dict[str, Account]:
    """The accounts of the file, by name; a missing file has none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AccountError(
            f"cannot read the accounts file {path}: {exc} (RELAIS_CONSOLE_ACCOUNTS)"
        ) from None
    try:
        found = [Account(**{**a, "roles": tuple(a["roles"])}) for a in data.get("accounts", [])]
    except (TypeError, KeyError, AttributeError) as exc:
        raise AccountError(f"the accounts file {path} is not one Relais wrote: {exc}") from None
    return {a.name: a for a in found}


def save_accounts(path: Path, accounts: Mapping[str, Account]) -> None:
    """Write the file atomically, readable and writable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(
        {"version": 1, "accounts": [a.to_json() for _, a in sorted(accounts.items())]}, indent=2
    )
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(body + "\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def add_account(path: Path, name: str, password: str, roles: Sequence[str]) -> Account:
    accounts = load_accounts(path)
    if name in accounts:
        raise AccountError(f"account {name} exists: remove it first to change it")
    account = new_account(name, password, roles)
    save_accounts(path, {**accounts, name: account})
    return account


def remove_account(path: Path, name: str) -> None:
    accounts = load_accounts(path)
    if name not in accounts:
        raise AccountError(f"no account {name} in {path}")
    save_accounts(path, {k: v for k, v in accounts.items() if k != name})


class Authenticator(Protocol):
    """Signs an operator in from the sign-in form, or says no (None)."""

    def sign_in(self, form: Mapping[str, str]) -> Operator | None: ...


@dataclass(frozen=True)
class LocalAuthenticator:
    """Names and passwords of the local accounts file (read at each sign-in: an account
    added or removed counts at once)."""

    path: Path

    def sign_in(self, form: Mapping[str, str]) -> Operator | None:
        name, password = form.get("name", ""), form.get("password", "")
        account = load_accounts(self.path).get(name)
        if account is None:  # as slow as a wrong password: names are not probed by timing
            password_matches(_DUMMY, password)
            return None
        if not password_matches(account, password):
            return None
        if not hmac.compare_digest(account.name.encode(), name.encode()):
            return None
        return Operator(account.name, account.roles)
