"""The console's local operator accounts, and who may sign in (pure but for the file).

An account is a name, roles and a scrypt hash of its password (with its own random salt
and the cost parameters it was hashed with), kept in a JSON file readable by its owner
only (0600): RELAIS_CONSOLE_ACCOUNTS, by default ``console-accounts.json`` under
RELAIS_DATA_DIR. ``relais console account add|list|remove`` edits it, one edit at a time
(a lock file beside it), atomically and durably.

:class:`Authenticator` is what the server asks to sign someone in, and whether they still
may; :class:`LocalAuthenticator` checks the accounts file. An OpenID Connect provider (Pro
Santé Connect) is another implementation of the same protocol, through its ``start`` and
``callback`` hooks; :func:`authenticator_for` picks one by RELAIS_CONSOLE_AUTH.
"""

from __future__ import annotations

import base64
import fcntl
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ops.console.errors import AccountError
from relais.private_file import write_private

#: what an operator may do beyond reading: replay and reveal dead letters; identity decisions
ROLES = ("operator", "identitovigilance")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_N, _R, _P, _LENGTH = 2**14, 8, 1, 32
MIN_PASSWORD = 12
#: keys the accounts' fingerprints: this process's own, as the sessions that keep them
_FINGERPRINT_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class Operator:
    """Who is signed in: the name the audit trail writes, what they may do, and which
    version of their account signed in (:meth:`Account.fingerprint`; "" where a provider
    has none): another fingerprint at a later request ends the session."""

    name: str
    roles: tuple[str, ...]
    fingerprint: str = field(default="", repr=False)

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

    def fingerprint(self) -> str:
        """This version of the account: a new password (a new salt and hash) changes it. A
        keyed hash (HMAC-SHA-256, a key of this process) of the salt, hash and costs, never
        the hash itself; kept in the server's memory with the session, never in a cookie."""
        material = json.dumps([self.salt, self.hash, self.n, self.r, self.p]).encode()
        return hmac.new(_FINGERPRINT_KEY, material, "sha256").hexdigest()

    def operator(self) -> Operator:
        return Operator(self.name, self.roles, self.fingerprint())


def valid_name(name: str) -> bool:
    """Whether ``name`` could be an account's (what sign-in checks before anything else)."""
    return _NAME.fullmatch(name) is not None


def _scrypt(salt: bytes, n: int, r: int, p: int) -> Scrypt:
    return Scrypt(salt=salt, length=_LENGTH, n=n, r=r, p=p)


def new_account(name: str, password: str, roles: Sequence[str]) -> Account:
    """An account with a fresh salt; refuses a bad name, a short password, an unknown role."""
    if not valid_name(name):
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
    """Write the file atomically and durably (a fresh temporary file in the same folder,
    flushed, renamed over, the folder flushed), readable and writable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(
        {"version": 1, "accounts": [a.to_json() for _, a in sorted(accounts.items())]}, indent=2
    )
    write_private(path, body + "\n")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The accounts file's lock (``<file>.lock``): one edit at a time, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def add_account(path: Path, name: str, password: str, roles: Sequence[str]) -> Account:
    account = new_account(name, password, roles)  # the slow hash, outside the lock
    with _locked(path):
        accounts = load_accounts(path)
        if name in accounts:
            raise AccountError(f"account {name} exists: remove it first to change it")
        save_accounts(path, {**accounts, name: account})
    return account


def remove_account(path: Path, name: str) -> None:
    with _locked(path):
        accounts = load_accounts(path)
        if name not in accounts:
            raise AccountError(f"no account {name} in {path}")
        save_accounts(path, {k: v for k, v in accounts.items() if k != name})


@dataclass(frozen=True)
class Redirect:
    """Where a provider that signs in elsewhere (OpenID Connect) sends the browser, and the
    opaque ``state`` the console keeps in a short-lived cookie until the callback."""

    url: str
    state: str


class Authenticator(Protocol):
    """Who signs in, and whether a signed-in operator still may (a new provider is a new
    class: the server calls these and nothing else).

    ``sign_in(form)``: the sign-in form's answer (None: refused). ``current(operator)``:
    the operator as their account is now, at each request (None: gone; another
    fingerprint: made again, e.g. a new password; either ends the session).
    ``start(next_path)``: a provider that signs in elsewhere returns where to send the
    browser (None: show the form). ``callback(query, state)``: its answer when the browser
    comes back to ``/sign-in/callback`` (None: refused).
    """

    def sign_in(self, form: Mapping[str, str]) -> Operator | None: ...

    def current(self, operator: Operator) -> Operator | None: ...

    def start(self, next_path: str) -> Redirect | None: ...

    def callback(self, query: Mapping[str, str], state: str | None) -> Operator | None: ...


@dataclass
class LocalAuthenticator:
    """Names and passwords of the local accounts file, read again whenever it changed (an
    account added, removed or made again counts at the next request)."""

    path: Path
    _seen: tuple[int, int, int] | None = None
    _accounts: dict[str, Account] = field(default_factory=dict)

    def accounts(self) -> dict[str, Account]:
        try:
            info = self.path.stat()
            seen = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            seen = (0, 0, 0)
        if seen != self._seen:
            self._accounts, self._seen = load_accounts(self.path), seen
        return self._accounts

    def sign_in(self, form: Mapping[str, str]) -> Operator | None:
        name, password = form.get("name", ""), form.get("password", "")
        account = self.accounts().get(name)
        if account is None:  # as slow as a wrong password: names are not probed by timing
            password_matches(_DUMMY, password)
            return None
        if not password_matches(account, password):
            return None
        if not hmac.compare_digest(account.name.encode(), name.encode()):
            return None
        return account.operator()

    def current(self, operator: Operator) -> Operator | None:
        account = self.accounts().get(operator.name)
        return None if account is None else account.operator()

    def start(self, next_path: str) -> Redirect | None:
        return None  # the form of /sign-in

    def callback(self, query: Mapping[str, str], state: str | None) -> Operator | None:
        return None  # no provider comes back here


def authenticator_for(auth: str, accounts: Path) -> Authenticator:
    """The provider RELAIS_CONSOLE_AUTH names (``local`` today)."""
    makers: dict[str, Callable[[], Authenticator]] = {
        "local": lambda: LocalAuthenticator(accounts),
    }
    maker = makers.get(auth)
    if maker is None:
        raise AccountError(f"RELAIS_CONSOLE_AUTH={auth!r}: choose from {', '.join(makers)}")
    return maker()
