"""The parts of :class:`relais.settings.Settings`: one frozen dataclass per component.

Each part reads its own RELAIS_* variables from an :class:`~relais.settings_env.Env`
(``from_env``); the variables, their meaning and defaults are listed in
:mod:`relais.settings`. Secrets are ``repr=False``: a logged or printed part never
shows them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relais.settings_env import Env, SettingsError
from relais.settings_kafka import KafkaConnection, KafkaSecurity
from relais.topics import DEFAULT_PARTITIONS

#: RELAIS_LOG_LEVEL's words (``warn``/``crit`` are the short forms of the logging names)
LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "crit", "critical")

#: the sectors an MLLP listener may declare for all its senders (RELAIS_MLLP_SECTOR)
SECTORS = ("HOSPITAL", "LAB", "RADIOLOGY")


@dataclass(frozen=True)
class KafkaSettings:
    """The bus: where it is, how topics and groups are named, how Faust keeps tables."""

    bootstrap: str = "127.0.0.1:39092"
    prefix: str = "relais"
    session_timeout_s: float = 6.0
    broker_kind: str = "tansu"  # "tansu" turns its workarounds on (relais.tansu_quirks)
    table_store: str = "memory://"
    partitions: int = DEFAULT_PARTITIONS  # of every topic and Faust table (changelogs)
    sink_concurrency: int = 8  # partitions a DMP / MSSanté sink handles at once
    replication_factor: int = 1  # of topics and changelogs: 3 on Apache Kafka, 1 on tansu
    min_insync_replicas: int = 1  # of Relais's topics: 2 on Apache Kafka
    security: KafkaSecurity = field(default_factory=KafkaSecurity)  # RELAIS_KAFKA_*

    @property
    def connection(self) -> KafkaConnection:
        """What every Kafka client of the process is built from (relais.kafka_clients)."""
        return KafkaConnection(
            self.bootstrap, self.security, idempotent=self.broker_kind == "kafka"
        )

    @classmethod
    def from_env(cls, env: Env) -> KafkaSettings:
        d = cls()
        return cls(
            bootstrap=env.text("RELAIS_BOOTSTRAP_SERVERS", d.bootstrap),
            prefix=env.text("RELAIS_TOPIC_PREFIX", d.prefix),
            session_timeout_s=env.seconds("RELAIS_SESSION_TIMEOUT_S", d.session_timeout_s),
            broker_kind=env.choice("RELAIS_BROKER_KIND", d.broker_kind, ("tansu", "kafka")),
            table_store=env.text("RELAIS_TABLE_STORE", d.table_store),
            partitions=env.count("RELAIS_PARTITIONS", d.partitions, "a number of partitions"),
            sink_concurrency=env.count(
                "RELAIS_SINK_CONCURRENCY", d.sink_concurrency, "a number of partitions"
            ),
            **_replication(env),
            security=KafkaSecurity.from_env(env),
        )


def _replication(env: Env) -> dict[str, int]:
    """Replicas of each partition and how many must have a write before it is acknowledged:
    Apache Kafka's norm (3 and 2) on a cluster, 1 and 1 on the one local broker."""
    cluster = env.choice("RELAIS_BROKER_KIND", "tansu", ("tansu", "kafka")) == "kafka"
    factor = env.count("RELAIS_REPLICATION_FACTOR", 3 if cluster else 1, "a number of replicas")
    insync = env.count("RELAIS_MIN_INSYNC_REPLICAS", 2 if cluster else 1, "a number of replicas")
    if insync > factor:
        raise SettingsError(
            f"RELAIS_MIN_INSYNC_REPLICAS={insync} > RELAIS_REPLICATION_FACTOR={factor}: no write "
            "could ever be acknowledged; keep it below the factor (2 of 3)"
        )
    return {"replication_factor": factor, "min_insync_replicas": insync}


@dataclass(frozen=True)
class ProcessSettings:
    """What every long-running process shares: /metrics address, log level, local state."""

    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0  # 0: pick a free port
    log_level: str = "info"
    data_dir: Path = Path(".relais")

    @classmethod
    def from_env(cls, env: Env) -> ProcessSettings:
        d = cls()
        return cls(
            metrics_host=env.text("RELAIS_METRICS_HOST", d.metrics_host),
            metrics_port=env.port("RELAIS_METRICS_PORT", d.metrics_port),
            log_level=env.choice("RELAIS_LOG_LEVEL", d.log_level, LOG_LEVELS, fold_case=True),
            data_dir=Path(env.text("RELAIS_DATA_DIR", str(d.data_dir))),
        )


@dataclass(frozen=True)
class KeyringSettings:
    """Where the keyring comes from (:func:`relais.keyring_source.load_keyring`), and
    whether patients' data keys seal their data (:mod:`relais.patient_keys`)."""

    file: Path | None = None
    json: str | None = field(default=None, repr=False)  # key material: never printed
    patient_keys: bool = True  # each patient's data under their own key (docs/keys-and-erasure.md)
    patient_key_cache_s: float = 60.0

    @classmethod
    def from_env(cls, env: Env) -> KeyringSettings:
        return cls(
            file=env.path("RELAIS_KEYRING_FILE"),
            json=env.raw("RELAIS_KEYRING") or None,
            patient_keys=env.flag("RELAIS_PATIENT_KEYS", cls.patient_keys),
            patient_key_cache_s=env.seconds("RELAIS_PATIENT_KEY_CACHE_S", cls.patient_key_cache_s),
        )


@dataclass(frozen=True)
class BrokerSettings:
    """The local broker ``relais broker`` runs (tansu)."""

    bin: Path | None = None  # None: the bundled tansu
    listen: str = "127.0.0.1:39092"
    storage: str = "memory://tansu/"

    @classmethod
    def from_env(cls, env: Env) -> BrokerSettings:
        d = cls()
        return cls(
            bin=env.path("RELAIS_BROKER_BIN"),
            listen=env.text("RELAIS_BROKER_LISTEN", d.listen),
            storage=env.text("RELAIS_BROKER_STORAGE", d.storage),
        )


@dataclass(frozen=True)
class IdentitySettings:
    """Identitovigilance operations: how long documents stay held, who runs them."""

    hold_expiry_s: float = 7 * 24 * 3600.0  # then dead-lettered (identity-expired)
    operator: str = ""  # who runs `relais identity release|reject|unblock|list --reveal`

    @classmethod
    def from_env(cls, env: Env) -> IdentitySettings:
        d = cls()
        return cls(
            hold_expiry_s=env.seconds("RELAIS_IDENTITY_HOLD_EXPIRY_S", d.hold_expiry_s),
            operator=env.text("RELAIS_OPERATOR", d.operator),
        )


@dataclass(frozen=True)
class DmpSettings:
    """The DMP sink: endpoint, TLS material and VIHF identity (checked by ``DmpConfig``)."""

    url: str = "https://127.0.0.1:39180/repository"
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    structure_id: str = ""
    subject_id: str = ""
    subject_name: str = ""
    subject_role: str = "10^1.2.250.1.71.1.2.7"
    activity_sector: str = "SA25^1.2.250.1.71.4.2.4"
    source_id: str = ""
    lps_homologation: str = ""
    status_cache_s: float = 86400.0  # TD0.2: an open DMP is trusted that long

    @classmethod
    def from_env(cls, env: Env) -> DmpSettings:
        d = cls()
        return cls(
            url=env.text("RELAIS_DMP_URL", d.url),
            ca_file=env.path("RELAIS_DMP_CA_FILE"),
            client_cert=env.path("RELAIS_DMP_CLIENT_CERT"),
            client_key=env.path("RELAIS_DMP_CLIENT_KEY"),
            structure_id=env.text("RELAIS_DMP_STRUCTURE_ID"),
            subject_id=env.text("RELAIS_DMP_SUBJECT_ID"),
            subject_name=env.text("RELAIS_DMP_SUBJECT_NAME"),
            subject_role=env.text("RELAIS_DMP_SUBJECT_ROLE", d.subject_role),
            activity_sector=env.text("RELAIS_DMP_ACTIVITY_SECTOR", d.activity_sector),
            source_id=env.text("RELAIS_DMP_SOURCE_ID"),
            lps_homologation=env.text("RELAIS_DMP_LPS_HOMOLOGATION"),
            status_cache_s=env.seconds("RELAIS_DMP_STATUS_CACHE_S", d.status_cache_s),
        )


@dataclass(frozen=True)
class StageSettings:
    """The stream stages' reference data: CDA schema, lab catalogues, LOINC, UCUM, policy."""

    cda_xsd_dir: Path | None = None
    catalogue_dir: Path | None = None
    loinc_table: Path | None = None
    ucum_units: Path | None = None
    release_policy: Path | None = None  # None: the bundled policy

    @classmethod
    def from_env(cls, env: Env) -> StageSettings:
        return cls(
            cda_xsd_dir=env.path("RELAIS_CDA_XSD_DIR"),
            catalogue_dir=env.path("RELAIS_CATALOGUE_DIR"),
            loinc_table=env.path("RELAIS_LOINC_TABLE"),
            ucum_units=env.path("RELAIS_UCUM_UNITS"),
            release_policy=env.path("RELAIS_RELEASE_POLICY"),
        )


@dataclass(frozen=True)
class MllpSettings:
    """The MLLP gateway's listener (``relais mllp``; its flags override these)."""

    host: str = "127.0.0.1"
    port: int = 2575
    sector: str | None = None  # None: implied by each document's type
    max_frame_bytes: int = 16 << 20
    idle_timeout_s: float = 60.0
    max_connections: int = 1000
    max_connections_per_peer: int = 20
    frame_timeout_s: float = 60.0  # from a frame's first byte to its end
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))  # 0: in-process
    tls_cert: Path | None = None  # None: plain TCP
    tls_key: Path | None = None
    client_ca: Path | None = None  # set: client certificates are required
    #: MSH-11 T/D: "accept" (to the test topic, never delivered) or "refuse"; per MSH-4 too
    test_messages: str = "accept"
    test_messages_by_sender: tuple[tuple[str, str], ...] = ()
    refuse_unknown_parents: bool = True  # replacement/deletion of an id never received
    reuse_port: bool = False  # SO_REUSEPORT: several gateway processes share the port
    peer_facilities: str = ""  # client certificate CN -> the MSH-4 it may send as (peers.py)

    @classmethod
    def from_env(cls, env: Env) -> MllpSettings:
        d = cls()
        return cls(
            host=env.text("RELAIS_MLLP_HOST", d.host),
            port=env.port("RELAIS_MLLP_PORT", d.port),
            sector=_sector(env),
            max_frame_bytes=env.count(
                "RELAIS_MLLP_MAX_FRAME_BYTES", d.max_frame_bytes, "a number of bytes"
            ),
            idle_timeout_s=env.seconds("RELAIS_MLLP_IDLE_TIMEOUT_S", d.idle_timeout_s),
            max_connections=env.count("RELAIS_MLLP_MAX_CONNECTIONS", d.max_connections),
            max_connections_per_peer=env.count(
                "RELAIS_MLLP_MAX_CONNECTIONS_PER_PEER", d.max_connections_per_peer
            ),
            frame_timeout_s=env.seconds("RELAIS_MLLP_FRAME_TIMEOUT_S", d.frame_timeout_s),
            workers=_workers(env, d.workers),
            tls_cert=env.path("RELAIS_MLLP_TLS_CERT"),
            tls_key=env.path("RELAIS_MLLP_TLS_KEY"),
            client_ca=env.path("RELAIS_MLLP_CLIENT_CA"),
            **_test_messages(env.raw("RELAIS_MLLP_TEST_MESSAGES")),
            refuse_unknown_parents=_unknown_parents(env.raw("RELAIS_MLLP_UNKNOWN_PARENTS")),
            reuse_port=env.flag("RELAIS_MLLP_REUSE_PORT", d.reuse_port),
            peer_facilities=env.raw("RELAIS_MLLP_PEER_FACILITIES"),
        )


def _unknown_parents(text: str) -> bool:
    if text.strip().lower() not in ("", "refuse", "accept"):
        raise SettingsError(f"RELAIS_MLLP_UNKNOWN_PARENTS={text!r}: expected refuse or accept")
    return text.strip().lower() != "accept"


def _test_messages(text: str) -> dict[str, Any]:
    """``accept|refuse[,FACILITY=accept|refuse...]`` (RELAIS_MLLP_TEST_MESSAGES)."""
    default, by_sender = "accept", []
    for item in filter(None, (part.strip() for part in text.split(","))):
        facility, equals, choice = item.rpartition("=")
        if choice not in ("accept", "refuse") or (equals and not facility):
            raise SettingsError(
                f"RELAIS_MLLP_TEST_MESSAGES: {item!r} is not accept, refuse or "
                "FACILITY=accept|refuse (e.g. accept,CHU-X=refuse)"
            )
        if equals:
            by_sender.append((facility, choice))
        else:
            default = choice
    return {"test_messages": default, "test_messages_by_sender": tuple(by_sender)}


def _workers(env: Env, default: int) -> int:
    workers = env.whole("RELAIS_MLLP_WORKERS", default)
    if workers < 0:
        raise SettingsError(f"RELAIS_MLLP_WORKERS={workers}: must be 0 (in-process) or more")
    return workers


def _sector(env: Env) -> str | None:
    sector = env.raw("RELAIS_MLLP_SECTOR").upper()
    if sector and sector not in SECTORS:
        raise SettingsError(f"RELAIS_MLLP_SECTOR={sector!r}: expected {', '.join(SECTORS)}")
    return sector or None


@dataclass(frozen=True)
class OutcomeSettings:
    """The outcomes sink: when a sender is told again that its document is still held."""

    hold_reminder_s: float = 86400.0

    @classmethod
    def from_env(cls, env: Env) -> OutcomeSettings:
        d = cls()
        return cls(hold_reminder_s=env.seconds("RELAIS_HOLD_REMINDER_S", d.hold_reminder_s))


@dataclass(frozen=True)
class MssSettings:
    """MSSanté: Relais's mailbox, the operator's SMTP and IMAP servers, the TLS material."""

    sender: str = "relais@relais.mssante.fr"
    nil: str = "RELAIS-0.1.0"
    domains: tuple[str, ...] = ("mssante.fr",)
    smtp: str = "127.0.0.1:587"
    smtp_tls: str = "starttls"
    smtp_routes: str = ""
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)  # secret: never printed
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    read_receipt: bool = True
    patient_reply: bool = False
    imap: str = "127.0.0.1:993"
    imap_user: str = ""
    imap_password: str = field(default="", repr=False)  # secret: never printed
    mailboxes: tuple[str, ...] = ("INBOX",)
    poll_s: float = 30.0

    @classmethod
    def from_env(cls, env: Env) -> MssSettings:
        d = cls()
        return cls(
            sender=env.text("RELAIS_MSS_SENDER", d.sender),
            nil=env.text("RELAIS_MSS_NIL", d.nil),
            domains=env.names("RELAIS_MSS_DOMAINS", d.domains),
            smtp=env.text("RELAIS_MSS_SMTP", d.smtp),
            smtp_tls=env.choice("RELAIS_MSS_SMTP_TLS", d.smtp_tls, ("starttls", "implicit"), True),
            smtp_routes=env.raw("RELAIS_MSS_SMTP_ROUTES"),
            smtp_user=env.raw("RELAIS_MSS_SMTP_USER"),
            smtp_password=env.raw("RELAIS_MSS_SMTP_PASSWORD"),
            ca_file=env.path("RELAIS_MSS_CA_FILE"),
            client_cert=env.path("RELAIS_MSS_CLIENT_CERT"),
            client_key=env.path("RELAIS_MSS_CLIENT_KEY"),
            read_receipt=env.flag("RELAIS_MSS_READ_RECEIPT", d.read_receipt),
            patient_reply=env.flag("RELAIS_MSS_PATIENT_REPLY", d.patient_reply),
            imap=env.text("RELAIS_MSS_IMAP", d.imap),
            imap_user=env.raw("RELAIS_MSS_IMAP_USER"),
            imap_password=env.raw("RELAIS_MSS_IMAP_PASSWORD"),
            mailboxes=env.names("RELAIS_MSS_MAILBOXES", d.mailboxes),
            poll_s=env.seconds("RELAIS_MSS_POLL_S", d.poll_s),
        )


@dataclass(frozen=True)
class NotifySettings:
    """The notify sink: patients' preferences, e-mail relay, SMS gateway, rate limit."""

    preferences: Path | None = None  # None: everyone by MSSanté mailbox
    email_smtp: str = "127.0.0.1:587"
    email_from: str = "noreply@relais.localhost"
    ca_file: Path | None = None
    sms_url: str = "http://127.0.0.1:39126/"
    rate_limit: int = 3
    rate_window_s: float = 86400.0

    @classmethod
    def from_env(cls, env: Env) -> NotifySettings:
        d = cls()
        return cls(
            preferences=env.path("RELAIS_NOTIFY_PREFERENCES"),
            email_smtp=env.text("RELAIS_NOTIFY_EMAIL_SMTP", d.email_smtp),
            email_from=env.text("RELAIS_NOTIFY_EMAIL_FROM", d.email_from),
            ca_file=env.path("RELAIS_NOTIFY_CA_FILE"),
            sms_url=env.text("RELAIS_NOTIFY_SMS_URL", d.sms_url),
            rate_limit=env.count("RELAIS_NOTIFY_RATE_LIMIT", d.rate_limit),
            rate_window_s=env.seconds("RELAIS_NOTIFY_RATE_WINDOW_S", d.rate_window_s),
        )
