"""Per-patient data keys: envelope encryption, erasure by key destruction, master-key rotation.

Each patient's sealed data — identity traits, recipients, document bodies in the store,
dead-lettered originals, the route's remembered recipients — is sealed under that patient's
data key (DEK, AES-256), itself stored only wrapped by a master key
(:mod:`relais.patient_keys.kms`: the keyring's keys, or an HSM/KMS behind the same
interface). ``relais patient erase`` deletes the wrapped DEK (and the patient's bodies):
what was sealed under it, wherever copies of the ciphertext are (topics, dead letters,
backups of the topics), can no longer be opened; a tombstone records which key version was
destroyed, so that a key merely missing (lost, another store) is a dead letter
``patient-key-missing`` to replay once restored, never taken for an
erasure. ``relais keys rotate`` adds a master key; ``relais keys rewrap`` (once every process
runs with the new file) re-wraps every DEK under it; ``relais keys retire`` removes an old
master key, after which a DEK still wrapped under it (a restored backup of the key store) is
refused.

- :mod:`.errors`: the exception tree.
- :mod:`.kms`: :class:`~.kms.Kms` and :class:`~.kms.LocalKms`.
- :mod:`.stores`: where wrapped DEKs live (a folder, an S3 prefix).
- :mod:`.vault`: :class:`~.vault.PatientVault`: get or create (intake only), existing only
  (stages, sinks, dead letters), resolve, erase, re-wrap.
- :mod:`.open`: the vault of a process, from its settings.

On by default (RELAIS_PATIENT_KEYS, default yes; ``no`` turns it off); the key store is
``keys/`` under RELAIS_DOCUMENT_STORE. docs/keys-and-erasure.md says how to run it.
"""
