"""The document store's settings (:mod:`relais.document_store`), a part of
:class:`relais.settings.Settings`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from relais.settings_env import Env, SettingsError


@dataclass(frozen=True)
class StoreSettings:
    """Where document bodies are written once (claim check) and how long they stay.

    ``location`` is a folder (the default: ``<RELAIS_DATA_DIR>/documents``) or
    ``s3://bucket[/prefix]``; ``endpoint`` an S3-compatible server's URL (None: AWS).
    """

    location: str = ""  # "": the folder "documents" under RELAIS_DATA_DIR
    endpoint: str | None = None
    region: str = "us-east-1"
    retention_days: float = 30.0

    @classmethod
    def from_env(cls, env: Env) -> StoreSettings:
        d = cls()
        location = env.text("RELAIS_DOCUMENT_STORE", d.location)
        if location.startswith("s3://") and not location[5:].split("/")[0]:
            raise SettingsError(
                f"RELAIS_DOCUMENT_STORE={location!r}: name the bucket, s3://BUCKET[/prefix]"
            )
        if "://" in location and not location.startswith(("s3://", "file://")):
            raise SettingsError(
                f"RELAIS_DOCUMENT_STORE={location!r}: use a folder, file:///folder or "
                "s3://BUCKET[/prefix]"
            )
        return cls(
            location=location,
            endpoint=env.text("RELAIS_DOCUMENT_STORE_ENDPOINT") or None,
            region=env.text("RELAIS_DOCUMENT_STORE_REGION", d.region),
            retention_days=_days(env.raw("RELAIS_DOCUMENT_RETENTION_DAYS"), d.retention_days),
        )

    def folder(self, data_dir: Path) -> Path | None:
        """The store's folder, or None for an S3 bucket."""
        if self.location.startswith("s3://"):
            return None
        if self.location.startswith("file://"):
            return Path(self.location[len("file://") :])
        return Path(self.location) if self.location else data_dir / "documents"


def _days(value: str, default: float) -> float:
    if not value:
        return default
    try:
        days = float(value)
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and days > 0):
        raise SettingsError(f"RELAIS_DOCUMENT_RETENTION_DAYS={value!r}: a number of days > 0")
    return days
