"""A process's vault, from its settings (RELAIS_PATIENT_KEYS, RELAIS_PATIENT_KEY_CACHE_S):
the key store sits beside the document bodies (RELAIS_DOCUMENT_STORE), under ``keys/``."""

from __future__ import annotations

from dataclasses import replace

from relais.keyring import Keyring, pseudonymise
from relais.patient_keys.kms import Kms, LocalKms
from relais.patient_keys.stores import FolderKeyStore, KeyStore, S3KeyStore
from relais.patient_keys.vault import PatientVault
from relais.settings import Settings


def open_key_store(settings: Settings) -> KeyStore:
    """``<document store folder>/keys`` or ``s3://bucket/prefix/keys/``.

    On S3 the key store has a client of its own with short timeouts (1 s to connect, 2 s to
    read, 2 attempts): its calls are synchronous, and a slow store must not hold a
    process's event loop for the document store's 30-second reads."""
    part = settings.store
    folder = part.folder(settings.process.data_dir)
    if folder is not None:
        return FolderKeyStore(folder / "keys")
    import boto3  # noqa: PLC0415 - boto3 only for S3
    from botocore.config import Config  # noqa: PLC0415

    bucket, _, prefix = part.location[len("s3://") :].partition("/")
    config = Config(
        max_pool_connections=8,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path"},
        connect_timeout=1,
        read_timeout=2,
    )
    client = boto3.client("s3", endpoint_url=part.endpoint, region_name=part.region, config=config)
    where = f"s3://{bucket}/{prefix.strip('/')}" + (f" at {part.endpoint}" if part.endpoint else "")
    return S3KeyStore(client, bucket, prefix, where)


def open_vault(settings: Settings, keyring: Keyring, kms: Kms | None = None) -> PatientVault:
    """The vault over ``kms`` (default: the keyring's keys as master keys)."""
    return PatientVault(
        kms or LocalKms(keyring),
        open_key_store(settings),
        namer=lambda patient_key: pseudonymise(keyring, patient_key, domain="patient-key"),
        cache_s=settings.keys.patient_key_cache_s,
    )


def with_patient_keys(settings: Settings, keyring: Keyring) -> Keyring:
    """The keyring that seals and opens with patients' data keys, when they are on."""
    if not settings.keys.patient_keys:
        return keyring
    return replace(keyring, patients=open_vault(settings, keyring))
