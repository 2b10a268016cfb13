"""Settings from the environment, the topic catalogue, and the backoff delays."""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from ops.cli.main import main as relais_cli
from producers.mllp.service import gateway_config
from relais import settings as settings_module
from relais.backoff import exponential_backoff
from relais.settings import (
    AckSettings,
    BrokerSettings,
    ConsoleSettings,
    DmpSettings,
    IdentitySettings,
    IndexSettings,
    InsiSettings,
    KafkaSettings,
    KeyringSettings,
    MllpSettings,
    MssSettings,
    NotifySettings,
    OutcomeSettings,
    ProcessSettings,
    Settings,
    SettingsError,
    StageSettings,
    StoreSettings,
    unknown_variables,
)
from relais.settings_kafka import KafkaSecurity
from relais.topics import ALL_TOPICS, DEADLETTER, SUBMITTED, TopicSpec

# Settings -----------------------------------------------------------------------

OAUTH_VARIABLES = {
    f"RELAIS_KAFKA_OAUTH_{name}" for name in ("TOKEN_URL", "CLIENT_ID", "CLIENT_SECRET", "SCOPE")
}
VARIABLES = (
    *sorted(OAUTH_VARIABLES),
    "RELAIS_BOOTSTRAP_SERVERS",
    "RELAIS_TOPIC_PREFIX",
    "RELAIS_PARTITIONS",
    "RELAIS_SINK_CONCURRENCY",
    "RELAIS_REPLICATION_FACTOR",
    "RELAIS_MIN_INSYNC_REPLICAS",
    *(f"RELAIS_KAFKA_{name}" for name in ("SECURITY_PROTOCOL", "CA_FILE", "CERT_FILE")),
    *(f"RELAIS_KAFKA_{name}" for name in ("KEY_FILE", "KEY_PASSWORD", "SASL_MECHANISM")),
    *(f"RELAIS_KAFKA_SASL_{name}" for name in ("USERNAME", "PASSWORD")),
    "RELAIS_KEYRING_FILE",
    "RELAIS_PATIENT_KEYS",
    "RELAIS_PATIENT_KEY_CACHE_S",
    "RELAIS_METRICS_HOST",
    "RELAIS_METRICS_PORT",
    "RELAIS_DMP_URL",
    "RELAIS_DMP_CA_FILE",
    "RELAIS_DMP_CLIENT_CERT",
    "RELAIS_DMP_CLIENT_KEY",
    "RELAIS_DMP_STRUCTURE_ID",
    "RELAIS_DMP_SUBJECT_ID",
    "RELAIS_DMP_SUBJECT_NAME",
    "RELAIS_DMP_SUBJECT_ROLE",
    "RELAIS_DMP_ACTIVITY_SECTOR",
    "RELAIS_DMP_SOURCE_ID",
    "RELAIS_DMP_LPS_HOMOLOGATION",
    "RELAIS_DMP_STATUS_CACHE_S",
    "RELAIS_INSI_URL",
    "RELAIS_INSI_TIMEOUT_S",
    "RELAIS_INSI_CA_FILE",
    "RELAIS_INSI_CLIENT_CERT",
    "RELAIS_INSI_CLIENT_KEY",
    "RELAIS_INSI_IDAM",
    "RELAIS_INSI_EMITTER",
    "RELAIS_IDENTITY_HOLD_EXPIRY_S",
    "RELAIS_OPERATOR",
    "RELAIS_TABLE_STORE",
    "RELAIS_CDA_XSD_DIR",
    "RELAIS_CATALOGUE_DIR",
    "RELAIS_LOINC_TABLE",
    "RELAIS_UCUM_UNITS",
    "RELAIS_RELEASE_POLICY",
    "RELAIS_DATA_DIR",
    "RELAIS_DOCUMENT_STORE",
    "RELAIS_DOCUMENT_STORE_ENDPOINT",
    "RELAIS_DOCUMENT_STORE_REGION",
    "RELAIS_DOCUMENT_RETENTION_DAYS",
    "RELAIS_INDEX_URL",
    "RELAIS_INDEX_BATCH",
    "RELAIS_INDEX_STATS_INTERVAL_S",
    "RELAIS_CONSOLE_HOST",
    "RELAIS_CONSOLE_PORT",
    "RELAIS_CONSOLE_ACCOUNTS",
    "RELAIS_CONSOLE_AUTH",
    "RELAIS_CONSOLE_SESSION_S",
    "RELAIS_CONSOLE_SECURE_COOKIES",
    "RELAIS_CONSOLE_ORIGIN",
    "RELAIS_BROKER_BIN",
    "RELAIS_BROKER_LISTEN",
    "RELAIS_BROKER_STORAGE",
    "RELAIS_BROKER_KIND",
    "RELAIS_SESSION_TIMEOUT_S",
    "RELAIS_LOG_LEVEL",
    "RELAIS_ACK_ROUTES",
    "RELAIS_ACK_CA_FILE",
    "RELAIS_ACK_CLIENT_CERT",
    "RELAIS_ACK_CLIENT_KEY",
    "RELAIS_HOLD_REMINDER_S",
    "RELAIS_MSS_SENDER",
    "RELAIS_MSS_NIL",
    "RELAIS_MSS_DOMAINS",
    "RELAIS_MSS_SMTP",
    "RELAIS_MSS_SMTP_TLS",
    "RELAIS_MSS_SMTP_ROUTES",
    "RELAIS_MSS_SMTP_USER",
    "RELAIS_MSS_SMTP_PASSWORD",
    "RELAIS_MSS_CA_FILE",
    "RELAIS_MSS_CLIENT_CERT",
    "RELAIS_MSS_CLIENT_KEY",
    "RELAIS_MSS_READ_RECEIPT",
    "RELAIS_MSS_PATIENT_REPLY",
    "RELAIS_MSS_IMAP",
    "RELAIS_MSS_IMAP_USER",
    "RELAIS_MSS_IMAP_PASSWORD",
    "RELAIS_MSS_MAILBOXES",
    "RELAIS_MSS_POLL_S",
    "RELAIS_NOTIFY_PREFERENCES",
    "RELAIS_NOTIFY_EMAIL_SMTP",
    "RELAIS_NOTIFY_EMAIL_FROM",
    "RELAIS_NOTIFY_CA_FILE",
    "RELAIS_NOTIFY_SMS_URL",
    "RELAIS_NOTIFY_RATE_LIMIT",
    "RELAIS_NOTIFY_RATE_WINDOW_S",
    "RELAIS_MLLP_HOST",
    "RELAIS_MLLP_PORT",
    "RELAIS_MLLP_SECTOR",
    "RELAIS_MLLP_MAX_FRAME_BYTES",
    "RELAIS_MLLP_IDLE_TIMEOUT_S",
    "RELAIS_MLLP_MAX_CONNECTIONS",
    "RELAIS_MLLP_MAX_CONNECTIONS_PER_PEER",
    "RELAIS_MLLP_FRAME_TIMEOUT_S",
    "RELAIS_MLLP_WORKERS",
    "RELAIS_MLLP_TEST_MESSAGES",
    "RELAIS_MLLP_UNKNOWN_PARENTS",
    "RELAIS_MLLP_TLS_CERT",
    "RELAIS_MLLP_TLS_KEY",
    "RELAIS_MLLP_CLIENT_CA",
    "RELAIS_MLLP_REUSE_PORT",
    "RELAIS_MLLP_PEER_FACILITIES",
)


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.kafka.bootstrap == "127.0.0.1:39092"
    assert settings.kafka.prefix == "relais"
    assert settings.keys.file is None
    assert settings.keys.json is None
    assert settings.process.metrics_host == "127.0.0.1"
    assert settings.process.metrics_port == 0
    assert settings.dmp.url == "https://127.0.0.1:39180/repository"
    assert settings.dmp.client_cert is None
    assert settings.dmp.structure_id == ""
    assert settings.process.data_dir == Path(".relais")
    assert settings.broker.bin is None
    assert settings.broker.listen == "127.0.0.1:39092"
    assert settings.broker.storage == "memory://tansu/"
    assert settings.kafka.broker_kind == "tansu"
    assert settings.kafka.session_timeout_s == 6.0
    assert settings.process.log_level == "info"
    # the MLLP gateway's defaults are those its flags had
    assert settings.mllp == MllpSettings(
        host="127.0.0.1",
        port=2575,
        sector=None,
        max_frame_bytes=16 << 20,
        idle_timeout_s=60.0,
        max_connections=1000,
        max_connections_per_peer=20,
        frame_timeout_s=60.0,
        tls_cert=None,
        tls_key=None,
        client_ca=None,
    )


@pytest.mark.parametrize("value", ["maybe", "accept,=refuse", "CHU-X=ignore"])
def test_a_test_messages_policy_that_cannot_be_read_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="RELAIS_MLLP_TEST_MESSAGES"):
        Settings.from_env({"RELAIS_MLLP_TEST_MESSAGES": value})


def test_blank_values_read_as_defaults() -> None:
    blank = dict.fromkeys(VARIABLES, "   ")
    assert Settings.from_env(blank) == Settings()


def test_every_variable_is_read() -> None:
    env = {
        "RELAIS_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:9092",
        "RELAIS_TOPIC_PREFIX": "test-42",
        "RELAIS_PARTITIONS": "24",
        "RELAIS_SINK_CONCURRENCY": "16",
        "RELAIS_REPLICATION_FACTOR": "5",
        "RELAIS_MIN_INSYNC_REPLICAS": "3",
        "RELAIS_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "RELAIS_KAFKA_CA_FILE": "/run/secrets/kafka-ca.pem",
        "RELAIS_KAFKA_CERT_FILE": "/run/secrets/relais.pem",
        "RELAIS_KAFKA_KEY_FILE": "/run/secrets/relais.key",
        "RELAIS_KAFKA_KEY_PASSWORD": "kpw",
        "RELAIS_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "RELAIS_KAFKA_SASL_USERNAME": "relais",
        "RELAIS_KAFKA_SASL_PASSWORD": "spw",
        "RELAIS_KEYRING_FILE": "/run/secrets/keyring.json",
        "RELAIS_KEYRING": '{"active": "k"}',
        "RELAIS_PATIENT_KEYS": "no",
        "RELAIS_PATIENT_KEY_CACHE_S": "30",
        "RELAIS_METRICS_HOST": "0.0.0.0",
        "RELAIS_METRICS_PORT": " 9108 ",
        "RELAIS_DMP_URL": "https://dmp.example/si-dmp-server/v2/services/repository",
        "RELAIS_DMP_CA_FILE": "/etc/relais/igc-sante.pem",
        "RELAIS_DMP_CLIENT_CERT": "/run/secrets/structure.pem",
        "RELAIS_DMP_CLIENT_KEY": "/run/secrets/structure.key",
        "RELAIS_DMP_STRUCTURE_ID": "1120459876",
        "RELAIS_DMP_SUBJECT_ID": "801234567866",
        "RELAIS_DMP_SUBJECT_NAME": "DEMO Biologiste",
        "RELAIS_DMP_SUBJECT_ROLE": "10^1.2.250.1.71.1.2.7",
        "RELAIS_DMP_ACTIVITY_SECTOR": "SA07^1.2.250.1.71.4.2.4",
        "RELAIS_DMP_SOURCE_ID": "2.25.42",
        "RELAIS_DMP_LPS_HOMOLOGATION": "HOMOL-1",
        "RELAIS_DMP_STATUS_CACHE_S": "3600",
        "RELAIS_INSI_URL": "https://insi.example/ws",
        "RELAIS_INSI_TIMEOUT_S": "2.5",
        "RELAIS_INSI_CA_FILE": "/etc/relais/insi-ca.pem",
        "RELAIS_INSI_CLIENT_CERT": "/run/secrets/insi.pem",
        "RELAIS_INSI_CLIENT_KEY": "/run/secrets/insi.key",
        "RELAIS_INSI_IDAM": "CNDA-0042",
        "RELAIS_INSI_EMITTER": "1120459877",
        "RELAIS_IDENTITY_HOLD_EXPIRY_S": "86400",
        "RELAIS_OPERATOR": "dr.vigilance",
        "RELAIS_TABLE_STORE": "rocksdb://",
        "RELAIS_CDA_XSD_DIR": "/opt/cda-xsd",
        "RELAIS_CATALOGUE_DIR": "/etc/relais/catalogues",
        "RELAIS_LOINC_TABLE": "/etc/relais/loinc-fr.csv",
        "RELAIS_UCUM_UNITS": "/etc/relais/ucum.xml",
        "RELAIS_RELEASE_POLICY": "/etc/relais/release.toml",
        "RELAIS_DATA_DIR": "/var/lib/relais",
        "RELAIS_DOCUMENT_STORE": "s3://relais-documents/prod",
        "RELAIS_DOCUMENT_STORE_ENDPOINT": "https://s3.example",
        "RELAIS_DOCUMENT_STORE_REGION": "eu-west-3",
        "RELAIS_DOCUMENT_RETENTION_DAYS": "14",
        "RELAIS_BROKER_BIN": "/usr/local/bin/tansu",
        "RELAIS_BROKER_LISTEN": "0.0.0.0:9092",
        "RELAIS_BROKER_STORAGE": "s3://bucket/",
        "RELAIS_BROKER_KIND": "kafka",
        "RELAIS_SESSION_TIMEOUT_S": "10.5",
        "RELAIS_LOG_LEVEL": "DEBUG",
        "RELAIS_ACK_ROUTES": "CHU-X=10.0.0.5:6661/tls",
        "RELAIS_ACK_CA_FILE": "/etc/relais/producers-ca.pem",
        "RELAIS_ACK_CLIENT_CERT": "/etc/relais/relais-mllp.pem",
        "RELAIS_ACK_CLIENT_KEY": "/etc/relais/relais-mllp.key",
        "RELAIS_HOLD_REMINDER_S": "3600",
        "RELAIS_MSS_SENDER": "pfi@ch-x.mssante.fr",
        "RELAIS_MSS_NIL": "NIL-42",
        "RELAIS_MSS_DOMAINS": "mssante.fr, test.mssante.fr",
        "RELAIS_MSS_SMTP": "smtp.operator.example:465",
        "RELAIS_MSS_SMTP_TLS": "IMPLICIT",
        "RELAIS_MSS_SMTP_ROUTES": "patient.mssante.fr=mes.example:587",
        "RELAIS_MSS_SMTP_USER": "pfi",
        "RELAIS_MSS_SMTP_PASSWORD": "pw1",
        "RELAIS_MSS_CA_FILE": "/etc/relais/igc-sante.pem",
        "RELAIS_MSS_CLIENT_CERT": "/etc/relais/mss.pem",
        "RELAIS_MSS_CLIENT_KEY": "/etc/relais/mss.key",
        "RELAIS_MSS_READ_RECEIPT": "no",
        "RELAIS_MSS_PATIENT_REPLY": "yes",
        "RELAIS_MSS_IMAP": "imap.operator.example:993",
        "RELAIS_MSS_IMAP_USER": "pfi",
        "RELAIS_MSS_IMAP_PASSWORD": "pw2",
        "RELAIS_MSS_MAILBOXES": "INBOX, Urgent",
        "RELAIS_MSS_POLL_S": "5",
        "RELAIS_NOTIFY_PREFERENCES": "/etc/relais/notify-preferences.json",
        "RELAIS_NOTIFY_EMAIL_SMTP": "smtp.example.org:465/implicit",
        "RELAIS_NOTIFY_EMAIL_FROM": "ne-pas-repondre@chu-x.fr",
        "RELAIS_NOTIFY_CA_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "RELAIS_NOTIFY_SMS_URL": "https://sms.example/v1/messages",
        "RELAIS_NOTIFY_RATE_LIMIT": "5",
        "RELAIS_NOTIFY_RATE_WINDOW_S": "3600",
        "RELAIS_MLLP_HOST": "0.0.0.0",
        "RELAIS_MLLP_PORT": "6661",
        "RELAIS_MLLP_SECTOR": "LAB",
        "RELAIS_MLLP_MAX_FRAME_BYTES": "1048576",
        "RELAIS_MLLP_IDLE_TIMEOUT_S": "60",
        "RELAIS_MLLP_MAX_CONNECTIONS": "50",
        "RELAIS_MLLP_MAX_CONNECTIONS_PER_PEER": "5",
        "RELAIS_MLLP_FRAME_TIMEOUT_S": "30",
        "RELAIS_MLLP_WORKERS": "0",
        "RELAIS_MLLP_TEST_MESSAGES": "refuse,CHU-TEST=accept",
        "RELAIS_MLLP_UNKNOWN_PARENTS": "accept",
        "RELAIS_MLLP_TLS_CERT": "/etc/relais/mllp.pem",
        "RELAIS_MLLP_TLS_KEY": "/etc/relais/mllp.key",
        "RELAIS_MLLP_CLIENT_CA": "/etc/relais/senders-ca.pem",
        "RELAIS_MLLP_REUSE_PORT": "yes",
        "RELAIS_MLLP_PEER_FACILITIES": "interface.chu-x.fr=CHU-X|CHU-X-LAB",
        "RELAIS_INDEX_URL": "postgresql://relais@db.example:5432/index",
        "RELAIS_INDEX_BATCH": "500",
        "RELAIS_INDEX_STATS_INTERVAL_S": "60",
        "RELAIS_CONSOLE_HOST": "0.0.0.0",
        "RELAIS_CONSOLE_PORT": "8443",
        "RELAIS_CONSOLE_ACCOUNTS": "/etc/relais/console-accounts.json",
        "RELAIS_CONSOLE_AUTH": "LOCAL",
        "RELAIS_CONSOLE_SESSION_S": "3600",
        "RELAIS_CONSOLE_SECURE_COOKIES": "yes",
        "RELAIS_CONSOLE_ORIGIN": "https://Console.CHU.example/",
    }
    documented = set(re.findall(r"^(RELAIS_[A-Z_]+)\s", settings_module.__doc__ or "", re.M))
    # OAUTHBEARER's four replace the user and password: test_kafka_security reads them
    assert set(env) | OAUTH_VARIABLES == documented == {*VARIABLES, "RELAIS_KEYRING"}
    assert Settings.from_env(env) == Settings(
        kafka=KafkaSettings(
            bootstrap="kafka-1:9092,kafka-2:9092",
            prefix="test-42",
            session_timeout_s=10.5,
            broker_kind="kafka",
            table_store="rocksdb://",
            partitions=24,
            sink_concurrency=16,
            replication_factor=5,
            min_insync_replicas=3,
            security=KafkaSecurity(
                protocol="SASL_SSL",
                ca_file=Path("/run/secrets/kafka-ca.pem"),
                cert_file=Path("/run/secrets/relais.pem"),
                key_file=Path("/run/secrets/relais.key"),
                key_password="kpw",
                sasl_mechanism="SCRAM-SHA-512",
                username="relais",
                password="spw",
            ),
        ),
        process=ProcessSettings(
            metrics_host="0.0.0.0",
            metrics_port=9108,
            log_level="debug",
            data_dir=Path("/var/lib/relais"),
        ),
        keys=KeyringSettings(
            file=Path("/run/secrets/keyring.json"),
            json='{"active": "k"}',
            patient_keys=False,
            patient_key_cache_s=30.0,
        ),
        broker=BrokerSettings(
            bin=Path("/usr/local/bin/tansu"), listen="0.0.0.0:9092", storage="s3://bucket/"
        ),
        insi=InsiSettings(
            url="https://insi.example/ws",
            timeout_s=2.5,
            ca_file=Path("/etc/relais/insi-ca.pem"),
            client_cert=Path("/run/secrets/insi.pem"),
            client_key=Path("/run/secrets/insi.key"),
            idam="CNDA-0042",
            emitter="1120459877",
        ),
        identity=IdentitySettings(hold_expiry_s=86400.0, operator="dr.vigilance"),
        dmp=DmpSettings(
            url="https://dmp.example/si-dmp-server/v2/services/repository",
            ca_file=Path("/etc/relais/igc-sante.pem"),
            client_cert=Path("/run/secrets/structure.pem"),
            client_key=Path("/run/secrets/structure.key"),
            structure_id="1120459876",
            subject_id="801234567866",
            subject_name="DEMO Biologiste",
            subject_role="10^1.2.250.1.71.1.2.7",
            activity_sector="SA07^1.2.250.1.71.4.2.4",
            source_id="2.25.42",
            lps_homologation="HOMOL-1",
            status_cache_s=3600.0,
        ),
        stages=StageSettings(
            cda_xsd_dir=Path("/opt/cda-xsd"),
            catalogue_dir=Path("/etc/relais/catalogues"),
            loinc_table=Path("/etc/relais/loinc-fr.csv"),
            ucum_units=Path("/etc/relais/ucum.xml"),
            release_policy=Path("/etc/relais/release.toml"),
        ),
        mllp=MllpSettings(
            host="0.0.0.0",
            port=6661,
            sector="LAB",
            max_frame_bytes=1 << 20,
            idle_timeout_s=60.0,
            max_connections=50,
            max_connections_per_peer=5,
            frame_timeout_s=30.0,
            workers=0,
            test_messages="refuse",
            test_messages_by_sender=(("CHU-TEST", "accept"),),
            refuse_unknown_parents=False,
            tls_cert=Path("/etc/relais/mllp.pem"),
            tls_key=Path("/etc/relais/mllp.key"),
            client_ca=Path("/etc/relais/senders-ca.pem"),
            reuse_port=True,
            peer_facilities="interface.chu-x.fr=CHU-X|CHU-X-LAB",
        ),
        acks=AckSettings(
            routes="CHU-X=10.0.0.5:6661/tls",
            ca_file=Path("/etc/relais/producers-ca.pem"),
            client_cert=Path("/etc/relais/relais-mllp.pem"),
            client_key=Path("/etc/relais/relais-mllp.key"),
        ),
        mss=MssSettings(
            sender="pfi@ch-x.mssante.fr",
            nil="NIL-42",
            domains=("mssante.fr", "test.mssante.fr"),
            smtp="smtp.operator.example:465",
            smtp_tls="implicit",
            smtp_routes="patient.mssante.fr=mes.example:587",
            smtp_user="pfi",
            smtp_password="pw1",
            ca_file=Path("/etc/relais/igc-sante.pem"),
            client_cert=Path("/etc/relais/mss.pem"),
            client_key=Path("/etc/relais/mss.key"),
            read_receipt=False,
            patient_reply=True,
            imap="imap.operator.example:993",
            imap_user="pfi",
            imap_password="pw2",
            mailboxes=("INBOX", "Urgent"),
            poll_s=5.0,
        ),
        notify=NotifySettings(
            preferences=Path("/etc/relais/notify-preferences.json"),
            email_smtp="smtp.example.org:465/implicit",
            email_from="ne-pas-repondre@chu-x.fr",
            ca_file=Path("/etc/ssl/certs/ca-certificates.crt"),
            sms_url="https://sms.example/v1/messages",
            rate_limit=5,
            rate_window_s=3600.0,
        ),
        outcomes=OutcomeSettings(hold_reminder_s=3600.0),
        store=StoreSettings(
            location="s3://relais-documents/prod",
            endpoint="https://s3.example",
            region="eu-west-3",
            retention_days=14.0,
        ),
        index=IndexSettings(
            url="postgresql://relais@db.example:5432/index", batch=500, stats_interval_s=60.0
        ),
        console=ConsoleSettings(
            host="0.0.0.0",
            port=8443,
            accounts=Path("/etc/relais/console-accounts.json"),
            auth="local",
            session_s=3600.0,
            secure_cookies=True,
            origin="https://console.chu.example",
        ),
    )


def test_types_of_numbers() -> None:
    settings = Settings.from_env({"RELAIS_METRICS_PORT": "9108", "RELAIS_SESSION_TIMEOUT_S": "7"})
    assert isinstance(settings.process.metrics_port, int)
    assert isinstance(settings.kafka.session_timeout_s, float)
    assert settings.kafka.session_timeout_s == 7.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RELAIS_METRICS_PORT", "http"),
        ("RELAIS_METRICS_PORT", "9108.5"),
        ("RELAIS_METRICS_PORT", "0x10"),
        ("RELAIS_SESSION_TIMEOUT_S", "six"),
        ("RELAIS_SESSION_TIMEOUT_S", "6s"),
        ("RELAIS_DOCUMENT_RETENTION_DAYS", "30d"),
        ("RELAIS_DOCUMENT_RETENTION_DAYS", "-1"),
        ("RELAIS_SINK_CONCURRENCY", "0"),
        ("RELAIS_INDEX_BATCH", "0"),
        ("RELAIS_CONSOLE_PORT", "web"),
        ("RELAIS_CONSOLE_ORIGIN", "https://console.example/path"),
    ],
)
def test_a_bad_number_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name) as caught:
        Settings.from_env({name: value})
    assert value in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("kind", ["redpanda", "confluent", "kafka,tansu"])
def test_a_bad_broker_kind_is_refused(kind: str) -> None:
    with pytest.raises(SettingsError, match="RELAIS_BROKER_KIND"):
        Settings.from_env({"RELAIS_BROKER_KIND": kind})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RELAIS_METRICS_PORT", "-1"),
        ("RELAIS_METRICS_PORT", "65536"),
        ("RELAIS_SESSION_TIMEOUT_S", "0"),
        ("RELAIS_SESSION_TIMEOUT_S", "-6"),
        ("RELAIS_SESSION_TIMEOUT_S", "nan"),
        ("RELAIS_SESSION_TIMEOUT_S", "inf"),
        ("RELAIS_NOTIFY_RATE_LIMIT", "0"),
        ("RELAIS_NOTIFY_RATE_WINDOW_S", "0"),
        ("RELAIS_NOTIFY_RATE_WINDOW_S", "inf"),
    ],
)
def test_an_unusable_number_names_its_variable(name: str, value: str) -> None:
    """SettingsError is for "a value Relais cannot use": a port outside 0-65535 cannot be
    bound, and the DMP sink's ``int(session_timeout_s * 1000)`` raises on nan and inf."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


#: every duration (seconds), size and count a variable holds: each must be above 0
DURATIONS = (
    "RELAIS_SESSION_TIMEOUT_S",
    "RELAIS_INSI_TIMEOUT_S",
    "RELAIS_MSS_POLL_S",
    "RELAIS_NOTIFY_RATE_WINDOW_S",
    "RELAIS_MLLP_IDLE_TIMEOUT_S",
)
COUNTS = (
    "RELAIS_NOTIFY_RATE_LIMIT",
    "RELAIS_MLLP_MAX_FRAME_BYTES",
    "RELAIS_MLLP_MAX_CONNECTIONS",
)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RELAIS_INSI_TIMEOUT_S", "-5"),
        ("RELAIS_MSS_POLL_S", "0"),
        ("RELAIS_MLLP_PORT", "70000"),
        ("RELAIS_MLLP_PORT", "-1"),
        ("RELAIS_MLLP_MAX_FRAME_BYTES", "0"),
        ("RELAIS_MLLP_MAX_CONNECTIONS", "-3"),
        ("RELAIS_MLLP_IDLE_TIMEOUT_S", "nan"),
        ("RELAIS_MLLP_SECTOR", "PHARMACY"),
    ],
)
def test_the_issue_s_unusable_values_are_refused(name: str, value: str) -> None:
    """Found in the issue: RELAIS_INSI_TIMEOUT_S=-5 and RELAIS_MSS_POLL_S=0 were accepted."""
    with pytest.raises(SettingsError, match=name) as caught:
        Settings.from_env({name: value})
    assert value in str(caught.value)


def test_the_message_says_what_to_give() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"RELAIS_INSI_TIMEOUT_S": "-5"})
    assert str(caught.value) == "RELAIS_INSI_TIMEOUT_S=-5: must be a number of seconds > 0"


@given(
    name=st.sampled_from(DURATIONS),
    value=st.one_of(
        st.floats(max_value=0.0, allow_nan=False),
        st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    ),
)
def test_durations_not_above_zero_are_refused_naming_the_variable(name: str, value: float) -> None:
    with pytest.raises(SettingsError, match=f"^{name}=") as caught:
        Settings.from_env({name: repr(value)})
    assert "seconds > 0" in str(caught.value)


@given(name=st.sampled_from(COUNTS), value=st.integers(max_value=0))
def test_sizes_and_counts_not_above_zero_are_refused_naming_the_variable(
    name: str, value: int
) -> None:
    with pytest.raises(SettingsError, match=f"^{name}={value}: must be .* > 0$"):
        Settings.from_env({name: str(value)})


@given(
    name=st.sampled_from(DURATIONS),
    value=st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False),
)
def test_durations_above_zero_are_read(name: str, value: float) -> None:
    settings = Settings.from_env({name: repr(value)})
    assert value in {
        settings.kafka.session_timeout_s,
        settings.insi.timeout_s,
        settings.mss.poll_s,
        settings.notify.rate_window_s,
        settings.mllp.idle_timeout_s,
    }


@given(name=st.sampled_from(COUNTS), value=st.integers(min_value=1, max_value=1 << 40))
def test_sizes_and_counts_above_zero_are_read(name: str, value: int) -> None:
    settings = Settings.from_env({name: str(value)})
    read = {
        "RELAIS_NOTIFY_RATE_LIMIT": settings.notify.rate_limit,
        "RELAIS_MLLP_MAX_FRAME_BYTES": settings.mllp.max_frame_bytes,
        "RELAIS_MLLP_MAX_CONNECTIONS": settings.mllp.max_connections,
    }
    assert read[name] == value


@pytest.mark.parametrize("given_alone", ["RELAIS_MLLP_TLS_CERT", "RELAIS_MLLP_TLS_KEY"])
def test_mllp_tls_certificate_and_key_go_together(given_alone: str) -> None:
    # read by every process, refused only by the gateway: a half-set pair never stops the others
    settings = Settings.from_env({given_alone: "/etc/relais/mllp.pem"})
    with pytest.raises(SettingsError, match="RELAIS_MLLP_TLS_CERT and RELAIS_MLLP_TLS_KEY"):
        gateway_config(settings.mllp)


def test_mllp_sector_is_read_in_upper_case() -> None:
    assert Settings.from_env({"RELAIS_MLLP_SECTOR": "radiology"}).mllp.sector == "RADIOLOGY"


def test_secrets_are_never_printed() -> None:
    settings = Settings.from_env(
        {
            "RELAIS_KEYRING": '{"keys": "k3y-m4t3r14l"}',
            "RELAIS_MSS_SMTP_PASSWORD": "smtp-s3cret",
            "RELAIS_MSS_IMAP_PASSWORD": "imap-s3cret",
        }
    )
    printed = repr(settings)
    assert settings.keys.json == '{"keys": "k3y-m4t3r14l"}'
    for secret in ("k3y-m4t3r14l", "smtp-s3cret", "imap-s3cret"):
        assert secret not in printed


def test_every_part_is_a_frozen_dataclass() -> None:
    settings = Settings()
    for part in dataclasses.fields(settings):
        value = getattr(settings, part.name)
        assert dataclasses.is_dataclass(value)
        first = dataclasses.fields(value)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, first, None)


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAIS_TOPIC_PREFIX", "from-os")
    assert Settings.from_env().kafka.prefix == "from-os"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.kafka.prefix = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.kafka = KafkaSettings(prefix="x")  # type: ignore[misc]


# Topics --------------------------------------------------------------------------


def test_topic_names_are_unique_and_under_the_prefix() -> None:
    names = [topic.name("relais") for topic in ALL_TOPICS]
    assert len(set(names)) == len(names)
    assert len({topic.suffix for topic in ALL_TOPICS}) == len(ALL_TOPICS)
    for prefix in ("relais", "test-42"):
        assert all(topic.name(prefix).startswith(f"{prefix}.") for topic in ALL_TOPICS)


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.suffix)
def test_every_topic_is_well_declared(topic: TopicSpec) -> None:
    assert topic.partitions >= 1
    assert topic.purpose.strip()
    parts = topic.suffix.split(".")
    assert parts[-1].startswith("v")
    assert parts[-1][1:].isdigit()
    assert int(topic.configs["retention.ms"]) > 0
    assert int(topic.configs["max.message.bytes"]) >= 1 << 20


def test_partitions_default_to_twelve_and_a_bad_count_names_the_variable() -> None:
    assert Settings.from_env({}).kafka.partitions == 12
    assert all(topic.partitions == 12 for topic in ALL_TOPICS)
    for bad in ("0", "-4", "many"):
        with pytest.raises(SettingsError, match="RELAIS_PARTITIONS"):
            Settings.from_env({"RELAIS_PARTITIONS": bad})


def test_catalogue_names() -> None:
    assert SUBMITTED.name("relais") == "relais.documents.submitted.v1"
    assert DEADLETTER.name("t") == "t.deadletter.v1"
    assert SUBMITTED in ALL_TOPICS
    assert DEADLETTER in ALL_TOPICS


# Backoff --------------------------------------------------------------------------


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    base=st.floats(min_value=0.001, max_value=5.0),
    cap=st.floats(min_value=0.001, max_value=120.0),
    count=st.integers(min_value=1, max_value=40),
)
def test_delays_stay_within_the_exponential_cap(
    seed: int, base: float, cap: float, count: int
) -> None:
    delays = list(itertools.islice(exponential_backoff(base, cap, random.Random(seed)), count))
    assert len(delays) == count
    for n, delay in enumerate(delays):
        assert 0 <= delay <= min(cap, base * 2**n)


@given(seed=st.integers(min_value=0, max_value=2**32))
def test_same_seed_same_delays(seed: int) -> None:
    first = list(itertools.islice(exponential_backoff(rng=random.Random(seed)), 12))
    second = list(itertools.islice(exponential_backoff(rng=random.Random(seed)), 12))
    assert first == second


def test_default_delays_start_small_and_reach_the_cap() -> None:
    delays = list(itertools.islice(exponential_backoff(rng=random.Random(7)), 200))
    assert delays[0] <= 0.2
    assert max(delays) <= 30.0
    assert max(delays[20:]) > 15.0  # the window has reached the cap of 30 s


def test_backoff_is_endless() -> None:
    """The DMP sink retries ``for delay in exponential_backoff()`` while the DMP is down.

    At the default cap the window stops growing after 8 attempts, but ``base * 2**n``
    is still computed and overflows float after ~1024 attempts (hours of outage).
    """
    delays = exponential_backoff(rng=random.Random(1))
    taken = 0
    for n, delay in enumerate(itertools.islice(delays, 2000)):
        assert 0 <= delay <= min(30.0, 0.2 * 2 ** min(n, 64))
        taken += 1
    assert taken == 2000


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles() -> None:
    env = {"RELAIS_BROKER": "kafka:9092", "RELAIS_PARTITONS": "24", "RELAIS_TOPIC_PREFIX": "x"}
    assert unknown_variables(env) == [
        ("RELAIS_BROKER", "RELAIS_BROKER_BIN"),
        ("RELAIS_PARTITONS", "RELAIS_PARTITIONS"),
    ]
    assert unknown_variables({"RELAIS_TOPIC_PREFIX": "x", "PATH": "/bin"}) == []


def test_the_cli_warns_of_an_unknown_variable_and_refuses_an_unknown_log_level() -> None:
    warned = CliRunner().invoke(relais_cli, ["store", "--help"], env={"RELAIS_PARTITONS": "24"})
    assert "warning: RELAIS_PARTITONS is not a Relais setting" in warned.output
    assert "did you mean RELAIS_PARTITIONS?" in warned.output
    refused = CliRunner().invoke(
        relais_cli, ["store", "usage"], env={"RELAIS_LOG_LEVEL": "verbose"}
    )
    assert refused.exit_code == 2
    assert "RELAIS_LOG_LEVEL='verbose': expected 'debug'" in refused.output


def test_replication_follows_the_broker_kind_and_an_impossible_pair_is_refused() -> None:
    local = Settings.from_env({}).kafka
    assert (local.replication_factor, local.min_insync_replicas) == (1, 1)
    cluster = Settings.from_env({"RELAIS_BROKER_KIND": "kafka"}).kafka
    assert (cluster.replication_factor, cluster.min_insync_replicas) == (3, 2)
    with pytest.raises(SettingsError, match="RELAIS_MIN_INSYNC_REPLICAS=3 > "):
        Settings.from_env({"RELAIS_REPLICATION_FACTOR": "2", "RELAIS_MIN_INSYNC_REPLICAS": "3"})


@pytest.mark.parametrize("url", ["mysql://u@h/db", "http://127.0.0.1/index"])
def test_an_index_url_relais_cannot_index_in_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="RELAIS_INDEX_URL"):
        Settings.from_env({"RELAIS_INDEX_URL": url})


def test_the_index_defaults_to_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    index = Settings.from_env({}).index
    assert index.database_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/index.sqlite3"
    pg = Settings.from_env({"RELAIS_INDEX_URL": "postgresql://relais@127.0.0.1:5432/idx"}).index
    assert pg.database_url(tmp_path) == "postgresql+psycopg://relais@127.0.0.1:5432/idx"
