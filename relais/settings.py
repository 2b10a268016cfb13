"""Typed, frozen settings, read once from the environment at the entry point.

Library modules receive a :class:`Settings` (or the part they need); only
:func:`Settings.from_env` looks at environment variables. Every variable has a
default that runs the local stack on 127.0.0.1.

=============================  ==========================================  ========================
variable                       meaning                                     default
=============================  ==========================================  ========================
RELAIS_BOOTSTRAP_SERVERS       Kafka bootstrap servers                     127.0.0.1:39092
RELAIS_TOPIC_PREFIX            prefix of every topic name                  relais
RELAIS_KEYRING_FILE            path of the keyring JSON file               (none)
RELAIS_KEYRING                 keyring JSON inline (instead of a file)     (none)
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
RELAIS_INSI_URL                INSi endpoint of the identity stage         http://127.0.0.1:39181
RELAIS_INSI_TIMEOUT_S          timeout of one INSi call                    5
RELAIS_TABLE_STORE             Faust table store (memory:// or rocksdb://) memory://
RELAIS_CDA_XSD_DIR             folder of CDA_extended.xsd (CDA R2 schema)  (none)
RELAIS_CATALOGUE_DIR           labs' catalogues: <dir>/<FACILITY>/<v>.csv  (none)
RELAIS_LOINC_TABLE             LOINC-FR CSV (loinc_code,display_name_fr)   (none)
RELAIS_UCUM_UNITS              UCUM unit list (the ANS JDV XML)            (none)
RELAIS_RELEASE_POLICY          release rules (TOML)                        (bundled policy)
RELAIS_DATA_DIR                where local state (broker, demo) lives      ./.relais
RELAIS_BROKER_BIN              broker binary instead of the bundled tansu  (bundled tansu)
RELAIS_BROKER_LISTEN           host:port the local broker listens on       127.0.0.1:39092
RELAIS_BROKER_STORAGE          tansu storage engine URL                    memory://tansu/
RELAIS_BROKER_KIND             ``tansu`` or ``kafka`` (workarounds on/off) tansu
RELAIS_SESSION_TIMEOUT_S       consumer-group session timeout              6
RELAIS_LOG_LEVEL               log level of every process                  info
RELAIS_ACK_ROUTES              ZAM back to producers: FACILITY=host:port,  (none)
                               ... (their MLLP listeners)
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
=============================  ==========================================  ========================

RELAIS_DMP_URL defaults to https://127.0.0.1:39180/repository, where ``relais sandbox dmp``
listens. The DMP sink needs the structure's certificate and the VIHF identity: the
variables marked "required" have no default, and the sink refuses to start without them
(the local stack and ``relais sandbox dmp`` make a test PKI and say what to set).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable holds a value Relais cannot use."""


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:39092"
    topic_prefix: str = "relais"
    keyring_file: Path | None = None
    keyring_json: str | None = field(default=None, repr=False)  # key material: never printed
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    dmp_url: str = "https://127.0.0.1:39180/repository"
    dmp_ca_file: Path | None = None
    dmp_client_cert: Path | None = None
    dmp_client_key: Path | None = None
    dmp_structure_id: str = ""
    dmp_subject_id: str = ""
    dmp_subject_name: str = ""
    dmp_subject_role: str = "10^1.2.250.1.71.1.2.7"
    dmp_activity_sector: str = "SA25^1.2.250.1.71.4.2.4"
    dmp_source_id: str = ""
    dmp_lps_homologation: str = ""
    insi_url: str = "http://127.0.0.1:39181"
    insi_timeout_s: float = 5.0
    table_store: str = "memory://"
    cda_xsd_dir: Path | None = None
    catalogue_dir: Path | None = None
    loinc_table: Path | None = None
    ucum_units: Path | None = None
    release_policy: Path | None = None
    data_dir: Path = Path(".relais")
    broker_bin: Path | None = None
    broker_listen: str = "127.0.0.1:39092"
    broker_storage: str = "memory://tansu/"
    broker_kind: str = "tansu"
    session_timeout_s: float = 6.0
    log_level: str = "info"
    ack_routes: str = ""  # FACILITY=host:port,...: where business acks (ZAM) go back to
    mss_sender: str = "relais@relais.mssante.fr"
    mss_nil: str = "RELAIS-0.1.0"
    mss_domains: tuple[str, ...] = ("mssante.fr",)
    mss_smtp: str = "127.0.0.1:587"
    mss_smtp_tls: str = "starttls"
    mss_smtp_routes: str = ""
    mss_smtp_user: str = ""
    mss_smtp_password: str = field(default="", repr=False)  # secret: never printed
    mss_ca_file: Path | None = None
    mss_client_cert: Path | None = None
    mss_client_key: Path | None = None
    mss_read_receipt: bool = True
    mss_patient_reply: bool = False
    mss_imap: str = "127.0.0.1:993"
    mss_imap_user: str = ""
    mss_imap_password: str = field(default="", repr=False)  # secret: never printed
    mss_mailboxes: tuple[str, ...] = ("INBOX",)
    mss_poll_s: float = 30.0
    notify_preferences: Path | None = None
    notify_email_smtp: str = "127.0.0.1:587"
    notify_email_from: str = "noreply@relais.localhost"
    notify_ca_file: Path | None = None
    notify_sms_url: str = "http://127.0.0.1:39126/"
    notify_rate_limit: int = 3
    notify_rate_window_s: float = 86400.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (``os.environ`` when omitted)."""
        e = os.environ if env is None else env
        d = cls()

        def text(name: str, default: str) -> str:
            return e.get(name, "").strip() or default

        def path(name: str) -> Path | None:
            value = e.get(name, "").strip()
            return Path(value) if value else None

        def number(name: str, default: float, kind: type[int] | type[float]) -> float:
            raw = e.get(name, "").strip()
            if not raw:
                return default
            try:
                return kind(raw)
            except ValueError:
                word = "a whole number" if kind is int else "a number"
                raise SettingsError(f"{name}={raw!r} is not {word}") from None

        def seconds(name: str, default: float) -> float:
            value = number(name, default, float)
            if not (math.isfinite(value) and value > 0):
                raise SettingsError(f"{name}={value}: give seconds above 0")
            return value

        port = int(number("RELAIS_METRICS_PORT", d.metrics_port, int))
        if not 0 <= port <= 65535:
            raise SettingsError(f"RELAIS_METRICS_PORT={port}: a port is 0 (any free one) to 65535")
        timeout = seconds("RELAIS_SESSION_TIMEOUT_S", d.session_timeout_s)
        kind = text("RELAIS_BROKER_KIND", d.broker_kind)
        if kind not in {"tansu", "kafka"}:
            raise SettingsError(f"RELAIS_BROKER_KIND={kind!r}: expected 'tansu' or 'kafka'")
        mss_tls = text("RELAIS_MSS_SMTP_TLS", d.mss_smtp_tls).lower()
        if mss_tls not in {"starttls", "implicit"}:
            raise SettingsError(
                f"RELAIS_MSS_SMTP_TLS={mss_tls!r}: expected 'starttls' or 'implicit'"
            )

        rate_limit = int(number("RELAIS_NOTIFY_RATE_LIMIT", d.notify_rate_limit, int))
        if rate_limit < 1:
            raise SettingsError(f"RELAIS_NOTIFY_RATE_LIMIT={rate_limit}: allow at least 1")
        window = seconds("RELAIS_NOTIFY_RATE_WINDOW_S", d.notify_rate_window_s)

        def flag(name: str, default: bool) -> bool:
            raw = e.get(name, "").strip().lower()
            if not raw:
                return default
            if raw not in {"yes", "no", "true", "false", "1", "0"}:
                raise SettingsError(f"{name}={raw!r}: expected yes or no")
            return raw in {"yes", "true", "1"}

        def names(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
            found = tuple(p.strip() for p in e.get(name, "").split(",") if p.strip())
            return found or default

        return cls(
            bootstrap_servers=text("RELAIS_BOOTSTRAP_SERVERS", d.bootstrap_servers),
            topic_prefix=text("RELAIS_TOPIC_PREFIX", d.topic_prefix),
            keyring_file=path("RELAIS_KEYRING_FILE"),
            keyring_json=e.get("RELAIS_KEYRING", "").strip() or None,
            metrics_host=text("RELAIS_METRICS_HOST", d.metrics_host),
            metrics_port=port,
            dmp_url=text("RELAIS_DMP_URL", d.dmp_url),
            dmp_ca_file=path("RELAIS_DMP_CA_FILE"),
            dmp_client_cert=path("RELAIS_DMP_CLIENT_CERT"),
            dmp_client_key=path("RELAIS_DMP_CLIENT_KEY"),
            dmp_structure_id=text("RELAIS_DMP_STRUCTURE_ID", d.dmp_structure_id),
            dmp_subject_id=text("RELAIS_DMP_SUBJECT_ID", d.dmp_subject_id),
            dmp_subject_name=text("RELAIS_DMP_SUBJECT_NAME", d.dmp_subject_name),
            dmp_subject_role=text("RELAIS_DMP_SUBJECT_ROLE", d.dmp_subject_role),
            dmp_activity_sector=text("RELAIS_DMP_ACTIVITY_SECTOR", d.dmp_activity_sector),
            dmp_source_id=text("RELAIS_DMP_SOURCE_ID", d.dmp_source_id),
            dmp_lps_homologation=text("RELAIS_DMP_LPS_HOMOLOGATION", d.dmp_lps_homologation),
            insi_url=text("RELAIS_INSI_URL", d.insi_url),
            insi_timeout_s=number("RELAIS_INSI_TIMEOUT_S", d.insi_timeout_s, float),
            table_store=text("RELAIS_TABLE_STORE", d.table_store),
            cda_xsd_dir=path("RELAIS_CDA_XSD_DIR"),
            catalogue_dir=path("RELAIS_CATALOGUE_DIR"),
            loinc_table=path("RELAIS_LOINC_TABLE"),
            ucum_units=path("RELAIS_UCUM_UNITS"),
            release_policy=path("RELAIS_RELEASE_POLICY"),
            data_dir=Path(text("RELAIS_DATA_DIR", str(d.data_dir))),
            broker_bin=path("RELAIS_BROKER_BIN"),
            broker_listen=text("RELAIS_BROKER_LISTEN", d.broker_listen),
            broker_storage=text("RELAIS_BROKER_STORAGE", d.broker_storage),
            broker_kind=kind,
            session_timeout_s=timeout,
            log_level=text("RELAIS_LOG_LEVEL", d.log_level).lower(),
            ack_routes=e.get("RELAIS_ACK_ROUTES", "").strip(),
            mss_sender=text("RELAIS_MSS_SENDER", d.mss_sender),
            mss_nil=text("RELAIS_MSS_NIL", d.mss_nil),
            mss_domains=names("RELAIS_MSS_DOMAINS", d.mss_domains),
            mss_smtp=text("RELAIS_MSS_SMTP", d.mss_smtp),
            mss_smtp_tls=mss_tls,
            mss_smtp_routes=e.get("RELAIS_MSS_SMTP_ROUTES", "").strip(),
            mss_smtp_user=e.get("RELAIS_MSS_SMTP_USER", "").strip(),
            mss_smtp_password=e.get("RELAIS_MSS_SMTP_PASSWORD", "").strip(),
            mss_ca_file=path("RELAIS_MSS_CA_FILE"),
            mss_client_cert=path("RELAIS_MSS_CLIENT_CERT"),
            mss_client_key=path("RELAIS_MSS_CLIENT_KEY"),
            mss_read_receipt=flag("RELAIS_MSS_READ_RECEIPT", d.mss_read_receipt),
            mss_patient_reply=flag("RELAIS_MSS_PATIENT_REPLY", d.mss_patient_reply),
            mss_imap=text("RELAIS_MSS_IMAP", d.mss_imap),
            mss_imap_user=e.get("RELAIS_MSS_IMAP_USER", "").strip(),
            mss_imap_password=e.get("RELAIS_MSS_IMAP_PASSWORD", "").strip(),
            mss_mailboxes=names("RELAIS_MSS_MAILBOXES", d.mss_mailboxes),
            mss_poll_s=number("RELAIS_MSS_POLL_S", d.mss_poll_s, float),
            notify_preferences=path("RELAIS_NOTIFY_PREFERENCES"),
            notify_email_smtp=text("RELAIS_NOTIFY_EMAIL_SMTP", d.notify_email_smtp),
            notify_email_from=text("RELAIS_NOTIFY_EMAIL_FROM", d.notify_email_from),
            notify_ca_file=path("RELAIS_NOTIFY_CA_FILE"),
            notify_sms_url=text("RELAIS_NOTIFY_SMS_URL", d.notify_sms_url),
            notify_rate_limit=rate_limit,
            notify_rate_window_s=window,
        )
