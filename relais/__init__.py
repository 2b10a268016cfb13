"""Relais: an event-driven bus for secure health document exchange in France.

This package holds the spine shared by every component: settings, topic
catalogue, record contracts (Avro codec), the encryption envelope, the local
broker runner, metrics and the command line. Stage logic lives in the
top-level packages ``producers``, ``streams``, ``consumers`` and ``mss_bridge``.

Errors, the one drawing for the core (each module's docstring says more about its own;
messages say what to fix and never quote patient data). A record that raises one of
them is dead-lettered by :func:`relais.deadletter.failure_of` with the reason shown, not
retried; a configuration error stops the command before it starts::

    ContractError               a record cannot be encoded or decoded (names topic,
     │                          partition, offset): dead-lettered as undecodable-record
     ├── UnknownSchemaError     the schema fingerprint is unknown: a newer or foreign writer
     ├── CorruptRecordError     not single-object encoded, or the body does not decode
     ├── UnexpectedRecordError  decoded, but not the record type this topic carries
     └── EncodeError            a record does not match its schema: a bug in the caller
                                (dead-lettered as internal-error)
    EnvelopeError               a sealed field cannot be opened: dead-lettered as
     │                          undecryptable-field
     ├── MalformedEnvelopeError the record does not have the envelope shape
     ├── PatientKeyError        a patient's data key (relais.patient_keys.errors):
     │                          patient-erased, patient-key-missing (replay once restored),
     │                          or retried when the key store is down
     ├── UnknownKeyError        the key id is not in the keyring: add the retired key
     └── TamperedEnvelopeError  authentication failed (altered, wrong key, other event
                                or purpose)
    StageFailure                a record a stage cannot process: dead-lettered with its
     │                          ``reason_code`` (relais.deadletter)
     └── (one per stage: TranscodeFailure, WrapFailure, NotifyInputError, ...)
    GiveUp                      the sink loop's "never processable": it dead-letters the
                                record with the Failure it carries and commits
    KeyringError (ValueError)   the keyring file cannot be used (says what and where): the
                                command does not start
    SettingsError (ValueError)  a RELAIS_* variable holds a value Relais cannot use (names
                                it): the command does not start
    MssError                    sending or reading MSSanté mail: its own tree, drawn in
                                :mod:`relais.mail.errors` (SmtpTransient and ImapError are
                                retried, the rest are not)
"""

__version__ = "0.1.0"
