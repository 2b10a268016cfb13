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
    """``<document store folder>/keys`` or ``s3://bucket/prefix/keys/``."""
    part = settings.store
    folder = part.folder(settings.process.data_dir)
    if folder is not None:
        return FolderKeyStore(folder / "keys")
    from relais.document_store.s3 import S3Store  # noqa: PLC0415 - boto3 only for S3

    bucket, _, prefix = part.location[len("s3://") :].partition("/")
    documents = S3Store(bucket, prefix, endpoint=part.endpoint, region=part.region, pool=8)
    return S3KeyStore(documents.client, bucket, prefix, documents.description)


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
