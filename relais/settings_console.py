"""The document index's and the operator console's settings (``ops.index``,
``ops.console``), parts of :class:`relais.settings.Settings`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relais.settings_env import Env, SettingsError

_SCHEMES = ("postgresql://", "postgresql+psycopg://", "sqlite://")


@dataclass(frozen=True)
class IndexSettings:
    """Where the document index lives (derived data: rebuildable from the topics).

    ``url`` is a PostgreSQL URL (production) or ``sqlite:///path`` (the demo); empty means
    the SQLite file ``index.sqlite3`` under RELAIS_DATA_DIR.
    """

    url: str = ""
    batch: int = 2000  # records written in one transaction, at most
    stats_interval_s: float = 30.0  # how often the per-facility gauges are recomputed

    @classmethod
    def from_env(cls, env: Env) -> IndexSettings:
        d = cls()
        url = env.text("RELAIS_INDEX_URL", d.url)
        if url and not url.startswith(_SCHEMES):
            raise SettingsError(
                f"RELAIS_INDEX_URL: {url.split('://')[0]!r} is not a database Relais indexes "
                "in: use postgresql://USER@HOST:PORT/DB or sqlite:///PATH"
            )
        return cls(
            url=url,
            batch=env.count("RELAIS_INDEX_BATCH", d.batch),
            stats_interval_s=env.seconds("RELAIS_INDEX_STATS_INTERVAL_S", d.stats_interval_s),
        )

    def database_url(self, data_dir: Path) -> str:
        """The SQLAlchemy URL: PostgreSQL through psycopg 3, or the SQLite file."""
        if not self.url:
            return f"sqlite:///{(data_dir / 'index.sqlite3').resolve()}"
        if self.url.startswith("postgresql://"):
            return "postgresql+psycopg://" + self.url[len("postgresql://") :]
        return self.url


@dataclass(frozen=True)
class ConsoleSettings:
    """Where ``relais console`` listens and whom it lets in.

    ``accounts`` is the local accounts file (``relais console account add``); ``auth`` is
    ``local`` today (Pro Santé Connect, OpenID Connect, is the next provider).
    """

    host: str = "127.0.0.1"
    port: int = 39190
    accounts: Path | None = None  # None: <RELAIS_DATA_DIR>/console-accounts.json
    auth: str = "local"
    session_s: float = 8 * 3600.0
    secure_cookies: bool = False  # set behind TLS: the session cookie is then Secure
    origin: str = ""  # the public origin (https://console.example); "": the request's own

    @classmethod
    def from_env(cls, env: Env) -> ConsoleSettings:
        d = cls()
        return cls(
            host=env.text("RELAIS_CONSOLE_HOST", d.host),
            port=env.port("RELAIS_CONSOLE_PORT", d.port),
            accounts=env.path("RELAIS_CONSOLE_ACCOUNTS"),
            auth=env.choice("RELAIS_CONSOLE_AUTH", d.auth, ("local",), fold_case=True),
            session_s=env.seconds("RELAIS_CONSOLE_SESSION_S", d.session_s),
            secure_cookies=env.flag("RELAIS_CONSOLE_SECURE_COOKIES", d.secure_cookies),
            origin=_origin(env.text("RELAIS_CONSOLE_ORIGIN", d.origin)),
        )

    def accounts_file(self, data_dir: Path) -> Path:
        return self.accounts or data_dir / "console-accounts.json"


def _origin(value: str) -> str:
    """``scheme://host[:port]`` as browsers send it in ``Origin`` (no path, no slash)."""
    origin = value.rstrip("/").lower()
    scheme, _, rest = origin.partition("://")
    if origin and (scheme not in {"http", "https"} or not rest or "/" in rest):
        raise SettingsError(
            f"RELAIS_CONSOLE_ORIGIN={value!r}: give the console's public origin, "
            "https://HOST[:PORT] (no path)"
        )
    return origin
