"""The settings of the INSi teleservice the identity stage asks, a part of
:class:`relais.settings.Settings`. The files and the https:// URL are checked where they are
used (``streams.identity.insi_config``), not here (docs/insi.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relais.settings_env import Env


@dataclass(frozen=True)
class InsiSettings:
    """The INSi service the identity stage asks (checked by ``streams.identity.insi_config``).

    The structure's certificate and identifier are the DMP's when the RELAIS_INSI_* ones
    are unset: one IGC-Santé organisation certificate serves both teleservices.
    """

    url: str = "https://127.0.0.1:39181/lps"
    timeout_s: float = 5.0
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    idam: str = ""  # the CNDA's authorisation number of the software (ContexteLPS IDAM)
    emitter: str = ""  # ContexteLPS/ContexteBAM Emetteur: the calling structure

    @classmethod
    def from_env(cls, env: Env) -> InsiSettings:
        d = cls()
        return cls(
            url=env.text("RELAIS_INSI_URL", d.url),
            timeout_s=env.seconds("RELAIS_INSI_TIMEOUT_S", d.timeout_s),
            ca_file=env.path("RELAIS_INSI_CA_FILE") or env.path("RELAIS_DMP_CA_FILE"),
            client_cert=env.path("RELAIS_INSI_CLIENT_CERT") or env.path("RELAIS_DMP_CLIENT_CERT"),
            client_key=env.path("RELAIS_INSI_CLIENT_KEY") or env.path("RELAIS_DMP_CLIENT_KEY"),
            idam=env.text("RELAIS_INSI_IDAM"),
            emitter=env.text("RELAIS_INSI_EMITTER") or env.text("RELAIS_DMP_STRUCTURE_ID"),
        )
