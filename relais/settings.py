"""Typed, frozen settings, read once from the environment at the entry point.

:class:`Settings` is made of one frozen dataclass per component (``settings.kafka``,
``settings.process``, ``settings.dmp``, ``settings.mllp``...). Library modules receive a
:class:`Settings` or the part they need; only :meth:`Settings.from_env` looks at
environment variables (through :class:`relais.settings_env.Env`). Every variable has a
default that runs the local stack on 127.0.0.1; every duration, size and count must be
above 0 and a :class:`SettingsError` names the variable that is not.

=============================  ==========================================  ========================
variable                       meaning                                     default
=============================  ==========================================  ========================
RELAIS_BOOTSTRAP_SERVERS       Kafka bootstrap servers                     127.0.0.1:39092
RELAIS_TOPIC_PREFIX            prefix of every topic name                  relais
RELAIS_PARTITIONS              partitions of every topic and Faust table:  12
                               up to that many processes per stage/sink
RELAIS_SINK_CONCURRENCY        partitions a DMP/MSSanté sink delivers at   8
                               once (each partition's documents in order)
RELAIS_REPLICATION_FACTOR      replicas of topics and Faust changelogs     3 (kafka), 1 (tansu)
RELAIS_MIN_INSYNC_REPLICAS     replicas a write needs before its ack       2 (kafka), 1 (tansu)
RELAIS_KAFKA_SECURITY_PROTOCOL PLAINTEXT, SSL, SASL_SSL or SASL_PLAINTEXT   PLAINTEXT
RELAIS_KAFKA_CA_FILE           CAs the brokers' certificates chain to      (system trust store)
RELAIS_KAFKA_CERT_FILE         client certificate (PEM): mutual TLS        (none)
RELAIS_KAFKA_KEY_FILE          its private key (PEM)                       (none)
RELAIS_KAFKA_KEY_PASSWORD      the key's password, when it is encrypted    (none)
RELAIS_KAFKA_SASL_MECHANISM    PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or      (none: required with
                               OAUTHBEARER                                 SASL_*)
RELAIS_KAFKA_SASL_USERNAME     SASL user (PLAIN, SCRAM)                    (none)
RELAIS_KAFKA_SASL_PASSWORD     its password                                (none)
RELAIS_KAFKA_OAUTH_TOKEN_URL   OAUTHBEARER: the identity provider's token  (none)
                               endpoint (client credentials grant)
RELAIS_KAFKA_OAUTH_CLIENT_ID   its client id                               (none)
RELAIS_KAFKA_OAUTH_CLIENT_SECRET
                               its client secret                           (none)
RELAIS_KAFKA_OAUTH_SCOPE       the scope asked for                         (none)
RELAIS_KEYRING_FILE            path of the keyring JSON file               (none)
RELAIS_KEYRING                 keyring JSON inline (instead of a file)     (none)
RELAIS_PATIENT_KEYS            seal each patient's data under their own    yes
                               data key (docs/keys-and-erasure.md)
RELAIS_PATIENT_KEY_CACHE_S     how long a process keeps a patient's data   60
                               key unwrapped (bounds erasure's delay)
RELAIS_METRICS_HOST            address /metrics listens on                 127.0.0.1
RELAIS_METRICS_PORT            port of /metrics (0: pick a free port)      0
RELAIS_DMP_URL                 DMP ITI-41 endpoint (https://) of the sink  (the local sandbox's)
RELAIS_DMP_CA_FILE             CAs the DMP's server certificate chains to  (system trust store)
RELAIS_DMP_CLIENT_CERT         structure certificate (PEM): mTLS and VIHF  (none: required)
RELAIS_DMP_CLIENT_KEY          its private key (PEM, unencrypted)          (none: required)
RELAIS_DMP_STRUCTURE_ID        VIHF Identifiant_Structure (IdNat_Struct)   (none: required)
RELAIS_DMP_SUBJECT_ID          VIHF NameID: IdNat_PS of the responsible    (none: required)
RELAIS_DMP_SUBJECT_NAME        VIHF subject-id: that person's name         (none: required)
RELAIS_DMP_SUBJECT_ROLE        VIHF roles, ``code^OID`` comma-separated    10^1.2.250.1.71.1.2.7
RELAIS_DMP_ACTIVITY_SECTOR     VIHF Secteur_Activite ``code^OID``          SA25^1.2.250.1.71.4.2.4
RELAIS_DMP_SOURCE_ID           submission set sourceId (system OID)        (none: required)
RELAIS_DMP_LPS_HOMOLOGATION    VIHF LPS_ID_HOMOLOGATION_DMP                (none: required)
RELAIS_DMP_STATUS_CACHE_S      a patient's open DMP (TD0.2) is trusted     86400 (1 day)
                               that long before it is asked again
RELAIS_INSI_URL                INSi endpoint (https://) of the identity    (the local sandbox's)
                               stage
RELAIS_INSI_TIMEOUT_S          timeout of one INSi call                    5
RELAIS_INSI_CA_FILE            CAs INSi's server certificate chains to     RELAIS_DMP_CA_FILE
RELAIS_INSI_CLIENT_CERT        structure certificate (PEM): mutual TLS     RELAIS_DMP_CLIENT_CERT
                                                                           (one of them: required)
RELAIS_INSI_CLIENT_KEY         its private key (PEM, unencrypted)          RELAIS_DMP_CLIENT_KEY
RELAIS_INSI_IDAM               ContexteLPS IDAM: the software's CNDA       (none: required)
                               authorisation number
RELAIS_INSI_EMITTER            ContexteLPS/BAM Emetteur (the structure)    RELAIS_DMP_STRUCTURE_ID
RELAIS_TABLE_STORE             Faust table store (memory:// or rocksdb://) memory://
RELAIS_IDENTITY_HOLD_EXPIRY_S  held documents older: dead letter (expired) 604800 (7 days)
RELAIS_OPERATOR                who runs ``relais identity`` (audited)      (none: required there)
RELAIS_CDA_XSD_DIR             folder of CDA_extended.xsd (CDA R2 schema)  (none)
RELAIS_CATALOGUE_DIR           labs' catalogues: <dir>/<FACILITY>/<v>.csv  (none)
RELAIS_LOINC_TABLE             LOINC-FR CSV (loinc_code,display_name_fr)   (none)
RELAIS_UCUM_UNITS              UCUM unit list (the ANS JDV XML)            (none)
RELAIS_RELEASE_POLICY          release rules (TOML)                        (bundled policy)
RELAIS_DATA_DIR                where local state (broker, demo) lives      ./.relais
RELAIS_DOCUMENT_STORE          document bodies: folder or s3://BUCKET/pfx  RELAIS_DATA_DIR/documents
RELAIS_DOCUMENT_STORE_ENDPOINT S3-compatible server URL (http[s]://)       (none: AWS)
RELAIS_DOCUMENT_STORE_REGION   the bucket's region                         us-east-1
RELAIS_DOCUMENT_RETENTION_DAYS bodies older: ``relais store expire`` ends  30
RELAIS_BROKER_BIN              broker binary instead of the bundled tansu  (bundled tansu)
RELAIS_BROKER_LISTEN           host:port the local broker listens on       127.0.0.1:39092
RELAIS_BROKER_STORAGE          tansu storage engine URL                    memory://tansu/
RELAIS_BROKER_KIND             ``tansu`` or ``kafka`` (workarounds on/off) tansu
RELAIS_SESSION_TIMEOUT_S       consumer-group session timeout              6
RELAIS_LOG_LEVEL               log level of every process                  info
RELAIS_ACK_ROUTES              ZAM back to producers: FACILITY=host:port,  (none)
                               ... (their MLLP listeners); a route
                               ending in /tls: MLLP over TLS
RELAIS_ACK_CA_FILE             CAs of the producers' MLLP/TLS listeners    (system trust store)
RELAIS_ACK_CLIENT_CERT         Relais's client certificate (PEM) on /tls   (none: server TLS only)
                               routes: mutual TLS
RELAIS_ACK_CLIENT_KEY          its private key (PEM)                       (none)
RELAIS_HOLD_REMINDER_S         held that long: its sender is told again    86400 (1 day)
RELAIS_MSS_SENDER              Relais's MSSanté mailbox (From of mails)    relais@relais.mssante.fr
RELAIS_MSS_NIL                 X-MSS-NIL product reference (ECO.2.4.3)     RELAIS-0.1.0
RELAIS_MSS_DOMAINS             mail domains Relais may write to (a,b)      mssante.fr
RELAIS_MSS_SMTP                operator's SMTP submission host:port        127.0.0.1:587
RELAIS_MSS_SMTP_TLS            ``starttls`` or ``implicit`` (SMTPS)        starttls
RELAIS_MSS_SMTP_ROUTES         per domain: ``dom=host:port[/implicit],..`` (none)
RELAIS_MSS_SMTP_USER           SMTP AUTH user, when the operator wants it  (none)
RELAIS_MSS_SMTP_PASSWORD       its password                                (none)
RELAIS_MSS_CA_FILE             CAs of the operators' servers (IGC-Santé)   (system trust store)
RELAIS_MSS_CLIENT_CERT         Relais's client certificate (PEM), mTLS     (none)
RELAIS_MSS_CLIENT_KEY          its private key (PEM)                       (none)
RELAIS_MSS_READ_RECEIPT        ask for MDNs (Disposition-Notification-To)  yes
RELAIS_MSS_PATIENT_REPLY       patient may answer (else X-MSS-MES: FIN)    no
RELAIS_MSS_IMAP                IMAPS host:port of the watched mailbox      127.0.0.1:993
RELAIS_MSS_IMAP_USER           IMAP login of Relais's mailbox              (none)
RELAIS_MSS_IMAP_PASSWORD       its password                                (none)
RELAIS_MSS_MAILBOXES           folders watched, comma-separated            INBOX
RELAIS_MSS_POLL_S              polling period when IDLE is unavailable     30
RELAIS_NOTIFY_PREFERENCES      patients' channels (JSON, by patient_key)   (none: MSSanté mailbox)
RELAIS_NOTIFY_EMAIL_SMTP       e-mail relay ``host:port[/implicit]``       127.0.0.1:587
RELAIS_NOTIFY_EMAIL_FROM       From of e-mail notifications                noreply@relais.localhost
RELAIS_NOTIFY_CA_FILE          CAs of the e-mail relay and SMS gateway     (system trust store)
RELAIS_NOTIFY_SMS_URL          SMS gateway webhook (POST JSON)             http://127.0.0.1:39126/
RELAIS_NOTIFY_RATE_LIMIT       notifications per patient per window        3
RELAIS_NOTIFY_RATE_WINDOW_S    the rate limit's sliding window, seconds    86400
RELAIS_MLLP_HOST               address the MLLP gateway listens on         127.0.0.1
RELAIS_MLLP_PORT               its port (0: pick a free port)              2575
RELAIS_MLLP_SECTOR             sector of every sender on this listener     (by document type)
RELAIS_MLLP_MAX_FRAME_BYTES    larger messages: AE, connection closed      16777216
RELAIS_MLLP_IDLE_TIMEOUT_S     seconds without a message byte: closed      60
RELAIS_MLLP_FRAME_TIMEOUT_S    a frame not complete this long after its    60
                               first byte: connection closed
RELAIS_MLLP_MAX_CONNECTIONS    connections over this are refused           1000
RELAIS_MLLP_MAX_CONNECTIONS_PER_PEER
                               connections from one IP address over this   20
                               are refused
RELAIS_MLLP_WORKERS            processes parsing and checking messages     min(4, CPUs)
                               (0: in the gateway's event loop)
RELAIS_MLLP_TEST_MESSAGES      MSH-11 T/D: accept (test topic only) or     accept
                               refuse; per sender: accept,CHU-X=refuse
RELAIS_MLLP_UNKNOWN_PARENTS    a replacement/deletion of an id Relais      refuse
                               never received: refuse, or accept (after
                               taking over from another PFI)
RELAIS_MLLP_TLS_CERT           server certificate (PEM): MLLP over TLS     (none: plain TCP)
RELAIS_MLLP_TLS_KEY            its private key (PEM)                       (none)
RELAIS_MLLP_CLIENT_CA          require client certificates from this CA    (none)
RELAIS_MLLP_PEER_FACILITIES    with client certificates: the MSH-4 each    (each certificate's CN)
                               certificate's CN may send as, CN=FAC|FAC,..
                               (others: their CN; docs/mllp-tls.md)
RELAIS_MLLP_REUSE_PORT         SO_REUSEPORT: several gateway processes     no
                               listen on one port (the kernel spreads
                               the connections); set it on each of them
RELAIS_INDEX_URL               the document index: postgresql://USER@HOST  RELAIS_DATA_DIR/
                               :PORT/DB, or sqlite:///PATH (the demo)      index.sqlite3
RELAIS_INDEX_BATCH             records the index writes per transaction    2000
RELAIS_INDEX_STATS_INTERVAL_S  seconds between two computations of the     30
                               per-facility gauges of the index
RELAIS_CONSOLE_HOST            address ``relais console`` listens on       127.0.0.1
RELAIS_CONSOLE_PORT            its port (0: pick a free port)              39190
RELAIS_CONSOLE_ACCOUNTS        the operators' local accounts (JSON file,   RELAIS_DATA_DIR/
                               ``relais console account add``)             console-accounts.json
RELAIS_CONSOLE_AUTH            how operators sign in: local                local
RELAIS_CONSOLE_SESSION_S       a sign-in lasts that long, in seconds       28800 (8 h)
RELAIS_CONSOLE_SECURE_COOKIES  mark the session cookie Secure (behind TLS) no
RELAIS_CONSOLE_ORIGIN          the console's public origin behind a proxy  the request's own
                               (https://HOST[:PORT]): forms must come      scheme and host
                               from it
=============================  ==========================================  ========================

RELAIS_DMP_URL defaults to https://127.0.0.1:39180/repository, where ``relais sandbox dmp``
listens; RELAIS_INSI_URL to https://127.0.0.1:39181/lps, where ``relais sandbox insi`` does
(the identity stage refuses http://; docs/insi.md). The DMP sink needs the structure's
certificate and the VIHF identity: the variables marked "required" have no default, and the
sink refuses to start without them (the local stack and ``relais sandbox dmp`` make a test
PKI and say what to set).

The ``relais mllp`` flags (--host, --port, --tls-cert...) override the RELAIS_MLLP_*
variables for that one process.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from relais.settings_acks import AckSettings
from relais.settings_console import ConsoleSettings, IndexSettings
from relais.settings_env import Env, SettingsError
from relais.settings_insi import InsiSettings
from relais.settings_parts import (
    BrokerSettings,
    DmpSettings,
    IdentitySettings,
    KafkaSettings,
    KeyringSettings,
    MllpSettings,
    MssSettings,
    NotifySettings,
    OutcomeSettings,
    ProcessSettings,
    StageSettings,
)
from relais.settings_store import StoreSettings

__all__ = [
    "AckSettings",
    "BrokerSettings",
    "ConsoleSettings",
    "DmpSettings",
    "IdentitySettings",
    "IndexSettings",
    "InsiSettings",
    "KafkaSettings",
    "KeyringSettings",
    "MllpSettings",
    "MssSettings",
    "NotifySettings",
    "OutcomeSettings",
    "ProcessSettings",
    "Settings",
    "SettingsError",
    "StageSettings",
    "StoreSettings",
    "unknown_variables",
]


@dataclass(frozen=True)
class Settings:
    """Everything a Relais process is configured with, one part per component."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    process: ProcessSettings = field(default_factory=ProcessSettings)
    keys: KeyringSettings = field(default_factory=KeyringSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    insi: InsiSettings = field(default_factory=InsiSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    dmp: DmpSettings = field(default_factory=DmpSettings)
    stages: StageSettings = field(default_factory=StageSettings)
    mllp: MllpSettings = field(default_factory=MllpSettings)
    acks: AckSettings = field(default_factory=AckSettings)
    mss: MssSettings = field(default_factory=MssSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    outcomes: OutcomeSettings = field(default_factory=OutcomeSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (``os.environ`` when omitted).

        Raises :class:`SettingsError` naming the first variable Relais cannot use.
        """
        e = Env(os.environ if env is None else env)
        return cls(
            kafka=KafkaSettings.from_env(e),
            process=ProcessSettings.from_env(e),
            keys=KeyringSettings.from_env(e),
            broker=BrokerSettings.from_env(e),
            insi=InsiSettings.from_env(e),
            identity=IdentitySettings.from_env(e),
            dmp=DmpSettings.from_env(e),
            stages=StageSettings.from_env(e),
            mllp=MllpSettings.from_env(e),
            acks=AckSettings.from_env(e),
            mss=MssSettings.from_env(e),
            notify=NotifySettings.from_env(e),
            outcomes=OutcomeSettings.from_env(e),
            store=StoreSettings.from_env(e),
            index=IndexSettings.from_env(e),
            console=ConsoleSettings.from_env(e),
        )


def unknown_variables(env: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``RELAIS_*`` variables that are no setting (the table above), each with the setting's
    name it is closest to: a misspelt variable would otherwise be silently ignored."""
    known = set(re.findall(r"^(RELAIS_[A-Z_]+)\s", __doc__ or "", re.MULTILINE))
    if not known:  # docstrings stripped (python -OO): nothing to compare with
        return []
    variables = os.environ if env is None else env
    return [
        (name, next(iter(difflib.get_close_matches(name, known, n=1)), None))
        for name in sorted(variables)
        if name.startswith("RELAIS_") and name not in known
    ]
