"""Static checks of the production-like docker-compose deployment.

No Docker engine is needed: Debian's ``docker-compose`` (1.29) validates and renders the compose
file, Debian's ``prometheus`` package provides ``promtool`` for the scrape configuration and the
dashboard's PromQL, ``prometheus-alertmanager`` provides ``amtool`` for the Alertmanager
configuration and its routes, and ``openssl`` runs the deployment's PKI script for real. All are
installed by the test setup (see the Makefile); a missing tool is a failure with the install
command, never a skip.

What these checks cannot show without an engine (the brokers electing a controller, Relais
connecting over TLS, RocksDB on the volumes) is left to ``docker-compose up`` on a Docker host;
the Kafka TLS path itself is tested for real against a TLS proxy in the Kafka client tests.

PyYAML is not a dependency of Relais. When it is not importable here, YAML is parsed by the
interpreter that runs ``docker-compose`` (docker-compose itself depends on PyYAML).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from domain.cda_validate import CdaSchema
from ops.metrics_catalogue import catalogue
from relais.settings import Settings
from sandboxes import SandboxSetupError
from sandboxes.dmp import oracle_of
from streams.transcode.lab_codes import LoincTable, UcumUnits

try:
    import yaml
except ImportError:
    yaml = None

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "relais-overview.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "relais.yml"
ALERT_RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
MAKE_PKI = REPO / "deploy" / "pki" / "make-pki.sh"
DOCKERFILE = REPO / "Dockerfile"

TIMEOUT_S = 60
INSTALL_HINT = (
    "install it with `DEBIAN_FRONTEND=noninteractive apt-get install -y "
    "--no-install-recommends {package}` (the test setup target does this)"
)

BROKERS = {"kafka-1", "kafka-2", "kafka-3"}
# The stages keep Faust tables (RocksDB on a volume each).
STAGES = {"identity", "transcode", "route"}
WORKERS = {
    "identity",
    "transcode",
    "route",
    "dmp-sink",
    "mss-sender",
    "mss-watch",
    "mss-deliver",
    "notify-sink",
    "outcomes",
    "ack-forwarder",
    "monitor",
    "mllp",
    "index",
    "console",
}
RELAIS_SERVICES = {"topics", "dmp-sandbox", "insi-sandbox", *WORKERS}
# The processes that read or write the document store: bodies (the claim check) and, under
# keys/, the patients' wrapped data keys, which every process opening a patient's sealed
# fields needs: all of the workers, sinks and the gateway.
STORE_USERS = WORKERS
EXPECTED_SERVICES = {
    *BROKERS,
    "volumes-init",
    "prometheus",
    "alertmanager",
    "grafana",
    "index-db",
    *RELAIS_SERVICES,
}
PUBLISHED = {
    "prometheus": "9090",
    "alertmanager": "9093",
    "grafana": "3000",
    "mllp": "2575",
    "console": "39190",
}
LOOPBACK = {"127.0.0.1", "::1"}
METRICS_PORT = "9400"
SECRETS_DIR = "/run/secrets/"

RELAIS_ENVIRONMENT = {
    "RELAIS_BROKER_KIND": "kafka",
    "RELAIS_TOPIC_PREFIX": "relais",
    "RELAIS_KEYRING_FILE": "/run/secrets/relais_keyring",
    "RELAIS_METRICS_HOST": "0.0.0.0",
    "RELAIS_METRICS_PORT": METRICS_PORT,
    "RELAIS_SESSION_TIMEOUT_S": "30",
}
# Relais's Kafka client files, each from a compose secret.
KAFKA_CLIENT_FILES = ("RELAIS_KAFKA_CA_FILE", "RELAIS_KAFKA_CERT_FILE", "RELAIS_KAFKA_KEY_FILE")
# Variables docker-compose interpolates: never taken from the environment running the tests.
INTERPOLATED = ("RELAIS_", "KAFKA_", "ALERTMANAGER_", "PROMETHEUS_", "GF_")

# The metrics the processes expose (from the code's catalogue; histograms as their three
# Prometheus series), and those the dashboard must show.
RELAIS_METRICS = {
    f"{doc.name}{suffix}"
    for doc in catalogue()
    for suffix in (("_bucket", "_sum", "_count") if doc.kind == "histogram" else ("",))
}
ON_THE_DASHBOARD = {
    "relais_stage_records_in_total",
    "relais_deadletters_total",
    "relais_stage_processing_seconds_bucket",
    "relais_documents_delivered_total",
    "relais_deliveries_total",
    "relais_delivery_latency_seconds_bucket",
    "relais_delivery_oldest_pending_age_seconds",
    "relais_identity_decisions_total",
    "relais_identity_held_documents",
    "relais_consumer_lag_records",
    "relais_insi_call_seconds_bucket",
    "relais_mss_mails_sent_total",
    "relais_notify_deliveries_total",
}
METRIC_NAME = re.compile(r"\brelais_[a-zA-Z0-9_]+")
# Grafana's dashboard variables, replaced by plausible values before promtool parses a query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$stage": ".*",
}


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` not found on PATH: {INSTALL_HINT.format(package=package)}")
    return path


def _run(
    argv: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", *INTERPOLATED))}
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        cwd=REPO,
        env={**clean, **(env or {})},
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (
        f"{shlex.join(proc.args)} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc.stdout


def _compose(*args: str, env: dict[str, str] | None = None) -> str:
    docker_compose = _tool("docker-compose", "docker-compose")
    return _ok(_run([docker_compose, "-f", str(COMPOSE_FILE), *args], env=env))


def _load_yaml(text: str) -> Any:
    if yaml is not None:
        return yaml.safe_load(text)
    # docker-compose is a Python program that depends on PyYAML: use its interpreter.
    docker_compose = Path(_tool("docker-compose", "docker-compose"))
    with docker_compose.open("rb") as script:
        first_line = script.readline().decode("utf-8", "replace").strip()
    if not first_line.startswith("#!"):
        pytest.fail(
            f"{docker_compose} is not a Python script (no #! line): cannot borrow its PyYAML; "
            "install PyYAML in this environment or Debian's docker-compose"
        )
    interpreter = shlex.split(first_line[2:])
    code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    return json.loads(_ok(_run([*interpreter, "-c", code], stdin=text)))


def _config(env: dict[str, str] | None = None) -> dict[str, Any]:
    config = _load_yaml(_compose("config", env=env))
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors merged, variables set)."""
    return _config()


def _services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = config["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _secrets(service: dict[str, Any]) -> set[str]:
    return {s["source"] if isinstance(s, dict) else s for s in service.get("secrets", [])}


def _secret_file(config: dict[str, Any], service: dict[str, Any], path: str) -> Path:
    """The host file behind ``path``, a secret the service mounts under /run/secrets/."""
    assert path.startswith(SECRETS_DIR), f"{path} is not a compose secret"
    name = path[len(SECRETS_DIR) :]
    assert name in _secrets(service), f"{path}: the service does not mount the secret {name!r}"
    return Path(config["secrets"][name]["file"])


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """{container path: (named volume or host path, mode)} of the service's volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mode = "ro" if volume.get("read_only") else "rw"
            mounts[volume["target"]] = (str(volume.get("source", "")), mode)
            continue
        source, target, *rest = str(volume).split(":")
        mounts[target] = (source, rest[0] if rest else "rw")
    return mounts


def _dockerfile_env(name: str) -> str:
    """A variable the image sets (``ENV NAME=value`` in the Dockerfile)."""
    found = re.search(rf"\b{name}=(\S+)", DOCKERFILE.read_text(encoding="utf-8"))
    assert found, f"the Dockerfile sets no {name}"
    return found[1]


def _listeners(text: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    listeners = {}
    for item in text.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        listeners[name] = (host, int(port))
    return listeners


def _protocols(env: dict[str, str]) -> dict[str, str]:
    return dict(
        item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )


def _published(port: str | dict[str, Any]) -> tuple[str | None, str]:
    """(host ip or None when bound to every interface, published host port)."""
    if isinstance(port, dict):
        return port.get("host_ip"), str(port.get("published", ""))
    spec = str(port).split("/", 1)[0]
    if spec.startswith("["):  # [::1]:3000:3000
        host, _, rest = spec[1:].partition("]:")
        return host, rest.split(":", 1)[0]
    parts = spec.split(":")
    if len(parts) == 3:
        return parts[0], parts[1]
    if len(parts) == 2:
        return None, parts[0]
    return None, parts[0]  # container port only: a random host port on every interface


def test_compose_file_validates() -> None:
    _compose("config", "-q")


def test_compose_defines_the_expected_services() -> None:
    services = set(_compose("config", "--services").split())
    assert services == EXPECTED_SERVICES


def test_only_prometheus_grafana_and_mllp_publish_ports_on_loopback(
    compose_config: dict[str, Any],
) -> None:
    published: dict[str, set[str]] = {}
    for name, service in _services(compose_config).items():
        for port in service.get("ports", []):
            host_ip, host_port = _published(port)
            assert host_ip in LOOPBACK, (
                f"service {name!r} publishes {port!r} on every interface: bind it to 127.0.0.1"
            )
            published.setdefault(name, set()).add(host_port)
    assert published == {name: {port} for name, port in PUBLISHED.items()}


def test_relais_services_share_environment_and_keyring_secret(
    compose_config: dict[str, Any],
) -> None:
    services = _services(compose_config)
    for name in RELAIS_SERVICES:
        service = services[name]
        env = _environment(service)
        assert {key: env.get(key) for key in RELAIS_ENVIRONMENT} == RELAIS_ENVIRONMENT, name
        assert "relais_keyring" in _secrets(service), name
        assert services[name].get("image") == services["identity"].get("image"), name
    assert "relais_keyring" in compose_config.get("secrets", {})


def test_workers_wait_for_brokers_topics_and_volumes_and_check_their_metrics(
    compose_config: dict[str, Any],
) -> None:
    services = _services(compose_config)
    assert {
        broker: services["topics"]["depends_on"][broker]["condition"] for broker in BROKERS
    } == dict.fromkeys(BROKERS, "service_healthy")
    for broker in BROKERS:
        assert "healthcheck" in services[broker], broker
    for name in WORKERS:
        service = services[name]
        depends_on = service["depends_on"]
        for broker in BROKERS:
            assert depends_on[broker]["condition"] == "service_healthy", (name, broker)
        assert depends_on["topics"]["condition"] == "service_completed_successfully", name
        assert depends_on["volumes-init"]["condition"] == "service_completed_successfully", name
        assert service["restart"] == "unless-stopped", name
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{METRICS_PORT}/readyz" in probe, name


def test_the_dmp_sink_files_into_the_sandbox_over_its_test_pki(
    compose_config: dict[str, Any],
) -> None:
    services = _services(compose_config)
    sink, sandbox = services["dmp-sink"], services["dmp-sandbox"]
    env = _environment(sink)
    assert env["RELAIS_DMP_URL"] == "https://dmp-sandbox:8080/repository"
    command = sandbox["command"]
    assert command[command.index("--server-name") + 1] == "dmp-sandbox"
    pki = command[command.index("--pki") + 1]
    for variable in ("RELAIS_DMP_CA_FILE", "RELAIS_DMP_CLIENT_CERT", "RELAIS_DMP_CLIENT_KEY"):
        assert env[variable].startswith(pki + "/"), variable
    mounts = {str(v).split(":")[0]: str(v) for v in sink.get("volumes", [])}
    assert any(
        str(v["target"] if isinstance(v, dict) else v).find(pki) >= 0 for v in sink["volumes"]
    )
    assert any(
        str(v["target"] if isinstance(v, dict) else v).find(pki) >= 0 for v in sandbox["volumes"]
    )
    assert mounts


def _scrape_targets() -> list[str]:
    config = _load_yaml(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    return [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]


def test_prometheus_scrapes_every_worker_and_only_compose_services(
    compose_config: dict[str, Any],
) -> None:
    services = set(_services(compose_config))
    targets = _scrape_targets()
    hosts = {target.rsplit(":", 1)[0] for target in targets}
    assert hosts <= services, f"scrape targets that are no compose service: {hosts - services}"
    assert hosts == WORKERS, f"workers not scraped: {WORKERS - hosts}"
    assert all(target.endswith(f":{METRICS_PORT}") for target in targets), targets
    assert len(targets) == len(set(targets)), targets


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = _tool("promtool", "prometheus")
    _ok(_run([promtool, "check", "config", str(PROMETHEUS_CONFIG)]))


def test_the_sender_and_index_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """promtool's rule unit tests: a regular sender gone silent (still firing once its
    24-hour series vanished), refusals from none yesterday to 500 today, records the index's
    database refused."""
    promtool = _tool("promtool", "prometheus")
    shutil.copy(PROMETHEUS_CONFIG.parent / "alerts.yml", tmp_path / "alerts.yml")
    tests = REPO / "tests" / "fixtures" / "prometheus" / "sender_alerts_test.yml"
    shutil.copy(tests, tmp_path / tests.name)
    _ok(_run([promtool, "test", "rules", str(tmp_path / tests.name)]))


def _dashboard() -> dict[str, Any]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(dashboard, dict)
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels inside collapsed rows


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    queries: list[tuple[str, str]] = []
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        assert targets, f"panel {panel.get('title')!r} has no query"
        queries.extend((f"panel {panel['title']!r}", target["expr"]) for target in targets)
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            queries.append((f"variable {variable['name']!r}", text))
    return queries


def test_dashboard_queries_use_only_exposed_relais_metrics() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "relais-overview"
    assert dashboard["title"]
    queries = _queries(dashboard)
    assert queries
    for where, query in queries:
        names = set(METRIC_NAME.findall(query))
        assert names, f"{where}: query references no relais_ metric: {query}"
        assert names <= RELAIS_METRICS, f"{where}: unknown metrics {names - RELAIS_METRICS}"
    used = {name for _, query in queries for name in METRIC_NAME.findall(query)}
    assert used >= ON_THE_DASHBOARD, f"metrics without a panel: {ON_THE_DASHBOARD - used}"
    titles = [panel.get("title", "") for panel in dashboard["panels"]]
    assert any("Ségur transparency" in title for title in titles)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = _tool("promtool", "prometheus")
    rules = []
    for index, (where, query) in enumerate(_queries(_dashboard())):
        if query.startswith("label_values("):  # Grafana's variable syntax, not PromQL
            continue
        expr = query
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: unhandled Grafana variable in {query}"
        rules.append({"record": f"relais:dashboard_query_{index}", "expr": expr})
    rules_file = tmp_path / "dashboard-rules.yml"
    # JSON is YAML: promtool reads it as a rule file.
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    _ok(_run([promtool, "check", "rules", str(rules_file)]))


def test_grafana_provisioning_matches_compose_mounts(compose_config: dict[str, Any]) -> None:
    grafana = _services(compose_config)["grafana"]
    mounts = {}
    for volume in grafana["volumes"]:
        source, target = str(volume).split(":")[:2]
        mounts[target] = source
    assert Path(mounts["/etc/grafana/provisioning"]) == GRAFANA / "provisioning"

    providers = _load_yaml(DASHBOARD_PROVIDERS.read_text(encoding="utf-8"))["providers"]
    for provider in providers:
        assert Path(mounts[provider["options"]["path"]]) == DASHBOARD.parent

    datasources = _load_yaml(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    uids = {source["uid"] for source in datasources}
    assert {source["url"] for source in datasources} == {"http://prometheus:9090"}
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] in uids

    env = _environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env.get("GF_SECURITY_ADMIN_PASSWORD"), "Grafana admin password must come from env"


# ---- Kafka: three KRaft brokers, mutual TLS, replication ------------------------------------


def test_three_kraft_brokers_form_one_quorum_of_three(compose_config: dict[str, Any]) -> None:
    services = _services(compose_config)
    kafka = {name: s for name, s in services.items() if "kafka" in str(s.get("image", ""))}
    assert set(kafka) == BROKERS
    envs = {name: _environment(service) for name, service in kafka.items()}
    node_ids = {name: int(env["KAFKA_NODE_ID"]) for name, env in envs.items()}
    assert len(set(node_ids.values())) == len(BROKERS), node_ids
    for name, env in envs.items():
        assert kafka[name]["hostname"] == name
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) >= {"broker", "controller"}, name
        controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
        port = _listeners(env["KAFKA_LISTENERS"])[controller][1]
        voters = {}
        for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","):
            node, _, address = voter.partition("@")
            voters[int(node)] = address
        # every broker knows the same three voters: each of them, on its controller listener
        assert voters == {node_ids[b]: f"{b}:{port}" for b in BROKERS}, name
        assert "KAFKA_LOG_DIRS" in env
        assert _mounts(kafka[name])[env["KAFKA_LOG_DIRS"]]
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1
    data = {_mounts(kafka[b])[envs[b]["KAFKA_LOG_DIRS"]][0] for b in BROKERS}
    assert len(data) == len(BROKERS)
    assert data <= set(compose_config["volumes"])


def test_every_broker_listener_is_mutual_tls(compose_config: dict[str, Any]) -> None:
    config = compose_config
    services = _services(config)
    for name in BROKERS:
        service = services[name]
        env = _environment(service)
        protocols = _protocols(env)
        listeners = _listeners(env["KAFKA_LISTENERS"])
        assert {protocols[listener] for listener in listeners} == {"SSL"}, name
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners, name
        advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        assert {host for host, _ in advertised.values()} == {name}, name
        assert all(listeners[n][1] == port for n, (_, port) in advertised.items()), name
        # The apache/kafka image requires JKS keystores and password files as soon as an
        # advertised listener reads "SSL://": PEM stores only work with other listener names.
        assert "SSL://" not in env["KAFKA_ADVERTISED_LISTENERS"], name
        assert env["KAFKA_SSL_CLIENT_AUTH"] == "required", name
        assert env.get("KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", "https") == "https", name
        assert env["KAFKA_SSL_KEYSTORE_TYPE"] == env["KAFKA_SSL_TRUSTSTORE_TYPE"] == "PEM", name
        for variable in ("KAFKA_SSL_KEYSTORE_LOCATION", "KAFKA_SSL_TRUSTSTORE_LOCATION"):
            _secret_file(config, service, env[variable])
        # a PEM keystore takes no store password: Kafka refuses one
        assert not {v for v in env if v.endswith("_PASSWORD") or v.endswith("_CREDENTIALS")}
    keystores = {_environment(services[b])["KAFKA_SSL_KEYSTORE_LOCATION"] for b in BROKERS}
    assert len(keystores) == len(BROKERS), "each broker has a certificate of its own"


def test_relais_reaches_every_broker_over_mutual_tls(compose_config: dict[str, Any]) -> None:
    config = compose_config
    services = _services(config)
    client_addresses = set()
    for broker in BROKERS:
        env = _environment(services[broker])
        protocols = _protocols(env)
        for listener, (host, port) in _listeners(env["KAFKA_ADVERTISED_LISTENERS"]).items():
            if listener != env["KAFKA_INTER_BROKER_LISTENER_NAME"]:
                assert protocols[listener] == "SSL", (broker, listener)
                client_addresses.add(f"{host}:{port}")
    broker_ca = {
        _secret_file(
            config, services[b], _environment(services[b])["KAFKA_SSL_TRUSTSTORE_LOCATION"]
        )
        for b in BROKERS
    }
    assert len(broker_ca) == 1
    for name in RELAIS_SERVICES:
        service = services[name]
        env = _environment(service)
        bootstrap = set(env["RELAIS_BOOTSTRAP_SERVERS"].split(","))
        assert bootstrap == client_addresses, name
        assert env["RELAIS_KAFKA_SECURITY_PROTOCOL"] == "SSL", name
        files = {v: _secret_file(config, service, env[v]) for v in KAFKA_CLIENT_FILES}
        assert len(set(files.values())) == len(files), name
        # Relais trusts the CA the brokers check client certificates with
        assert {files["RELAIS_KAFKA_CA_FILE"]} == broker_ca, name
        assert not [v for v in env if v.startswith("RELAIS_KAFKA_SASL_")], name


def test_replication_three_with_two_in_sync(compose_config: dict[str, Any]) -> None:
    services = _services(compose_config)
    for name in BROKERS:
        env = _environment(services[name])
        factor = int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"])
        insync = int(env["KAFKA_MIN_INSYNC_REPLICAS"])
        assert (factor, insync) == (3, 2), name
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == factor, name
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == factor, name
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == insync, name
        assert env.get("KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE", "false") == "false", name
        assert factor <= len(BROKERS)
        assert insync < factor
    broker = _environment(services["kafka-1"])
    for name in RELAIS_SERVICES:
        env = _environment(services[name])
        # what Relais itself creates its topics and changelogs with, from this environment
        kafka = Settings.from_env(
            {k: v for k, v in env.items() if k.startswith(("RELAIS_BROKER_", "RELAIS_REPL"))}
            | {k: v for k, v in env.items() if k == "RELAIS_MIN_INSYNC_REPLICAS"}
        ).kafka
        assert kafka.replication_factor == int(broker["KAFKA_DEFAULT_REPLICATION_FACTOR"]), name
        assert kafka.min_insync_replicas == int(broker["KAFKA_MIN_INSYNC_REPLICAS"]), name


# ---- a complete deployment: tables, INSi, reference data, MLLP over TLS ---------------------


def test_stage_workers_keep_their_tables_on_rocksdb_volumes(
    compose_config: dict[str, Any],
) -> None:
    services = _services(compose_config)
    init = services["volumes-init"]
    init_mounts = {source: target for target, (source, _) in _mounts(init).items()}
    seen = set()
    for name in STAGES:
        service = services[name]
        env = _environment(service)
        assert env["RELAIS_TABLE_STORE"].startswith("rocksdb://"), name
        data_dir = env.get("RELAIS_DATA_DIR") or _dockerfile_env("RELAIS_DATA_DIR")
        faust_dir = f"{data_dir}/faust"  # streams.worker: datadir=<RELAIS_DATA_DIR>/faust
        volume, mode = _mounts(service).get(faust_dir, ("", ""))
        assert volume in compose_config["volumes"], f"{name}: no named volume at {faust_dir}"
        assert mode == "rw", name
        assert service["read_only"] is True, name
        # the volume is given to the Relais user before the stage starts
        assert init_mounts[volume] in init["command"], name
        seen.add(volume)
    assert len(seen) == len(STAGES), "one volume per stage"
    assert init["user"].split(":")[0] == "0"
    assert "CHOWN" in init.get("cap_add", [])
    uid = init["entrypoint"][1].split(":")[0]
    assert init["entrypoint"][0] == "chown"
    assert uid == "10001"
    assert re.search(rf"--uid {uid}\b", DOCKERFILE.read_text(encoding="utf-8"))


def test_document_bodies_are_on_one_volume_shared_by_their_readers(
    compose_config: dict[str, Any],
) -> None:
    services = _services(compose_config)
    volumes = set()
    for name in STORE_USERS:
        service = services[name]
        folder = _environment(service)["RELAIS_DOCUMENT_STORE"]
        volume, mode = _mounts(service).get(folder, ("", ""))
        assert volume in compose_config["volumes"], f"{name}: no named volume at {folder}"
        assert mode == "rw", f"{name}: {folder}"
        volumes.add(volume)
    assert len(volumes) == 1, volumes
    init_volumes = {source for source, _ in _mounts(services["volumes-init"]).values()}
    assert volumes <= init_volumes


def test_identity_stage_asks_the_insi_sandbox_by_default(
    compose_config: dict[str, Any],
) -> None:
    services = _services(compose_config)
    identity = services["identity"]
    env = _environment(identity)
    url = env["RELAIS_INSI_URL"]
    assert url.startswith("https://")  # mutual TLS: the identity stage refuses http://
    host, _, port = url.removeprefix("https://").split("/", 1)[0].partition(":")
    sandbox = services[host]
    command = sandbox["command"]
    assert command[:2] == ["sandbox", "insi"]
    assert command[command.index("--port") + 1] == port
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--server-name") + 1] == host  # in its certificate
    assert identity["depends_on"][host]["condition"] == "service_started"
    # the structure's test certificate: written by the sandbox, read-only for identity
    pki_volume, mode = _mounts(sandbox)[command[command.index("--pki") + 1]]
    for name in ("RELAIS_INSI_CA_FILE", "RELAIS_INSI_CLIENT_CERT", "RELAIS_INSI_CLIENT_KEY"):
        folder = env[name].rsplit("/", 1)[0]
        assert _mounts(identity)[folder] == (pki_volume, "ro"), name
    assert mode == "rw"
    assert env["RELAIS_INSI_IDAM"]

    real = "https://insi.example.test/insi/v2"
    overridden = _services(_config({"RELAIS_INSI_URL": real}))
    assert _environment(overridden["identity"])["RELAIS_INSI_URL"] == real


def test_dmp_sandbox_judges_with_the_public_schemas(
    compose_config: dict[str, Any], tmp_path: Path
) -> None:
    sandbox = _services(compose_config)["dmp-sandbox"]
    command = sandbox["command"]
    data_dir = command[command.index("--data-dir") + 1]
    source, mode = _mounts(sandbox)[data_dir]
    assert mode == "ro"
    # the folder mounted there holds what the oracle loads: the schemas and the value sets
    oracle = oracle_of(tmp_path / "ca.pem", Path(source), require_signed_submission=True)
    assert (oracle.schema_dir / "ebRS30" / "lcm.xsd").is_file()
    with pytest.raises(SandboxSetupError, match="--data-dir"):
        oracle_of(tmp_path / "ca.pem", tmp_path, require_signed_submission=True)


def test_transcode_reads_the_lab_reference_tables(compose_config: dict[str, Any]) -> None:
    transcode = _services(compose_config)["transcode"]
    env = _environment(transcode)
    mounts = _mounts(transcode)

    def host_path(container_path: str) -> Path:
        for target, (source, mode) in mounts.items():
            if container_path.startswith(target + "/"):
                assert mode == "ro", f"{target} must be read-only"
                return Path(source) / container_path[len(target) + 1 :]
        pytest.fail(f"{container_path}: no volume of transcode holds it")

    loinc = host_path(env["RELAIS_LOINC_TABLE"])
    ucum = host_path(env["RELAIS_UCUM_UNITS"])
    # the files the defaults point at exist (../shared/data) and load as the stage loads them
    table = LoincTable.from_csv(loinc.read_text(encoding="utf-8"), source=str(loinc))
    first_code = loinc.read_text(encoding="utf-8").splitlines()[1].split(",")[0]
    assert table.knows(first_code)
    assert UcumUnits.from_xml(ucum.read_bytes(), source=str(ucum)).valid("mmol/L")
    CdaSchema.load(host_path(env["RELAIS_CDA_XSD_DIR"]))

    elsewhere = _services(_config({"DEPLOY_TABLES_DIR": "/srv/relais-tables"}))["transcode"]
    assert "/srv/relais-tables" in {source for source, _ in _mounts(elsewhere).values()}


def test_mllp_gateway_requires_client_certificates(compose_config: dict[str, Any]) -> None:
    config = compose_config
    mllp = _services(config)["mllp"]
    env = _environment(mllp)
    files = {
        v: _secret_file(config, mllp, env[v])
        for v in ("RELAIS_MLLP_TLS_CERT", "RELAIS_MLLP_TLS_KEY", "RELAIS_MLLP_CLIENT_CA")
    }
    assert len(set(files.values())) == len(files)
    assert not {"--tls-cert", "--tls-key", "--client-ca"} & set(mllp["command"])


# ---- the PKI script, run for real ----------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/pki/make-pki.sh run into a fresh folder, with its default settings."""
    _tool("openssl", "openssl")
    out = tmp_path_factory.mktemp("pki") / "generated"
    _ok(_run(["bash", str(MAKE_PKI), str(out)]))
    return out


def _certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _san(cert: x509.Certificate) -> set[str]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in names}


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _public(key_or_cert: Any) -> bytes:
    return key_or_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _openssl_verify(ca: Path, cert: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    openssl = _tool("openssl", "openssl")
    return _run([openssl, "verify", "-CAfile", str(ca), *extra, str(cert)])


def test_pki_script_makes_every_secret_the_deployment_mounts(pki: Path) -> None:
    config = _config({"DEPLOY_PKI_DIR": str(pki)})
    files = {
        name: Path(secret["file"])
        for name, secret in config["secrets"].items()
        if name != "relais_keyring"
    }
    missing = {name: str(path) for name, path in files.items() if not path.is_file()}
    assert not missing, f"secrets make-pki.sh did not write: {missing}"
    for path in files.values():
        assert path.resolve().is_relative_to(pki.resolve()), path
        text = path.read_text(encoding="ascii")
        if "PRIVATE KEY" in text:
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"


def test_pki_broker_certificates_verify_with_their_host_names(pki: Path, tmp_path: Path) -> None:
    config = _config({"DEPLOY_PKI_DIR": str(pki)})
    services = _services(config)
    ca_path = _secret_file(
        config,
        services["kafka-1"],
        _environment(services["kafka-1"])["KAFKA_SSL_TRUSTSTORE_LOCATION"],
    )
    (ca,) = _certificates(ca_path)
    for name in BROKERS:
        service = services[name]
        keystore = _secret_file(
            config, service, _environment(service)["KAFKA_SSL_KEYSTORE_LOCATION"]
        )
        pem = keystore.read_bytes()
        # Kafka's PEM keystore: one unencrypted PKCS#8 key, then the certificate chain
        assert pem.count(b"-----BEGIN PRIVATE KEY-----") == 1, keystore
        key = serialization.load_pem_private_key(pem, password=None)
        cert, *chain = x509.load_pem_x509_certificates(pem)
        assert _public(key) == _public(cert), f"{keystore}: the key is not the certificate's"
        cert.verify_directly_issued_by(ca)
        assert chain == [ca]
        assert _san(cert) == {service["hostname"]}
        assert _usages(cert) >= {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        leaf = tmp_path / f"{name}.crt"
        leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        for purpose in ("sslserver", "sslclient"):
            _ok(_openssl_verify(ca_path, leaf, "-purpose", purpose, "-verify_hostname", name))
        other = next(iter(BROKERS - {name}))
        wrong = _openssl_verify(ca_path, leaf, "-verify_hostname", other)
        assert wrong.returncode != 0, f"{name}'s certificate passes for {other}"


def test_pki_client_and_mllp_certificates_verify(pki: Path) -> None:
    config = _config({"DEPLOY_PKI_DIR": str(pki)})
    services = _services(config)
    identity, mllp = services["identity"], services["mllp"]
    env = _environment(identity)
    ca_path, cert_path, key_path = (
        _secret_file(config, identity, env[v]) for v in KAFKA_CLIENT_FILES
    )
    (ca,) = _certificates(ca_path)
    (cert,) = _certificates(cert_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    cert.verify_directly_issued_by(ca)
    assert _public(key) == _public(cert)
    assert _usages(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    _ok(_openssl_verify(ca_path, cert_path, "-purpose", "sslclient"))
    assert _openssl_verify(ca_path, cert_path, "-purpose", "sslserver").returncode != 0

    env = _environment(mllp)
    server, server_key, client_ca = (
        _secret_file(config, mllp, env[v])
        for v in ("RELAIS_MLLP_TLS_CERT", "RELAIS_MLLP_TLS_KEY", "RELAIS_MLLP_CLIENT_CA")
    )
    (server_cert,) = _certificates(server)
    assert _public(serialization.load_pem_private_key(server_key.read_bytes(), None)) == _public(
        server_cert
    )
    # reachable as the compose service and on the loopback port it is published on
    assert {"mllp", "localhost", "127.0.0.1"} <= _san(server_cert)
    _ok(_openssl_verify(client_ca, server, "-purpose", "sslserver", "-verify_hostname", "mllp"))
    # the senders' certificates: issued by the CA the gateway requires, for client use only
    senders = sorted((pki / "mllp" / "senders").glob("*.crt"))
    assert senders
    for sender in senders:
        _ok(_openssl_verify(client_ca, sender, "-purpose", "sslclient"))
        (sender_cert,) = _certificates(sender)
        assert _usages(sender_cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    # the two trust domains are separate: a Kafka certificate is no MLLP sender
    assert _openssl_verify(client_ca, cert_path, "-purpose", "sslclient").returncode != 0


def test_the_ack_forwarder_reaches_producers_over_mutual_tls(pki: Path) -> None:
    """ZAMs can carry a patient's mailbox address: the forwarder verifies the producers'
    listeners with their CA and shows its own client certificate (routes ending in /tls)."""
    config = _config({"DEPLOY_PKI_DIR": str(pki), "RELAIS_ACK_ROUTES": "CHU-X=dpi:6661/tls"})
    forwarder = _services(config)["ack-forwarder"]
    env = _environment(forwarder)
    assert env["RELAIS_ACK_ROUTES"] == "CHU-X=dpi:6661/tls"
    ca, cert, key = (
        _secret_file(config, forwarder, env[v])
        for v in ("RELAIS_ACK_CA_FILE", "RELAIS_ACK_CLIENT_CERT", "RELAIS_ACK_CLIENT_KEY")
    )
    (client,) = _certificates(cert)
    assert _public(serialization.load_pem_private_key(key.read_bytes(), None)) == _public(client)
    assert _usages(client) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    # issued by a CA of its own (the producers trust it), not by the senders' CA: it opens no
    # gateway; the producers' CA file verifies the gateway-style server certificates
    _ok(_openssl_verify(pki / "acks" / "ca.crt", cert, "-purpose", "sslclient"))
    assert _openssl_verify(pki / "mllp" / "ca.crt", cert, "-purpose", "sslclient").returncode
    assert cert.resolve().is_relative_to((pki / "acks").resolve())
    _ok(_openssl_verify(ca, pki / "mllp" / "server.crt", "-purpose", "sslserver"))
    # Relais loads them as compose gives them: the route gets a context with the client cert
    from producers.mllp.ack_routes import routes_from  # noqa: PLC0415
    from relais.settings import Settings  # noqa: PLC0415

    files = {"RELAIS_ACK_CA_FILE": ca, "RELAIS_ACK_CLIENT_CERT": cert, "RELAIS_ACK_CLIENT_KEY": key}
    settings = Settings.from_env({**env, **{k: str(v) for k, v in files.items()}})
    route = routes_from(settings.acks)["CHU-X"]
    assert route.tls
    assert route.context is not None
    assert route.context.verify_mode == ssl.CERT_REQUIRED


def test_pki_script_keeps_what_exists(pki: Path) -> None:
    before = {path: path.read_bytes() for path in pki.rglob("*") if path.is_file()}
    _ok(_run(["bash", str(MAKE_PKI), str(pki)]))
    after = {path: path.read_bytes() for path in pki.rglob("*") if path.is_file()}
    assert after == before


# ---- alerts: Prometheus -> Alertmanager -> webhook ------------------------------------------


def _alert_rules() -> list[dict[str, Any]]:
    groups = _load_yaml(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _render_alertmanager(config: dict[str, Any], out: Path, *tail: str) -> Path:
    """Run the container's entry point (start.sh) on this machine, as compose runs it."""
    alertmanager = _services(config)["alertmanager"]
    mounts = {target: Path(source) for target, (source, _) in _mounts(alertmanager).items()}
    entrypoint = alertmanager["entrypoint"]
    assert entrypoint[0] == "/bin/sh"
    script = mounts[entrypoint[1]]
    flags = dict(f.removeprefix("--").split("=", 1) for f in alertmanager["command"][1:])
    template = next(p for t, p in mounts.items() if t.endswith("alertmanager.yml"))
    amtool = _tool("amtool", "prometheus-alertmanager")
    env = {
        "ALERTMANAGER_TEMPLATE": str(template),
        "ALERTMANAGER_CONFIG": str(out),
        **_environment(alertmanager),
    }
    proc = _run(["sh", str(script), amtool, "check-config", str(out), *tail], env=env)
    # the file Alertmanager is started with is the one the script writes by default
    default = re.search(r"ALERTMANAGER_CONFIG:-([^}]+)}", script.read_text(encoding="utf-8"))
    assert default
    assert flags["config.file"] == default[1]
    _ok(proc)
    return out


def test_alertmanager_routes_every_alert_rule_to_the_webhook(
    compose_config: dict[str, Any], tmp_path: Path
) -> None:
    rendered = _render_alertmanager(compose_config, tmp_path / "alertmanager.yml")
    url = _environment(_services(compose_config)["alertmanager"])["ALERTMANAGER_WEBHOOK_URL"]
    config = _load_yaml(rendered.read_text(encoding="utf-8"))
    webhooks = {
        receiver["name"]
        for receiver in config["receivers"]
        if any(hook.get("url") == url for hook in receiver.get("webhook_configs", []))
    }
    assert webhooks, f"no receiver posts to {url}"
    rules = _alert_rules()
    assert rules
    amtool = _tool("amtool", "prometheus-alertmanager")
    for rule in rules:
        labels = {"alertname": rule["alert"], **rule.get("labels", {})}
        assert labels.get("severity") in {"critical", "warning"}, rule["alert"]
        proc = _run(
            [
                amtool,
                "config",
                "routes",
                "test",
                f"--config.file={rendered}",
                *(f"{key}={value}" for key, value in labels.items()),
            ]
        )
        receivers = set(_ok(proc).split())
        assert receivers, rule["alert"]
        assert receivers <= webhooks, f"{rule['alert']} goes to {receivers}"


def test_alertmanager_webhook_url_comes_from_the_environment(tmp_path: Path) -> None:
    url = "https://hooks.example.test/relais?token=a&b=c|d"
    config = _config({"ALERTMANAGER_WEBHOOK_URL": url})
    rendered = _render_alertmanager(config, tmp_path / "alertmanager.yml")
    hooks = [
        hook["url"]
        for receiver in _load_yaml(rendered.read_text(encoding="utf-8"))["receivers"]
        for hook in receiver.get("webhook_configs", [])
    ]
    assert hooks
    assert set(hooks) == {url}

    script = REPO / "deploy" / "alertmanager" / "start.sh"
    refused = _run(
        ["sh", str(script), "true"],
        env={
            "ALERTMANAGER_WEBHOOK_URL": "hooks.example.test/relais",
            "ALERTMANAGER_CONFIG": str(tmp_path / "refused.yml"),
        },
    )
    assert refused.returncode == 2
    assert "ALERTMANAGER_WEBHOOK_URL" in refused.stderr
    assert not (tmp_path / "refused.yml").exists()


def test_prometheus_sends_alerts_to_alertmanager(compose_config: dict[str, Any]) -> None:
    services = _services(compose_config)
    prometheus = _load_yaml(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    targets = [
        target
        for manager in prometheus["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    alertmanager = services["alertmanager"]
    flags = dict(f.removeprefix("--").split("=", 1) for f in alertmanager["command"][1:])
    port = flags["web.listen-address"].rsplit(":", 1)[1]
    assert targets == [f"alertmanager:{port}"]
    assert "alertmanager" in services["prometheus"]["depends_on"]
    container_ports = {
        str(p["target"]) if isinstance(p, dict) else str(p).split("/")[0].rsplit(":", 1)[-1]
        for p in alertmanager["ports"]
    }
    assert port in container_ports
